"""How well per-head scores recover a known circuit: ROC AUC, ACDC's staircase AUC, precision at k.

Context:
    A discovery method gives each head a score, higher meaning more in the circuit. Against a
    :class:`~circuits.discovery.ground_truth.GroundTruth` each head is a positive (in the circuit) or
    a negative; every threshold on the scores recovers the heads at or above it, one point
    ``(FPR, TPR)`` of a ROC curve (methods dossier section i). Two areas summarise the curve:

    - :func:`roc_auc`: scikit-learn's ``roc_auc_score``, the trapezoid area. Equal to the chance
      that a random positive outscores a random negative, a tie counting one half. This is the
      number the SAE-circuits paper reports (O'Neill & Bui, section c).
    - :func:`staircase_auc`: ACDC's pessimistic area (Conmy et al. 2023,
      ``acdc/acdc_graphics.py: pessimistic_auc``) on the same head-level points: add ``(0, 0)`` and
      ``(1, 1)``, drop points that are not Pareto-optimal, sort by FPR, and sum
      ``(1 - x_i) (y_i - y_{i-1})``: the area under the staircase that rises only *after* paying a
      step's FPR. On the points of one score ranking it equals the chance that a random positive
      *strictly* outscores a random negative: tied positive-negative pairs count zero, as if every
      tie were broken against the method. Without ties the two areas agree; a method that gives
      many heads one score (integer code counts, zeros) loses up to half of each tied pair here.

    Both are head-level areas. ACDC's published AUCs (IOI 0.869 edge, 0.880 node) are over edges,
    or over nodes in which a head is several nodes (q, k, v, output): a different quantity.

    Ambiguous heads (:attr:`GroundTruth.ambiguous`) are left out of both classes by default
    (``ambiguous="exclude"``); ``"positive"`` counts them in the circuit, ``"negative"`` out of it
    (``"negative"`` is the canonical list exactly, ACDC's convention).

Example:
    >>> truth = load_ground_truth("ioi")
    >>> scores = torch.rand(truth.shape)  # a method's [layer, head] scores
    >>> result = score_method("random", scores, truth, seconds=0.1)
    >>> result.roc_auc, result.staircase_auc, result.precision_at_k[26]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve
from torch import Tensor

from circuits.discovery.ground_truth import GroundTruth, Head, heads_of

Ambiguous = Literal["exclude", "positive", "negative"]
AMBIGUOUS_MODES: tuple[str, ...] = ("exclude", "positive", "negative")


@dataclass(frozen=True)
class Labelled:
    """The heads that are scored, flattened: each head's score and whether it is in the circuit.

    Attributes:
        heads: the scored heads, ``(layer, head)``, in layer-major order.
        score: ``[head]`` their scores (float64).
        positive: ``[head]`` True for heads of the circuit.
        n_excluded: the ambiguous heads left out.
    """

    heads: tuple[Head, ...]
    score: np.ndarray
    positive: np.ndarray
    n_excluded: int


def labelled(scores: Float[Tensor, "layer head"], truth: GroundTruth, ambiguous: Ambiguous = "exclude") -> Labelled:
    """Check ``scores`` against ``truth``'s model and label every head that is scored.

    Raises:
        ValueError: on a score tensor of another shape than ``truth.shape``, non-finite scores, an
            unknown ``ambiguous`` mode, or no positive or no negative head left to score.
    """
    if not isinstance(truth, GroundTruth):
        raise ValueError(f"truth must be a GroundTruth (see load_ground_truth), got {type(truth).__name__}")
    if ambiguous not in AMBIGUOUS_MODES:
        raise ValueError(f"ambiguous must be one of {', '.join(AMBIGUOUS_MODES)}, got {ambiguous!r}")
    values = torch.as_tensor(scores).detach().to("cpu", torch.float64)
    if tuple(values.shape) != truth.shape:
        raise ValueError(f"scores have shape {tuple(values.shape)}, but {truth.model} ({truth.task}) "
                         f"needs [layer, head] = {list(truth.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("scores hold NaN or infinite values")
    positives = truth.heads | (frozenset(truth.ambiguous) if ambiguous == "positive" else frozenset())
    skipped = frozenset(truth.ambiguous) if ambiguous == "exclude" else frozenset()
    heads = tuple((layer, head) for layer in range(truth.n_layers) for head in range(truth.n_heads)
                  if (layer, head) not in skipped)
    positive = np.array([h in positives for h in heads], dtype=bool)
    if positive.all() or not positive.any():
        kind = "negative" if positive.all() else "positive"
        raise ValueError(f"no {kind} head left to score against ({len(heads)} heads scored, "
                         f"ambiguous={ambiguous!r}): ROC needs both classes")
    score = np.array([float(values[h]) for h in heads])
    return Labelled(heads, score, positive, len(skipped))


def roc_auc(scores: Float[Tensor, "layer head"], truth: GroundTruth, *, ambiguous: Ambiguous = "exclude") -> float:
    """Head-level ROC AUC, scikit-learn's ``roc_auc_score`` (trapezoid; a tie counts one half)."""
    data = labelled(scores, truth, ambiguous)
    return float(roc_auc_score(data.positive, data.score))


def roc_points(
    scores: Float[Tensor, "layer head"], truth: GroundTruth, *, ambiguous: Ambiguous = "exclude"
) -> tuple[tuple[float, float], ...]:
    """``(FPR, TPR)`` of the heads recovered at each distinct score (``score >= t``), from ``(0, 0)``.

    scikit-learn's ``roc_curve`` with ``drop_intermediate=False``: one point per distinct score, so
    tied heads enter together (a diagonal step when they mix both classes).
    """
    data = labelled(scores, truth, ambiguous)
    fpr, tpr, _ = roc_curve(data.positive, data.score, drop_intermediate=False)
    return tuple((float(x), float(y)) for x, y in zip(fpr, tpr))


def pessimistic_auc(points: Iterable[tuple[float, float]]) -> float:
    """ACDC's pessimistic staircase area under ``(FPR, TPR)`` points, exactly as ACDC computes it.

    Steps (``notebooks/make_plotly_plots.py`` and ``acdc/acdc_graphics.py: pessimistic_auc``):
    add ``(0, 0)`` and ``(1, 1)``; drop every point ``(x, y)`` for which another point has a
    strictly smaller ``x`` and a strictly larger ``y`` (``discard_non_pareto_optimal``); sort by
    ``x``, then ``y``; return ``sum_i (1 - x_i) (y_i - y_{i-1})``. The points may come from any
    family of recovered sets (thresholds, regularisation strengths), nested or not.

    Raises:
        ValueError: on a point outside ``[0, 1]^2``.
    """
    pts = {(float(x), float(y)) for x, y in points} | {(0.0, 0.0), (1.0, 1.0)}
    if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in pts):
        raise ValueError("ROC points must lie in [0, 1] x [0, 1]")
    kept = sorted(p for p in pts if not any(x1 < p[0] and y1 > p[1] for x1, y1 in pts))
    xs = np.array([x for x, _ in kept])
    ys = np.array([y for _, y in kept])
    return float(np.sum((1 - xs[1:]) * np.diff(ys)))


def staircase_auc(
    scores: Float[Tensor, "layer head"], truth: GroundTruth, *, ambiguous: Ambiguous = "exclude"
) -> float:
    """ACDC's pessimistic staircase AUC (:func:`pessimistic_auc`) over the head-level ROC points.

    Equals the share of (positive, negative) head pairs in which the positive scores strictly higher.
    """
    return pessimistic_auc(roc_points(scores, truth, ambiguous=ambiguous))


def precision_recall_at_k(
    scores: Float[Tensor, "layer head"], truth: GroundTruth, k: int, *, ambiguous: Ambiguous = "exclude"
) -> tuple[float, float]:
    """Precision and recall of the ``k`` highest-scoring heads.

    Ties at the ``k``-th place are broken pessimistically, negatives first, as the staircase does;
    ambiguous heads left out of scoring are left out of the ranking too.

    Returns:
        ``(precision, recall)``: ``TP / k`` and ``TP / positives``.
    """
    data = labelled(scores, truth, ambiguous)
    k = _checked_k(k, len(data.heads))
    order = np.lexsort((data.positive, -data.score))  # by score descending, negatives first on ties
    hits = int(data.positive[order[:k]].sum())
    return hits / k, hits / int(data.positive.sum())


def precision_recall_points(
    scores: Float[Tensor, "layer head"], truth: GroundTruth, *, ambiguous: Ambiguous = "exclude"
) -> tuple[tuple[float, float, float], ...]:
    """``(threshold, precision, recall)`` at each distinct score, highest threshold first.

    scikit-learn's ``precision_recall_curve``; its end point (nothing recovered: precision 1,
    recall 0, ACDC's convention) comes first with threshold ``inf``.
    """
    data = labelled(scores, truth, ambiguous)
    precision, recall, thresholds = precision_recall_curve(data.positive, data.score)
    rows = [(math.inf, float(precision[-1]), float(recall[-1]))]
    rows += [(float(t), float(p), float(r)) for t, p, r in zip(thresholds[::-1], precision[-2::-1], recall[-2::-1])]
    return tuple(rows)


def overlap(a: GroundTruth | Iterable[Head], b: GroundTruth | Iterable[Head]) -> float:
    """Component reuse: the share of all heads found for either task that are found for both.

    ``|A & B| / |A | B|``, as Merullo et al. count it (methods dossier section h): on GPT-2 medium
    the top-2%-per-stage heads of IOI and Colored Objects number 32 together, 25 of them shared
    (4 IOI-only, 3 Colored-Objects-only), hence "78%" (25/32). Symmetric; a one-sided share
    ``|A & B| / |A|`` would give 25/29 or 25/28 there.

    Raises:
        ValueError: when both are empty, or two ground truths are of models of different shapes.
    """
    if isinstance(a, GroundTruth) and isinstance(b, GroundTruth) and a.shape != b.shape:
        raise ValueError(f"cannot compare heads of {a.model} {list(a.shape)} with {b.model} {list(b.shape)}")
    first, second = heads_of(a), heads_of(b)
    union = first | second
    if not union:
        raise ValueError("overlap of two empty head sets is undefined")
    return len(first & second) / len(union)


@dataclass(frozen=True)
class CircuitScore:
    """One method's scores against one ground truth, with its wall-clock time.

    Attributes:
        method: the method's name.
        task: the ground truth's task.
        model: the ground truth's model.
        variant: which list of the task (``canonical`` or a variant's name).
        ambiguous: how ambiguous heads were counted (``exclude``, ``positive``, ``negative``).
        n_positive: heads scored as in the circuit.
        n_negative: heads scored as outside it.
        n_excluded: ambiguous heads left out.
        roc_auc: scikit-learn's trapezoid ROC AUC (ties count one half).
        staircase_auc: ACDC's pessimistic staircase AUC (ties count zero).
        precision_at_k: k -> precision of the top k heads (ties broken negatives first).
        recall_at_k: k -> recall of the top k heads.
        roc_points: ``(FPR, TPR)`` at each distinct score, from ``(0, 0)``.
        pr_points: ``(threshold, precision, recall)`` at each distinct score, from ``inf``.
        seconds: the method's wall-clock time to produce the scores.
    """

    method: str
    task: str
    model: str
    variant: str
    ambiguous: str
    n_positive: int
    n_negative: int
    n_excluded: int
    roc_auc: float
    staircase_auc: float
    precision_at_k: Mapping[int, float]
    recall_at_k: Mapping[int, float]
    roc_points: tuple[tuple[float, float], ...]
    pr_points: tuple[tuple[float, float, float], ...]
    seconds: float

    def to_dict(self) -> dict:
        """Plain JSON-ready values (``inf`` threshold as ``None``; the k keys as strings)."""
        out = asdict(self)
        out["precision_at_k"] = {str(k): v for k, v in self.precision_at_k.items()}
        out["recall_at_k"] = {str(k): v for k, v in self.recall_at_k.items()}
        out["roc_points"] = [list(p) for p in self.roc_points]
        out["pr_points"] = [[None if math.isinf(t) else t, p, r] for t, p, r in self.pr_points]
        return out


def score_method(
    name: str,
    scores: Float[Tensor, "layer head"],
    truth: GroundTruth,
    seconds: float,
    *,
    ks: Sequence[int] | None = None,
    ambiguous: Ambiguous = "exclude",
) -> CircuitScore:
    """Every score of one method against one ground truth, bundled with its wall-clock time.

    Args:
        name: the method's name (``sae``, ``patching``, ``eap``, ``eap_ig``, ...).
        scores: ``[layer, head]`` per-head scores, higher = more in the circuit.
        truth: the circuit to recover.
        seconds: how long the method took to produce ``scores``.
        ks: the k of precision and recall at k; default: the number of positives (where precision
            equals recall).
        ambiguous: how ambiguous heads count (see the module docstring).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    data = labelled(scores, truth, ambiguous)
    n_positive = int(data.positive.sum())
    ks = (n_positive,) if ks is None else tuple(dict.fromkeys(_checked_k(k, len(data.heads)) for k in ks))
    at_k = {k: precision_recall_at_k(scores, truth, k, ambiguous=ambiguous) for k in ks}
    return CircuitScore(
        method=name, task=truth.task, model=truth.model, variant=truth.variant, ambiguous=ambiguous,
        n_positive=n_positive, n_negative=len(data.heads) - n_positive, n_excluded=data.n_excluded,
        roc_auc=roc_auc(scores, truth, ambiguous=ambiguous),
        staircase_auc=staircase_auc(scores, truth, ambiguous=ambiguous),
        precision_at_k={k: p for k, (p, _) in at_k.items()}, recall_at_k={k: r for k, (_, r) in at_k.items()},
        roc_points=roc_points(scores, truth, ambiguous=ambiguous),
        pr_points=precision_recall_points(scores, truth, ambiguous=ambiguous), seconds=float(seconds),
    )


def _checked_k(k: object, n: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the heads scored), got {k!r}")
    return int(k)
