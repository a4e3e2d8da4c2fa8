"""Draw a :class:`~circuits.vision.world.Scene` as an RGB image.

Context:
    A light grey background; clutter level 1 adds 12 thin grey strokes, level 2 adds 30 strokes
    and 25 coloured specks (2 x 2 pixels, too small to be a glyph); then each object's glyph in its
    colour. The clutter is drawn from the scene's own seed, so an image is a pure function of its
    scene.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import UInt8
from PIL import Image

from circuits.vision.glyphs import draw_glyph, glyph_table
from circuits.vision.world import CATEGORIES, COLOURS, SIZES, SPLITS, Scene

BACKGROUND = 225
CLUTTER_STROKES = {0: 0, 1: 12, 2: 30}
CLUTTER_SPECKS = {0: 0, 1: 0, 2: 25}


def render(scene: Scene) -> Image.Image:
    return Image.fromarray(render_array(scene))


def render_array(scene: Scene) -> UInt8[np.ndarray, "height width 3"]:
    size = scene.config.image_size
    canvas = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    rng = np.random.default_rng([scene.config.seed, SPLITS[scene.split], scene.index, 1])
    _draw_clutter(canvas, rng, scene.clutter)
    patterns = glyph_table(len(CATEGORIES))
    for obj in scene.objects:
        pattern = patterns[CATEGORIES.index(obj.name)]
        draw_glyph(canvas, pattern, top=obj.box[1], left=obj.box[0], cell=SIZES[obj.size], colour=COLOURS[obj.colour])
    return canvas


def _draw_clutter(canvas: np.ndarray, rng: np.random.Generator, level: int) -> None:
    size = canvas.shape[0]
    for _ in range(CLUTTER_STROKES[level]):
        shade = int(rng.integers(110, 190))
        x, y = (int(v) for v in rng.integers(0, size - 12, size=2))
        length = int(rng.integers(6, 12))
        if rng.random() < 0.5:
            canvas[y, x:x + length] = shade
        else:
            canvas[y:y + length, x] = shade
    colours = list(COLOURS.values())
    for _ in range(CLUTTER_SPECKS[level]):
        x, y = (int(v) for v in rng.integers(0, size - 2, size=2))
        canvas[y:y + 2, x:x + 2] = colours[int(rng.integers(len(colours)))]


def load_reference(reference: str, images_dir: object = None) -> Image.Image:
    """The image of a ``world:SPLIT:INDEX[:SEED]`` reference (the ``world`` image source of
    :mod:`circuits.hallucination.items`; ``images_dir`` is not used: scenes are drawn, not read)."""
    from circuits.vision.world import parse_reference

    return render(parse_reference(reference))
