"""POPE: yes/no questions about objects, scored as a binary classifier (Li et al. 2023).

Context:
    POPE asks "Is there a <object> in the image?" for three objects in the image and three absent
    ones per image; the absent ones are drawn at random, from the most frequent objects
    (popular) or from those that co-occur most with the image's objects (adversarial). Answers
    are parsed as POPE's ``evaluate.py`` does (:func:`parse_yes_no`) and scored with "yes" as the
    positive class: accuracy, precision, recall, F1 and the yes ratio (a model that hallucinates
    says yes too often: high yes ratio, lower precision).

Example:
    >>> pope_metrics(["yes", "no", "yes", "no"], ["Yes, there is.", "No.", "no", "I think so"]).to_dict()["accuracy"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from circuits.evaluation.bootstrap import Interval
from circuits.hallucination.intervals import POPE_STATISTICS, pooled_intervals
from probe.errors import InputError

SPLITS = ("random", "popular", "adversarial")
"""POPE's three ways of drawing the absent objects."""


def parse_yes_no(text: str) -> str:
    """``"no"`` if the answer's first sentence has the word "No", "no" or "not", else ``"yes"``.

    As POPE's ``evaluate.py``: the text before the first ``.``, commas removed, split on spaces;
    the words are compared exactly ("No!" and "NO" count as yes, as there).

    Example:
        >>> [parse_yes_no(t) for t in ("Yes, there is a dog.", "No, there is not.", "There is not a cat", "no")]
        ['yes', 'no', 'no', 'no']
    """
    if not isinstance(text, str):
        raise InputError(f"an answer must be a string, got {type(text).__name__}")
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if {"No", "no", "not"} & set(words) else "yes"


@dataclass(frozen=True)
class PopeMetrics:
    """POPE's scores of one set of answers, "yes" as the positive class.

    Precision is 0 when the model never says yes; F1 is 0 when precision and recall are both 0
    (POPE's script divides by zero there).
    """

    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    n: int
    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def from_counts(cls, tp: int, fp: int, tn: int, fn: int) -> PopeMetrics:
        n = tp + fp + tn + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls((tp + tn) / n, precision, recall, f1, (tp + fp) / n, n, tp, fp, tn, fn)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outcome_table(labels: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """``[question, (tp, fp, tn, fn)]``: one 1 per question, answers parsed with :func:`parse_yes_no`."""
    if isinstance(labels, str) or isinstance(answers, str):
        raise InputError("labels and answers must be lists, got a string; wrap it in a list")
    if len(labels) != len(answers):
        raise InputError(f"{len(labels)} labels but {len(answers)} answers; pass one answer per question")
    if not labels:
        raise InputError("no questions to score; pass at least one label and answer")
    table = np.zeros((len(labels), 4))
    for i, (label, answer) in enumerate(zip(labels, answers)):
        if label not in ("yes", "no"):
            raise InputError(f"label {i} is {label!r}; labels must be 'yes' or 'no'")
        said_yes = parse_yes_no(answer) == "yes"
        table[i, {(True, True): 0, (False, True): 1, (False, False): 2, (True, False): 3}[label == "yes", said_yes]] = 1
    return table


def pope_metrics(labels: Sequence[str], answers: Sequence[str]) -> PopeMetrics:
    """Accuracy, precision, recall, F1 and yes ratio of ``answers`` (raw model text or yes/no)."""
    tp, fp, tn, fn = outcome_table(labels, answers).sum(axis=0).astype(int).tolist()
    return PopeMetrics.from_counts(tp, fp, tn, fn)


@dataclass(frozen=True)
class PopeReport:
    """One split's metrics with percentile-bootstrap intervals over its questions."""

    split: str
    metrics: PopeMetrics
    intervals: Mapping[str, Interval]

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, **self.metrics.to_dict(),
                "intervals": {name: interval.as_dict() for name, interval in self.intervals.items()}}


def pope_report(labels: Sequence[str], answers: Sequence[str], split: str = "", n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> PopeReport:
    """:func:`pope_metrics` with bootstrap intervals (``n_boot`` resamples of the questions)."""
    table = outcome_table(labels, answers)
    tp, fp, tn, fn = table.sum(axis=0).astype(int).tolist()
    intervals = pooled_intervals(table, POPE_STATISTICS, n_boot=n_boot, level=level, seed=seed)
    return PopeReport(split, PopeMetrics.from_counts(tp, fp, tn, fn), intervals)


def pope_by_split(splits: Mapping[str, tuple[Sequence[str], Sequence[str]]], **bootstrap: Any) -> dict[str, PopeReport]:
    """:func:`pope_report` of each split: ``{split: (labels, answers)}`` -> ``{split: report}``."""
    return {split: pope_report(labels, answers, split, **bootstrap) for split, (labels, answers) in splits.items()}
