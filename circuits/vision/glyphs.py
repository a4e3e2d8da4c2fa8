"""One distinct glyph per object category: the synthetic world's way of drawing "a dog".

Context:
    A glyph is a 6 x 6 binary pattern, drawn in the object's colour and scaled to its size. The
    patterns come from a fixed seed and are kept only when every pair differs in at least
    ``MIN_DISTANCE`` cells, so a vision tower can tell each category from every other one. The
    patterns are a function of the category's index alone: the same name draws the same glyph on
    every machine and in every split.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

GLYPH_CELLS = 6
MIN_DISTANCE = 10
_GLYPH_SEED = 20261203


@lru_cache(maxsize=None)
def glyph_table(n_categories: int) -> np.ndarray:
    """``[n_categories, 6, 6]`` booleans: each category's pattern, pairwise at least
    ``MIN_DISTANCE`` cells apart and each with 12 to 24 cells on."""
    rng = np.random.default_rng(_GLYPH_SEED)
    kept: list[np.ndarray] = []
    while len(kept) < n_categories:
        candidate = rng.random((GLYPH_CELLS, GLYPH_CELLS)) < 0.5
        if not 12 <= candidate.sum() <= 24:
            continue
        if all((candidate != other).sum() >= MIN_DISTANCE for other in kept):
            kept.append(candidate)
    return np.stack(kept)


def draw_glyph(canvas: np.ndarray, pattern: np.ndarray, top: int, left: int, cell: int,
               colour: tuple[int, int, int]) -> None:
    """Paint ``pattern`` on ``canvas`` (``[height, width, 3]`` uint8) with cells of ``cell`` pixels."""
    mask = np.kron(pattern, np.ones((cell, cell), dtype=bool))
    region = canvas[top:top + mask.shape[0], left:left + mask.shape[1]]
    region[mask] = colour
