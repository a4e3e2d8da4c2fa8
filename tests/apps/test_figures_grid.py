"""Small multiples, diff and log-scale figures: what each trace holds, against the record's patterns."""

from __future__ import annotations

import math

import pytest
import torch

from apps.heads_dashboard import figures_grid
from tests.apps.conftest import N_HEADS


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_layer_grid_has_one_panel_per_head_on_one_scale(pattern_record):
    tokens = pattern_record.tokens[0]
    patterns = pattern_record.pattern(2, 0)
    fig = figures_grid.layer_grid_figure(patterns, tokens, 2, selected_head=4)
    assert len(fig.data) == N_HEADS
    assert {trace.coloraxis for trace in fig.data} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    assert [a.text for a in fig.layout.annotations] == [f"head {h}" for h in range(N_HEADS)]
    for head, trace in enumerate(fig.data):
        assert trace.z[5][3] == pytest.approx(float(patterns[head, 5, 3]))
        assert _nan(trace.z[3][5])  # a future key is blank
    rows, cols = figures_grid.grid_shape(N_HEADS)
    assert rows * cols >= N_HEADS and (rows, cols) == (2, 3)


def test_log_scale_is_log10_with_a_floor(pattern_record):
    tokens = pattern_record.tokens[0]
    pattern = pattern_record.pattern(0, 0)[1]
    fig = figures_grid.scaled_pattern_figure(pattern, tokens, "p", scale="log")
    z = fig.data[0].z
    assert z[6][2] == pytest.approx(math.log10(max(float(pattern[6, 2]), figures_grid.LOG_FLOOR)), rel=1e-5)
    assert min(v for row in z for v in row if not _nan(v)) >= math.log10(figures_grid.LOG_FLOOR) - 1e-9
    assert fig.data[0].zmax == 0.0 and list(fig.data[0].colorbar.ticktext)[-1] == "1"
    with pytest.raises(ValueError, match="scale must be one of"):
        figures_grid.scaled(pattern, "sqrt")


def test_diff_is_after_minus_before_on_a_centred_scale(pattern_record):
    tokens = pattern_record.tokens[0]
    before = pattern_record.pattern(1, 0)[0]
    after = before.clone()
    after[7, 0] -= 0.2
    after[7, 1] += 0.2
    fig = figures_grid.pattern_diff_figure(before, after, tokens, "d")
    heat = fig.data[0]
    assert heat.z[7][0] == pytest.approx(-0.2, abs=1e-6) and heat.z[7][1] == pytest.approx(0.2, abs=1e-6)
    assert heat.zmid == 0.0 and heat.zmin == pytest.approx(-heat.zmax) and heat.zmax == pytest.approx(0.2, abs=1e-6)
    assert heat.z[2][2] == 0.0 and _nan(heat.z[2][3])
    unchanged = figures_grid.pattern_diff_figure(before, before, tokens, "same").data[0]
    assert unchanged.zmax > 0  # a valid scale even with nothing changed


def test_layer_diff_grid_and_signed_heatmap(pattern_record):
    tokens = pattern_record.tokens[0]
    before = pattern_record.pattern(1, 0)
    after = pattern_record.pattern(2, 0)
    fig = figures_grid.layer_diff_grid_figure(before, after, tokens, 1)
    assert len(fig.data) == N_HEADS and fig.layout.coloraxis.cmid == 0.0
    assert fig.data[3].z[4][1] == pytest.approx(float(after[3, 4, 1] - before[3, 4, 1]), abs=1e-6)
    values = torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    signed = figures_grid.signed_head_grid_figure(values, [0, 1], "DLA", selected=(1, 0))
    assert signed.data[0].zmid == 0.0 and (signed.data[0].zmin, signed.data[0].zmax) == (-3.0, 3.0)
    assert len(signed.layout.shapes) == 1
    with pytest.raises(ValueError, match="differ in shape"):
        figures_grid.pattern_difference(before, after[:2])


def test_logit_diff_bars():
    fig = figures_grid.logit_diff_figure(" Mary", " John", 2.5, -0.5, "ACT")
    assert list(fig.data[0].y) == [2.5, -0.5] and "' Mary'" in fig.layout.title.text
    assert len(figures_grid.logit_diff_figure(" Mary", " John", 2.5, None, "").data[0].y) == 1
