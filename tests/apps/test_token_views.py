"""Long-input views: hiding the first token, the few-query guard and windowed rows."""

from __future__ import annotations

import math

import pytest
import torch

from apps.heads_dashboard import token_views
from probe.capture.window import capture_window
from probe.errors import InputError


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def test_hide_first_token_drops_row_and_column_without_renormalising(pattern_record):
    tokens = pattern_record.tokens[0]
    pattern = pattern_record.pattern(1, 0)
    hidden, rest = token_views.hide_first_token(pattern, tokens)
    assert rest == tokens[1:] and hidden.shape == (pattern.shape[0], len(tokens) - 1, len(tokens) - 1)
    torch.testing.assert_close(hidden[2, 4, 1], pattern[2, 5, 2])
    assert float(hidden[0, 3].sum()) == pytest.approx(float(1.0 - pattern[0, 4, 0]), abs=1e-5)
    values, rest = token_views.hide_first_key(pattern[:, -1], tokens)
    torch.testing.assert_close(values, pattern[:, -1, 1:])
    with pytest.raises(InputError, match="one token"):
        token_views.hide_first_token(pattern[:, :1, :1], tokens[:1])


def test_guard_blanks_exactly_the_keys_seen_by_few_queries(stats_record):
    received = stats_record.stat(1, "received_mean")[2]
    counts = stats_record.stat(1, "visible_count")
    n = len(stats_record.tokens[0])
    assert counts.tolist() == [float(n - k) for k in range(n)]  # causal: key k is seen by n - k queries
    guarded = token_views.guard_few_queries(received, counts, 4)
    assert guarded.hidden == 3
    assert torch.isnan(guarded.values[-3:]).all()
    torch.testing.assert_close(guarded.values[:-3], received[:-3].float())
    fig = token_views.guarded_summary_figure(received, counts, stats_record.stat(1, "entropy")[2],
                                             stats_record.tokens[0], "summary", min_queries=4, hide_first=True)
    bars = fig.data[0]
    assert list(bars.x) == list(range(1, n)) and all(_nan(v) for v in bars.y[-3:])
    assert bars.y[0] == pytest.approx(float(received[1]))
    assert "blank: 3" in fig.layout.annotations[0].text
    assert "seen by 5 queries" in bars.hovertext[n - 6]


@pytest.mark.parametrize("min_queries", [0, 2.5, True])
def test_bad_guard(min_queries):
    with pytest.raises(InputError, match="positive integer"):
        token_views.guard_few_queries(torch.ones(3), torch.ones(3), min_queries)


def test_window_figure_places_the_rows_at_their_queries(tiny):
    prompt = "one two three four five six seven eight nine ten"
    window = capture_window(tiny, prompt, 6, 9, layers=[1])
    rows = window.rows[1][3]
    fig = token_views.window_figure(rows, window.tokens, window.start, "L1 H3", hide_first=True)
    heat = fig.data[0]
    assert list(heat.y) == [6, 7, 8] and list(heat.x) == list(range(1, len(window.tokens)))
    assert heat.z[1][0] == pytest.approx(float(rows[1, 1]))  # query 7, key 1
    assert _nan(heat.z[0][7]) and not _nan(heat.z[0][5])  # query 6 sees keys up to 6 (column 5 once key 0 is hidden)
    log = token_views.window_figure(rows, window.tokens, window.start, "L1 H3", scale="log").data[0]
    assert log.z[2][0] == pytest.approx(math.log10(max(float(rows[2, 0]), 1e-6)), rel=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        token_views.window_figure(rows, window.tokens, 12, "x")
