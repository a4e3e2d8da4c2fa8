"""Structure of the dashboard's pure figure builders and metrics, on records of a tiny random model."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest
import torch

from apps.heads_dashboard import figures
from apps.heads_dashboard.metrics import act_sink_score, mean_distance, mean_entropy, metric_grid, registered_metrics
from apps.heads_dashboard.notebook import show_record
from probe.summary import first_token_share
from tests.apps.conftest import N_HEADS, N_LAYERS


def _shown(tokens):
    return [figures.display_token(t) for t in tokens]


def test_pattern_figure_has_tokens_on_both_axes_and_q_by_k_z(pattern_record):
    tokens = pattern_record.tokens[0]
    pattern = pattern_record.pattern(1, 0)[3]
    fig = figures.pattern_figure(pattern, tokens, "layer 1, head 3")
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap)
    assert list(fig.layout.xaxis.ticktext) == _shown(tokens)
    assert list(fig.layout.yaxis.ticktext) == _shown(tokens)
    assert list(fig.layout.xaxis.tickvals) == list(range(len(tokens)))
    z = heat.z
    assert (len(z), len(z[0])) == (len(tokens), len(tokens))
    assert fig.layout.yaxis.autorange == "reversed"  # query 0 on top, like a matrix
    for q in range(len(tokens)):
        assert math.isclose(sum(v for v in z[q] if v is not None and not math.isnan(v)), 1.0, rel_tol=1e-4)
        assert all(math.isnan(v) for v in z[q][q + 1:])  # future keys blank, not zero
        assert z[q][q] == pytest.approx(float(pattern[q, q]))


def test_pattern_figure_refuses_a_shape_that_does_not_match_the_tokens(pattern_record):
    with pytest.raises(ValueError, match="does not match"):
        figures.pattern_figure(pattern_record.pattern(0, 0)[0], pattern_record.tokens[0][:-1], "x")


def test_repeated_tokens_keep_one_column_each(pattern_record):
    tokens = pattern_record.tokens[1]  # "the the the": repeated strings must not collapse
    fig = figures.pattern_figure(pattern_record.pattern(0, 1)[0], tokens, "t")
    assert len(set(tokens)) < len(tokens)
    assert len(fig.layout.xaxis.tickvals) == len(tokens)


def test_long_token_axes_are_labelled_sparsely():
    tokens = [f"t{i}" for i in range(200)]
    axis = figures.token_axis(tokens)
    assert len(axis["tickvals"]) <= figures.MAX_TICK_LABELS
    assert axis["ticktext"][0] == "t0" and axis["ticktext"][1] == tokens[axis["tickvals"][1]]


def test_display_token_makes_control_characters_visible():
    assert figures.display_token("\n") == "\\n"
    assert figures.display_token("") == "∅"
    assert figures.display_token(" the") == " the"


def test_head_grid_is_layers_by_heads_and_frames_the_selection(pattern_record):
    values = metric_grid(pattern_record, "mean_entropy")
    fig = figures.head_grid_figure(values, pattern_record.layers, "mean entropy", selected=(2, 4))
    heat = fig.data[0]
    assert (len(heat.z), len(heat.z[0])) == (N_LAYERS, N_HEADS)
    assert list(heat.x) == list(range(N_HEADS)) and list(heat.y) == list(range(N_LAYERS))
    (frame,) = fig.layout.shapes
    assert (frame.x0, frame.x1, frame.y0, frame.y1) == (3.5, 4.5, 1.5, 2.5)
    assert list(fig.layout.yaxis.tickvals) == list(pattern_record.layers)  # every layer labelled
    assert heat.z[2][4] == pytest.approx(float(values[2, 4]))


def test_head_figure_shows_summary_for_statistics_records(stats_record):
    n = len(stats_record.tokens[0])
    fig = figures.head_figure(stats_record, 0, layer=1, head=2)
    bar, line = fig.data
    assert isinstance(bar, go.Bar) and isinstance(line, go.Scatter)
    assert len(bar.y) == n and len(line.y) == n
    assert bar.y[5] == pytest.approx(float(stats_record.stat(1, "received_mean")[2, 5]))
    assert line.y[7] == pytest.approx(float(stats_record.stat(1, "entropy")[2, 7]))
    assert "summary" in fig.layout.title.text


def test_head_figure_shows_the_pattern_for_pattern_records(pattern_record):
    fig = figures.head_figure(pattern_record, 0, layer=2, head=1)
    assert isinstance(fig.data[0], go.Heatmap)
    assert fig.data[0].z[4][2] == pytest.approx(float(pattern_record.pattern(2, 0)[1, 4, 2]))


def test_comparison_shows_before_after_and_their_difference(pattern_record):
    after = pattern_record.__class__(**{**pattern_record.__dict__, "patterns": {
        layer: torch.flip(p, dims=[-1]) for layer, p in pattern_record.patterns.items()}})
    fig = figures.comparison_figure(pattern_record, after, 0, layer=1, head=0, edit_label="flip")
    left, right, diff = fig.data
    assert (left.xaxis, right.xaxis, diff.xaxis) == ("x", "x2", "x3")
    assert left.coloraxis == right.coloraxis == "coloraxis" and diff.coloraxis == "coloraxis2"
    before_p, after_p = pattern_record.pattern(1, 0)[0], after.pattern(1, 0)[0]
    assert left.z[3][0] == pytest.approx(float(before_p[3, 0]))
    assert right.z[3][0] == pytest.approx(float(after_p[3, 0]))
    assert diff.z[3][0] == pytest.approx(float(after_p[3, 0] - before_p[3, 0]), abs=1e-6)
    assert math.isnan(diff.z[0][2])  # future keys stay blank in the difference too
    largest = float((after_p - before_p).abs().max())
    assert fig.layout.coloraxis2.cmax == pytest.approx(largest) == -fig.layout.coloraxis2.cmin  # centred on 0
    assert "flip" in fig.layout.title.text and f"largest change {largest:.3g}" in fig.layout.title.text


def test_comparison_says_when_the_heads_pattern_is_unchanged(pattern_record):
    fig = figures.comparison_figure(pattern_record, pattern_record, 0, layer=1, head=0, edit_label="scale")
    assert "pattern is unchanged" in fig.layout.title.text


def test_message_figures_have_no_toolbar_and_drawn_figures_do():
    assert figures.graph_config(figures.message_figure("nothing yet")) == {"displayModeBar": False}
    assert figures.graph_config(go.Figure(go.Bar(y=[1]))).get("displayModeBar", True) is not False


def test_comparison_of_long_inputs_overlays_summaries(stats_record):
    fig = figures.comparison_figure(stats_record, stats_record, 0, layer=0, head=0, edit_label="e")
    assert [t.name for t in fig.data] == ["before", "before", "after", "after"]


def test_next_token_figure_groups_before_and_after():
    fig = figures.next_token_figure([" Mary", "\n"], [0.6, 0.1], [0.3, 0.2], "ACT")
    before, after = fig.data
    assert list(before.y) == [0.6, 0.1] and list(after.y) == [0.3, 0.2]
    assert list(fig.layout.xaxis.ticktext) == [" Mary", "\\n"]
    assert fig.layout.barmode == "group"


def test_token_colours_scale_opacity_by_the_largest_value():
    coloured = figures.token_colours(["a", "b", "c"], torch.tensor([0.5, 0.0, 0.25]))
    assert [c[0] for c in coloured] == ["a", "b", "c"]
    assert coloured[0][1].endswith("1.000)") and coloured[1][1].endswith("0.000)") and coloured[2][1].endswith("0.500)")


def test_metrics_match_hand_computations_from_the_pattern(pattern_record):
    layer, prompt = 1, 0
    pattern = pattern_record.pattern(layer, prompt)  # [head, q, k]
    q = pattern.shape[-1]
    rows = pattern[:, 1:]
    entropy = -(rows * rows.clamp_min(1e-30).log()).sum(-1).mean(-1)
    torch.testing.assert_close(mean_entropy(pattern_record, layer, prompt), entropy, atol=1e-4, rtol=1e-4)
    distance = (rows * (torch.arange(1, q)[:, None] - torch.arange(q)[None, :]).clamp_min(0)).sum(-1).mean(-1)
    torch.testing.assert_close(mean_distance(pattern_record, layer, prompt), distance, atol=1e-4, rtol=1e-4)
    visible = torch.arange(q, 0, -1)  # key k is seen by queries k..q-1
    received = pattern.sum(1) / visible
    keep = (visible >= 4) & (torch.arange(q) > 0)
    torch.testing.assert_close(act_sink_score(pattern_record, layer, prompt), received[:, keep].max(-1).values,
                               atol=1e-5, rtol=1e-5)


def test_metric_grid_stacks_every_registered_metric(pattern_record):
    assert {m.name for m in registered_metrics()} >= {"first_token_share", "act_sink_score", "mean_entropy", "mean_distance"}
    for metric in registered_metrics():
        grid = metric_grid(pattern_record, metric.name, prompt=0)
        assert grid.shape == (N_LAYERS, N_HEADS)
    torch.testing.assert_close(metric_grid(pattern_record, "first_token_share")[2], first_token_share(pattern_record, 2))


def test_act_sink_score_is_nan_when_no_key_qualifies(pattern_record):
    assert len(pattern_record.tokens[1]) < 5  # "the the the": no key after the first seen by 4 queries
    assert torch.isnan(act_sink_score(pattern_record, 0, prompt=1)).all()


def test_show_record_renders_circuitsvis_patterns_or_coloured_tokens(pattern_record, stats_record):
    html = str(show_record(pattern_record, layer=1))
    assert "AttentionPatterns" in html and "Mary" in html
    html = str(show_record(stats_record, layer=0))
    assert "ColoredTokens" in html and "story" in html
    with pytest.raises(IndexError):
        show_record(pattern_record, layer=0, prompt=5)
