"""Scores of per-head rankings against a circuit, checked against values computed by hand.

The small examples live on a 2 x 3 model (6 heads) whose circuit is heads (0, 0) and (1, 2), so each
AUC is a count of (positive, negative) pairs out of 2 x 4 = 8, written out beside each assertion.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from circuits.discovery.ground_truth import GroundTruth, load_ground_truth
from circuits.discovery.scores import (
    labelled,
    overlap,
    pessimistic_auc,
    precision_recall_at_k,
    precision_recall_points,
    roc_auc,
    roc_points,
    score_method,
    staircase_auc,
)

# positives (0,0), (1,2); negatives (0,1), (0,2), (1,0), (1,1)
NO_TIES = torch.tensor([[0.9, 0.1, 0.4], [0.3, 0.2, 0.35]])
# the positive (1,2) ties the negative (1,1) at 0.4
ONE_TIE = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.4, 0.4]])


def build_truth(heads=((0, 0), (1, 2)), ambiguous=None, n_layers=2, n_heads=3) -> GroundTruth:
    return GroundTruth(task="toy", model="toy-2x3", n_layers=n_layers, n_heads=n_heads,
                       heads=frozenset(heads), ambiguous=ambiguous or {})


def test_auc_without_ties_counts_pairs():
    # 0.9 beats all 4 negatives; 0.35 beats 0.3, 0.2, 0.1 but not 0.4: 7 of 8 pairs
    assert roc_auc(NO_TIES, build_truth()) == pytest.approx(7 / 8)
    assert staircase_auc(NO_TIES, build_truth()) == pytest.approx(7 / 8)


def test_tie_counts_half_in_sklearn_and_zero_in_the_staircase():
    truth = build_truth()
    # pairs: 0.9 beats 4; 0.4 beats 0.3, 0.2, 0.1 and ties 0.4: sklearn (4 + 3 + 1/2) / 8
    assert roc_auc(ONE_TIE, truth) == pytest.approx(7.5 / 8)
    # points: (0, 0), t=0.9 (0, 1/2), t=0.4 (1/4, 1) [diagonal step: the tie], then (1/2, 1) ... (1, 1)
    assert np.allclose(roc_points(ONE_TIE, truth), [(0, 0), (0, 0.5), (0.25, 1), (0.5, 1), (0.75, 1), (1, 1)])
    # staircase: (1 - 0) * 1/2 + (1 - 1/4) * 1/2 = 7/8; the trapezoid adds the triangle 1/4 * 1/2 / 2
    assert staircase_auc(ONE_TIE, truth) == pytest.approx(7 / 8)


def test_all_heads_tied():
    truth = build_truth()
    assert roc_auc(torch.zeros(2, 3), truth) == pytest.approx(0.5)
    assert staircase_auc(torch.zeros(2, 3), truth) == 0.0


def test_perfect_and_reversed_rankings():
    perfect = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert roc_auc(perfect, build_truth()) == staircase_auc(perfect, build_truth()) == 1.0
    assert roc_auc(-perfect, build_truth()) == staircase_auc(-perfect, build_truth()) == 0.0


@pytest.mark.parametrize("xs, ys, expected", [
    # ACDC's own checks beside pessimistic_auc in acdc/acdc_graphics.py
    ([0, 1], [0, 1], 0.0),
    ([0, 0.5, 1], [0, 0.5, 1], 0.5 ** 2),
    ([0, 0.25, 1], [0, 0.25, 1], 0.25 * 0.75),
    ([0, 0.25, 0.5, 1], [0, 0.25, 0.5, 1], 5 / 16),
    ([0, 0.25, 0.75, 1], [0, 0.25, 0.5, 1], 4 / 16),
])
def test_pessimistic_auc_matches_acdc(xs, ys, expected):
    assert pessimistic_auc(zip(xs, ys)) == pytest.approx(expected)


def test_pessimistic_auc_drops_dominated_points():
    # (0.2, 0.5) is beaten by (0.1, 0.6); kept: (0,0) (0.1,0.6) (0.5,0.9) (1,1):
    # 0.9 * 0.6 + 0.5 * 0.3 + 0 * 0.1 = 0.69 (keeping it would give 0.66)
    assert pessimistic_auc([(0.1, 0.6), (0.2, 0.5), (0.5, 0.9)]) == pytest.approx(0.69)


def test_pessimistic_auc_rejects_points_outside_the_square():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pessimistic_auc([(0.5, 1.5)])


def test_both_areas_are_pair_counts_on_random_tied_scores():
    truth = build_truth(heads=[(0, 1), (1, 4), (2, 2), (4, 6), (3, 0)], n_layers=5, n_heads=7)
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        scores = torch.randint(0, 4, (5, 7), generator=generator).float()  # many ties
        data = labelled(scores, truth)
        pos, neg = data.score[data.positive], data.score[~data.positive]
        greater = np.mean([p > n for p, n in itertools.product(pos, neg)])
        equal = np.mean([p == n for p, n in itertools.product(pos, neg)])
        assert staircase_auc(scores, truth) == pytest.approx(greater)
        assert roc_auc(scores, truth) == pytest.approx(greater + equal / 2)


@pytest.mark.parametrize("k, precision, recall", [
    (1, 1.0, 0.5),      # 0.9 (positive)
    (2, 0.5, 0.5),      # then the tie at 0.4: the negative first
    (3, 2 / 3, 1.0),    # both tied heads in
    (6, 2 / 6, 1.0),
])
def test_precision_and_recall_at_k(k, precision, recall):
    assert precision_recall_at_k(ONE_TIE, build_truth(), k) == pytest.approx((precision, recall))


def test_precision_recall_points():
    points = precision_recall_points(NO_TIES, build_truth())
    assert points[0] == (float("inf"), 1.0, 0.0)
    thresholds = [t for t, _, _ in points[1:]]
    assert thresholds == sorted(thresholds, reverse=True) and len(thresholds) == 6
    # top 1: 0.9 (hit); top 2: + 0.4 (miss); top 3: + 0.35 (hit)
    assert np.allclose([(p, r) for _, p, r in points[1:4]], [(1, 0.5), (0.5, 0.5), (2 / 3, 1)])


class TestAmbiguous:
    # circuit {(0,0)} scored 0.5; ambiguous (1,1) scored 0.9; negatives 0.1, 0.2, 0.3, 0.6
    SCORES = torch.tensor([[0.5, 0.1, 0.2], [0.3, 0.9, 0.6]])
    TRUTH = build_truth(heads=[(0, 0)], ambiguous={(1, 1): "some paper has it"})

    def test_excluded_by_default(self):
        # 0.5 beats 3 of the 4 negatives
        assert roc_auc(self.SCORES, self.TRUTH) == pytest.approx(3 / 4)
        assert labelled(self.SCORES, self.TRUTH).n_excluded == 1
        assert precision_recall_at_k(self.SCORES, self.TRUTH, 1) == (0.0, 0.0)  # 0.6, a negative

    def test_as_negative(self):
        # 0.5 beats 3 of 5 negatives (not 0.6, 0.9)
        assert roc_auc(self.SCORES, self.TRUTH, ambiguous="negative") == pytest.approx(3 / 5)
        assert staircase_auc(self.SCORES, self.TRUTH, ambiguous="negative") == pytest.approx(3 / 5)

    def test_as_positive(self):
        # 0.5 beats 3 of 4, 0.9 beats 4 of 4: 7/8
        assert roc_auc(self.SCORES, self.TRUTH, ambiguous="positive") == pytest.approx(7 / 8)
        assert precision_recall_at_k(self.SCORES, self.TRUTH, 1, ambiguous="positive") == (1.0, 0.5)

    def test_negative_mode_is_the_canonical_list(self):
        truth = load_ground_truth("ioi")
        scores = torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
        bare = GroundTruth(task="ioi", model=truth.model, n_layers=12, n_heads=12, heads=truth.heads)
        assert roc_auc(scores, truth, ambiguous="negative") == roc_auc(scores, bare)
        assert roc_auc(scores, truth) != roc_auc(scores, bare)  # 9 ambiguous heads left out


def test_overlap_is_shared_over_union():
    shared = [(layer, 0) for layer in range(25)]
    ioi = shared + [(layer, 1) for layer in range(4)]
    colored = shared + [(layer, 2) for layer in range(3)]
    assert overlap(ioi, colored) == overlap(colored, ioi) == pytest.approx(25 / 32)  # the paper's 78%
    assert overlap(ioi, ioi) == 1.0 and overlap([(0, 0)], [(0, 1)]) == 0.0
    canonical, sae = load_ground_truth("ioi"), load_ground_truth("ioi", "sae_circuits")
    assert overlap(canonical, sae) == pytest.approx(25 / 27)
    with pytest.raises(ValueError, match="empty"):
        overlap([], [])
    with pytest.raises(ValueError, match="cannot compare"):
        overlap(canonical, load_ground_truth("docstring"))


def test_score_method_bundles_everything():
    result = score_method("toy", ONE_TIE, build_truth(), seconds=1.5, ks=[1, 3])
    assert (result.method, result.task, result.seconds) == ("toy", "toy", 1.5)
    assert (result.n_positive, result.n_negative, result.n_excluded) == (2, 4, 0)
    assert result.roc_auc == pytest.approx(7.5 / 8) and result.staircase_auc == pytest.approx(7 / 8)
    assert result.precision_at_k == pytest.approx({1: 1.0, 3: 2 / 3})
    assert result.recall_at_k == pytest.approx({1: 0.5, 3: 1.0})
    assert json.loads(json.dumps(result.to_dict()))["pr_points"][0] == [None, 1.0, 0.0]
    default = score_method("toy", ONE_TIE, build_truth(), seconds=0)
    assert list(default.precision_at_k) == [2]  # k = the circuit's size


@pytest.mark.parametrize("call, message", [
    (lambda t: roc_auc(torch.zeros(3, 2), t), "shape"),
    (lambda t: roc_auc(torch.zeros(2, 3, 1), t), "shape"),
    (lambda t: roc_auc(torch.tensor([[0.0, float("nan"), 0], [0, 0, 0]]), t), "NaN"),
    (lambda t: staircase_auc(torch.zeros(2, 3), t, ambiguous="maybe"), "ambiguous must be"),
    (lambda t: precision_recall_at_k(ONE_TIE, t, 0), "k must be"),
    (lambda t: precision_recall_at_k(ONE_TIE, t, 7), "k must be"),
    (lambda t: score_method("x", ONE_TIE, t, seconds=-1.0), "seconds"),
    (lambda t: roc_auc(ONE_TIE, {(0, 0)}), "GroundTruth"),
    (lambda t: roc_auc(ONE_TIE, build_truth(heads=itertools.product(range(2), range(3)))), "no negative"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call(build_truth())
