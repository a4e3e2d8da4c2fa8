"""Bootstrap intervals for POPE and CHAIR, over questions or captions, from pooled counts.

Both metrics are ratios of sums over items (POPE's precision is ``sum(tp) / sum(tp + fp)`` over
questions; CHAIR_I is ``sum(hallucinated) / sum(mentions)`` over captions), so each item
contributes a row of counts and :func:`circuits.evaluation.bootstrap.bootstrap_pooled` resamples
items and recomputes the ratio. A resample whose denominator is zero is left out of the quantiles.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from circuits.evaluation.bootstrap import Interval, bootstrap_pooled

Statistic = Callable[[np.ndarray], np.ndarray]

POPE_COLUMNS = ("tp", "fp", "tn", "fn")
"""The count columns of one POPE question (exactly one of them is 1)."""

POPE_STATISTICS: Mapping[str, Statistic] = {
    "accuracy": lambda s: (s[..., 0] + s[..., 2]) / s.sum(axis=-1),
    "precision": lambda s: s[..., 0] / (s[..., 0] + s[..., 1]),
    "recall": lambda s: s[..., 0] / (s[..., 0] + s[..., 3]),
    "f1": lambda s: 2 * s[..., 0] / (2 * s[..., 0] + s[..., 1] + s[..., 3]),
    "yes_ratio": lambda s: (s[..., 0] + s[..., 1]) / s.sum(axis=-1),
}

CHAIR_COLUMNS = ("hallucinated_caption", "hallucinated", "mentions", "recalled", "truth", "caption")
"""The count columns of one caption: 1 if it hallucinates, hallucinated mentions, all mentions,
ground-truth objects it mentions, ground-truth objects, and 1."""

CHAIR_STATISTICS: Mapping[str, Statistic] = {
    "chair_s": lambda s: s[..., 0] / s[..., 5],
    "chair_i": lambda s: s[..., 1] / s[..., 2],
    "recall": lambda s: s[..., 3] / s[..., 4],
}


def pooled_intervals(columns: np.ndarray, statistics: Mapping[str, Statistic], n_boot: int = 2000,
                     level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Each statistic of the pooled ``columns`` (``[item, column]`` counts) with its bootstrap interval.

    Every statistic is computed on the same resamples (one ``seed``), so the intervals are joint draws.
    """
    return {name: bootstrap_pooled(columns, statistic, n_boot=n_boot, level=level, seed=seed)
            for name, statistic in statistics.items()}
