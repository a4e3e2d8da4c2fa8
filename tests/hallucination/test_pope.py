"""POPE: answers parsed as POPE's evaluate.py, metrics equal to hand counts, intervals per split."""

from __future__ import annotations

import pytest

from circuits.hallucination.pope import PopeMetrics, parse_yes_no, pope_by_split, pope_metrics, pope_report
from probe.errors import InputError


@pytest.mark.parametrize("text, parsed", [
    ("Yes.", "yes"), ("Yes, there is a dog in the image.", "yes"), ("No, there isn't.", "no"),
    ("There is not a dog.", "no"), ("no", "no"), ("I see it. No doubt.", "yes"),  # only the first sentence
    ("No!", "yes"), ("NO", "yes"),  # exact words, as POPE compares them
    ("Nothing like that", "yes"), ("", "yes"),
])
def test_parse_yes_no(text, parsed):
    assert parse_yes_no(text) == parsed


# Hand count: predictions y n y n n y y n against labels y y y n n n y n:
# TP = questions 0, 2, 6; FN = 1; TN = 3, 4, 7; FP = 5.
LABELS = ["yes", "yes", "yes", "no", "no", "no", "yes", "no"]
ANSWERS = ["Yes.", "No, there isn't.", "yes", "There is not a dog.", "No", "Yes, there is", "I see it. No doubt.",
           "no."]


def test_metrics_equal_hand_counts():
    metrics = pope_metrics(LABELS, ANSWERS)
    assert (metrics.tp, metrics.fp, metrics.tn, metrics.fn, metrics.n) == (3, 1, 3, 1, 8)
    assert (metrics.accuracy, metrics.precision, metrics.recall, metrics.f1, metrics.yes_ratio) == (
        0.75, 0.75, 0.75, 0.75, 0.5)
    assert metrics.to_dict()["yes_ratio"] == 0.5


def test_a_model_that_always_says_no():
    metrics = pope_metrics(["yes", "no", "no"], ["No.", "No.", "no"])
    assert (metrics.accuracy, metrics.precision, metrics.recall, metrics.f1, metrics.yes_ratio) == (
        pytest.approx(2 / 3), 0.0, 0.0, 0.0, 0.0)


def test_unbalanced_hand_count():
    # labels y y n n n, answers yes yes yes yes no: TP 2, FP 2, TN 1, FN 0
    metrics = pope_metrics(["yes", "yes", "no", "no", "no"], ["yes", "yes", "yes", "yes", "no"])
    assert metrics == PopeMetrics.from_counts(2, 2, 1, 0)
    assert (metrics.accuracy, metrics.precision, metrics.recall, metrics.f1, metrics.yes_ratio) == (
        0.6, 0.5, 1.0, pytest.approx(2 / 3), 0.8)


def test_report_per_split_with_intervals():
    reports = pope_by_split({"random": (LABELS * 10, ANSWERS * 10), "popular": (LABELS, ["yes"] * 8)}, n_boot=300)
    assert list(reports) == ["random", "popular"]
    random = reports["random"]
    assert random.metrics.accuracy == 0.75 and random.intervals["accuracy"].value == 0.75
    for name, interval in random.intervals.items():
        assert interval.low <= getattr(random.metrics, name) <= interval.high, name
    assert reports["popular"].metrics.yes_ratio == 1.0
    record = random.to_dict()
    assert record["split"] == "random" and set(record["intervals"]) == {"accuracy", "precision", "recall", "f1",
                                                                        "yes_ratio"}


def test_report_is_seeded():
    first, second = (pope_report(LABELS * 5, ANSWERS * 5, seed=3, n_boot=200) for _ in range(2))
    assert first.intervals == second.intervals


@pytest.mark.parametrize("labels, answers, word", [
    (["yes"], [], "one answer per question"),
    ([], [], "no questions"),
    (["maybe"], ["yes"], "'yes' or 'no'"),
    ("yes", ["yes"], "string"),
    (["yes"], [None], "string"),
])
def test_bad_calls_name_the_fix(labels, answers, word):
    with pytest.raises(InputError, match=word):
        pope_metrics(labels, answers)
