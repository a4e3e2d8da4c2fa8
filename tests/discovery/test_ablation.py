"""Circuit ablation on the planted model: the planted head carries the answer, the others hardly do."""

from __future__ import annotations

import math

import pytest

from circuits.discovery.ablation import (ablate_heads, ablation_study, checked_heads, complement, random_heads)
from probe.errors import InputError
from tests.discovery.planting import PLANTED


def _others(model, n: int = 4):
    """``n`` heads other than the planted one, spread over the layers."""
    g = model.geometry
    return [h for h in complement([PLANTED], g.n_layers, g.n_heads)][:: max(1, (g.n_layers * g.n_heads) // n)][:n]


@pytest.mark.parametrize("mode", ["mean", "corrupted"])
def test_ablating_the_planted_head_loses_most_of_the_gap(planted, mode):
    model, contrast = planted
    result = ablate_heads(model, contrast, [PLANTED], mode=mode)
    assert result.heads == (PLANTED,) and result.n_heads == 1 and result.n_items == len(contrast)
    assert result.clean_logit_diff > result.corrupted_logit_diff + 1
    assert result.gap_lost > 0.8
    assert result.clean_accuracy > 0.5 > result.ablated_accuracy


def test_ablating_other_heads_loses_little(planted):
    model, contrast = planted
    result = ablate_heads(model, contrast, _others(model))
    assert result.n_heads == 4 and abs(result.gap_lost) < 0.2


def test_keeping_only_the_planted_head_keeps_most_of_the_gap(planted):
    model, contrast = planted
    g = model.geometry
    result = ablate_heads(model, contrast, [PLANTED], keep_only=True)
    assert result.n_heads == g.n_layers * g.n_heads - 1 and PLANTED not in result.heads
    assert result.gap_lost < 0.3
    assert ablate_heads(model, contrast, _others(model), keep_only=True).gap_lost > 0.8


def test_ablating_no_heads_changes_nothing(planted):
    model, contrast = planted
    g = model.geometry
    for result in (ablate_heads(model, contrast, []),
                   ablate_heads(model, contrast, complement([], g.n_layers, g.n_heads), keep_only=True,
                                mode="corrupted")):
        assert result.heads == () and result.ablated_logit_diff == result.clean_logit_diff
        assert result.ablated_accuracy == result.clean_accuracy and result.gap_lost == 0.0


@pytest.mark.parametrize("mode", ["mean", "corrupted"])
def test_batched_equals_one_batch(planted, mode):
    model, contrast = planted
    heads = [PLANTED, (0, 1), (1, 3)]
    whole = ablate_heads(model, contrast, heads, mode=mode, batch_size=len(contrast))
    for batch_size in (1, 4):
        part = ablate_heads(model, contrast, heads, mode=mode, batch_size=batch_size)
        for name in ("clean_logit_diff", "corrupted_logit_diff", "ablated_logit_diff"):
            assert getattr(part, name) == pytest.approx(getattr(whole, name), abs=1e-4)
        assert (part.clean_accuracy, part.ablated_accuracy) == (whole.clean_accuracy, whole.ablated_accuracy)


def test_the_study_sets_circuit_complement_and_a_seeded_random_control(planted):
    model, contrast = planted
    g = model.geometry
    study = ablation_study(model, contrast, [PLANTED, (0, 0)], seed=5)
    assert study.circuit.heads == ((0, 0), PLANTED)
    assert len(study.complement.heads) == g.n_layers * g.n_heads - 2
    assert study.random.n_heads == 2 and not set(study.random.heads) & {PLANTED, (0, 0)}
    assert study.random.heads == random_heads(g.n_layers, g.n_heads, 2, seed=5, avoid=[PLANTED, (0, 0)])
    assert study.circuit.gap_lost > 0.8 > 0.2 > abs(study.random.gap_lost)
    assert study.complement.gap_lost < 0.3
    assert math.isfinite(study.circuit.to_dict()["gap_lost"])


def test_random_heads_are_seeded_and_distinct():
    first = random_heads(3, 6, 5, seed=1)
    assert first == random_heads(3, 6, 5, seed=1) and len(set(first)) == 5
    assert any(random_heads(3, 6, 5, seed=s) != first for s in range(2, 6))
    assert random_heads(2, 2, 3, seed=0, avoid=[(0, 0), (1, 1)]) != ()  # too few outside: drawn from all
    assert len(random_heads(2, 2, 3, seed=0, avoid=[(0, 0), (1, 1)])) == 3


@pytest.mark.parametrize(("call", "expected"), [
    (lambda m, c: ablate_heads(m, c, [(9, 0)]), "head (9, 0) is outside the model"),
    (lambda m, c: ablate_heads(m, c, [(0, 0)], mode="zero"), "mode must be one of"),
    (lambda m, c: ablate_heads(m, c, [(0, 0)], batch_size=0), "batch_size must be a positive integer"),
    (lambda m, c: ablate_heads(m, c, ["x"]), "a head is a (layer, head) pair"),
    (lambda m, c: random_heads(2, 2, 5), "k must be a whole number from 0 to 4"),
])
def test_bad_input_is_an_input_error(planted, call, expected):
    model, contrast = planted
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        call(model, contrast)


def test_checked_heads_sorts_and_drops_repeats():
    assert checked_heads([(1, 2), (0, 3), (1, 2)], 2, 4) == ((0, 3), (1, 2))
