"""Where anchors fall: token classes on hand-made token strings, placement shares and lifts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from circuits.evaluation.bootstrap import bootstrap_pooled
from circuits.rhythm.anchors import TOKEN_CLASSES, all_placements, anchor_placement, format_placements
from circuits.rhythm.metrics import HeadRoles, TokenRhythm
from circuits.rhythm.peaks import CouplingConfig, fai_peaks

FAST = CouplingConfig(n_shuffles=20, n_boot=300)

TOKENS = ["To", " solve", " it", ".", " First", ",", " 3", ".", "5", " x", "\n\n", "J", "an", "et", ":", " 16",
          "\nSo", " 16", " *", " 3"]


@pytest.mark.parametrize("name, expected", [
    ("number", [" 3", "5", " 16", " 16", " 3"]),
    ("line_start", ["To", "J", "\nSo"]),
    ("sentence_start", ["To", " First", "J", " 16", "\nSo"]),  # not the "5" of "3.5"
    ("after_number", [".", " x", "\nSo", " *"]),
    ("sentence_end", [".", ".", "\n\n", ":", "\nSo"]),  # the "." of "3.5" too: a known limit
    ("operator", [" *"]),
])
def test_token_classes_on_hand_made_tokens(name, expected):
    assert [TOKENS[i] for i in TOKEN_CLASSES[name](TOKENS).nonzero()[0]] == expected


def test_a_response_opening_with_newlines_starts_at_its_first_visible_token():
    assert TOKEN_CLASSES["line_start"](["\n", " ", "Step", " 1", "\n", "Step"]).nonzero()[0].tolist() == [2, 5]


def rhythm(tokens, fai) -> TokenRhythm:
    roles = HeadRoles(layers=(0,), spans=torch.zeros(1, 1, dtype=torch.float64), local_heads=((0, 0),),
                      global_heads=((0, 0),))
    fai = torch.tensor(fai, dtype=torch.float64)
    return TokenRhythm(0, 0, tuple(tokens), torch.zeros_like(fai), fai, fai, roles)


def test_placement_share_base_and_lift_by_hand():
    # 11 tokens, 2 numbers (positions 2 and 6); FAI peaks at 2, 6 and 8; NaN at the last token
    tokens = [" a", " b", " 1", " c", " d", " e", " 2", " f", " g", " h", " i"]
    fai = [0.0, 0.1, 0.9, 0.1, 0.0, 0.1, 0.8, 0.1, 0.7, 0.2, math.nan]
    one = rhythm(tokens, fai)
    assert fai_peaks(one.fai).tolist() == [2, 6, 8]
    placement = anchor_placement([one, one], "fai", "number", FAST)
    assert placement.n_peaks == 6 and placement.n_traces == 2
    assert placement.share == pytest.approx(2 / 3)
    assert placement.base == pytest.approx(2 / 10)  # the NaN token is not eligible
    assert placement.lift.value == pytest.approx((2 / 3) / (2 / 10) - 1)
    assert placement.lift.low == pytest.approx(placement.lift.value)  # two identical traces: no spread


def test_placement_lift_interval_covers_a_spread_of_traces():
    rng = np.random.default_rng(0)
    rhythms = []
    for _ in range(12):
        fai = rng.uniform(0, 1, 40)
        tokens = [f" {i}" if rng.uniform() < 0.3 else " w" for i in range(40)]
        rhythms.append(rhythm(tokens, fai))
    placement = anchor_placement(rhythms, "fai", "number", FAST)
    assert placement.lift.low < placement.lift.value < placement.lift.high
    placements = all_placements(rhythms, FAST)
    assert {(p.signal, p.token_class) for p in placements} == {(s, c) for s in ("fai", "waad") for c in TOKEN_CLASSES}
    assert "number" in format_placements(placements)


@pytest.mark.parametrize("kwargs, message", [
    ({"signal": "entropy"}, "unknown signal"),
    ({"token_class": "verb"}, "unknown token class"),
])
def test_placement_bad_names(kwargs, message):
    with pytest.raises(ValueError, match=message):
        anchor_placement([rhythm([" a", " b", " c"], [0.0, 1.0, 0.0])], **kwargs)


def test_placement_of_no_traces_is_an_error():
    with pytest.raises(ValueError, match="no traces"):
        anchor_placement([])


def test_bootstrap_pooled_resamples_items_and_recomputes_the_pooled_statistic():
    table = [[1, 2], [3, 4], [5, 6]]
    interval = bootstrap_pooled(table, lambda s: s[..., 0] / s[..., 1], n_boot=500, seed=1)
    assert interval.value == pytest.approx(9 / 12)
    assert 1 / 2 <= interval.low <= interval.value <= interval.high <= 5 / 6
    with pytest.raises(ValueError, match="item, column"):
        bootstrap_pooled([], lambda s: s)
