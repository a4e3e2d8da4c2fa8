"""Percentile bootstrap intervals for accuracies, paired accuracy differences and pooled ratios."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile-bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{100 * self.value:5.1f} [{100 * self.low:5.1f}, {100 * self.high:5.1f}]"


def bootstrap_mean(hits: Sequence[bool | float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``hits`` with a bootstrap interval over items."""
    values = np.asarray(hits, dtype=float)
    if values.size == 0:
        raise ValueError("cannot bootstrap an empty sample")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2
    return Interval(float(values.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def bootstrap_difference(treated: Sequence[bool], control: Sequence[bool], **kwargs) -> Interval:
    """Paired difference ``mean(treated) - mean(control)`` over the same items."""
    if len(treated) != len(control):
        raise ValueError(f"paired samples differ in size: {len(treated)} vs {len(control)}")
    return bootstrap_mean(np.asarray(treated, float) - np.asarray(control, float), **kwargs)


def bootstrap_pooled(columns: Sequence[Sequence[float]], statistic: Callable[[np.ndarray], np.ndarray],
                     n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """A statistic of pooled sums with a bootstrap interval over items.

    ``columns`` is ``[item, column]``: per item (a trace, a problem) the counts or sums to pool.
    ``statistic`` maps pooled sums ``[..., column]`` to a value ``[...]`` (vectorised over the
    leading axes), e.g. ``lambda s: s[..., 0] / s[..., 1] - 1`` for a lift of pooled ratios.
    Items are resampled with replacement and the statistic recomputed on the resampled sums;
    resamples where it is not finite (a zero denominator) are left out of the quantiles.
    """
    table = np.asarray(columns, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(f"columns must be a non-empty [item, column] table, got shape {table.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(table.sum(axis=0)))
        picks = np.random.default_rng(seed).integers(0, table.shape[0], size=(n_boot, table.shape[0]))
        resampled = np.asarray(statistic(table[picks].sum(axis=1)), dtype=float)
    finite = resampled[np.isfinite(resampled)]
    tail = (1.0 - level) / 2
    if finite.size == 0:
        return Interval(value, math.nan, math.nan)
    return Interval(value, float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail)))
