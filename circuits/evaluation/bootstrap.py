"""Percentile bootstrap intervals for accuracies and paired accuracy differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
