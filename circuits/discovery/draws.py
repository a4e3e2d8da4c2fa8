"""Seeded draws that give the same sequence on every Python version (the task generators' dice).

Context:
    The task files in ``data/`` are committed and checked against their generators, so a draw
    must not change with the Python release. Only ``random.Random(seed).random()`` has that
    guarantee (``choice``, ``sample`` and ``shuffle`` have changed their algorithms before); every
    draw here is built on it.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def index(rng: random.Random, n: int) -> int:
    """A draw from ``range(n)``."""
    return min(int(rng.random() * n), n - 1)


def distinct(rng: random.Random, pool: Sequence[T], k: int) -> list[T]:
    """``k`` different entries of ``pool``, drawn one after another."""
    if k > len(pool):
        raise ValueError(f"cannot draw {k} different entries from {len(pool)}")
    left = list(pool)
    return [left.pop(index(rng, len(left))) for _ in range(k)]


def shuffled(rng: random.Random, items: Sequence[T]) -> list[T]:
    """``items`` in a random order (Fisher-Yates)."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = index(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out
