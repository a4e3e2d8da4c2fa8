"""A synthetic world of scenes with exact ground truth and planted co-occurrences.

Context:
    No real vision-language weights can be had offline, so headscope trains a small one
    (``synth-llava``) on scenes it can draw itself. A scene holds one to four objects named by COCO
    categories (so CHAIR's synonym lists and POPE's question forms apply unchanged), each drawn as
    its category's glyph (:mod:`circuits.vision.glyphs`) with a colour, a size and a position, on a
    background whose clutter level (0, 1, 2) adds distracting strokes.

    **Planted pairs.** In the ``train`` and ``heldout`` splits, each object of a
    :data:`PLANTED_PAIRS` pair brings its partner along with probability ``pair_rate`` (0.95), so
    a model learns the prior "a fork comes with a knife". The ``broken`` split holds scenes with
    exactly one member of a pair and never its partner: a model that leans on the prior says the
    partner is there, a hallucination we can count.

    Every scene is a pure function of ``(split, index, seed)``: :func:`scene_at` draws it from
    its own ``numpy`` seed sequence, so a scene can be named by a reference such as
    ``world:heldout:17`` and re-drawn anywhere (:func:`parse_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "cat", "dog", "horse", "bird", "cow", "sheep", "elephant", "giraffe",
    "car", "bus", "truck", "bicycle", "boat", "airplane",
    "fork", "knife", "spoon", "cup", "bowl", "bottle",
    "keyboard", "mouse", "laptop", "tv", "toilet", "sink", "bed", "teddy bear",
    "tennis racket", "sports ball", "umbrella", "chair", "clock", "book", "pizza", "banana",
)
"""The world's object names: 36 of COCO's 80 category names, spelled as COCO spells them."""

PLANTED_PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"), ("keyboard", "mouse"), ("toilet", "sink"),
    ("bed", "teddy bear"), ("tennis racket", "sports ball"), ("cup", "spoon"),
)
"""Pairs that appear together in the training scenes (either member brings the other)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "green": (40, 160, 60), "blue": (40, 80, 215), "yellow": (225, 195, 25),
    "purple": (135, 55, 175), "orange": (235, 125, 20), "black": (25, 25, 25),
}
SIZES: dict[str, int] = {"small": 3, "large": 5}
"""Pixels per glyph cell: a small object is 18 pixels wide, a large one 30."""

SPLITS: dict[str, int] = {"train": 0, "heldout": 1, "broken": 2}
"""Split name -> its index in the seed sequence (disjoint streams of scenes)."""

PARTNER: dict[str, str] = {a: b for a, b in PLANTED_PAIRS} | {b: a for a, b in PLANTED_PAIRS}


@dataclass(frozen=True)
class WorldConfig:
    """How scenes are drawn.

    Attributes:
        image_size: side of the square image in pixels.
        max_objects: most objects drawn before planted partners are added (a scene holds at most
            ``max_objects + 1``).
        pair_rate: probability that an object of a planted pair brings its partner (train and
            heldout splits).
        seed: the world's seed; scenes of other seeds are other scenes.
    """

    image_size: int = 112
    max_objects: int = 4
    pair_rate: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 64:
            raise ValueError(f"image_size must be at least 64 pixels (glyphs are up to 30), got {self.image_size}")
        if not 1 <= self.max_objects <= 6:
            raise ValueError(f"max_objects must be 1 to 6, got {self.max_objects}")
        if not 0.0 <= self.pair_rate <= 1.0:
            raise ValueError(f"pair_rate must be a probability, got {self.pair_rate}")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: its category, colour, size and box ``(left, top, right, bottom)`` in pixels."""

    name: str
    colour: str
    size: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    """A scene: its objects (left to right), clutter level and where it comes from."""

    objects: tuple[SceneObject, ...]
    clutter: int
    split: str
    index: int
    config: WorldConfig

    @property
    def names(self) -> frozenset[str]:
        return frozenset(obj.name for obj in self.objects)

    @property
    def reference(self) -> str:
        """The name that re-draws this scene (see :func:`parse_reference`)."""
        suffix = f":{self.config.seed}" if self.config.seed else ""
        return f"world:{self.split}:{self.index}{suffix}"


def scene_at(split: str, index: int, config: WorldConfig = WorldConfig()) -> Scene:
    """Scene ``index`` of ``split`` (``train``, ``heldout`` or ``broken``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown world split {split!r}; splits: {', '.join(SPLITS)}")
    if index < 0:
        raise ValueError(f"scene index must be >= 0, got {index}")
    rng = np.random.default_rng([config.seed, SPLITS[split], index])
    names = _broken_names(rng, config) if split == "broken" else _paired_names(rng, config)
    clutter = int(rng.integers(0, 3))
    return Scene(tuple(_place(rng, names, config)), clutter, split, index, config)


def scenes(split: str, count: int, config: WorldConfig = WorldConfig(), start: int = 0) -> list[Scene]:
    return [scene_at(split, i, config) for i in range(start, start + count)]


def parse_reference(reference: str) -> Scene:
    """The scene named ``world:SPLIT:INDEX`` or ``world:SPLIT:INDEX:SEED``."""
    parts = reference.split(":")
    if len(parts) not in (3, 4) or parts[0] != "world" or not all(p.isdigit() for p in parts[2:]):
        raise ValueError(f"bad world scene reference {reference!r}: write world:SPLIT:INDEX[:SEED], e.g. world:heldout:17")
    seed = int(parts[3]) if len(parts) == 4 else 0
    return scene_at(parts[1], int(parts[2]), WorldConfig(seed=seed))


def _paired_names(rng: np.random.Generator, config: WorldConfig) -> list[str]:
    count = int(rng.integers(1, config.max_objects + 1))
    names = [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), size=count, replace=False)]
    for name in list(names):
        partner = PARTNER.get(name)
        if partner and partner not in names and rng.random() < config.pair_rate:
            names.append(partner)
    return names


def _broken_names(rng: np.random.Generator, config: WorldConfig) -> list[str]:
    """One member of a planted pair without its partner, plus others that respect the pairs."""
    kept = PLANTED_PAIRS[int(rng.integers(len(PLANTED_PAIRS)))][int(rng.integers(2))]
    others = [n for n in CATEGORIES if n not in (kept, PARTNER[kept]) and n not in PARTNER]
    count = int(rng.integers(0, config.max_objects))
    return [kept] + [others[i] for i in rng.choice(len(others), size=count, replace=False)]


def _place(rng: np.random.Generator, names: list[str], config: WorldConfig) -> list[SceneObject]:
    """Objects at random non-overlapping spots, sorted left to right; one that finds no room is dropped,
    unless it is the first (a scene always holds its first object)."""
    placed: list[SceneObject] = []
    colours = list(COLOURS)
    for name in names:
        size = "large" if rng.random() < 0.5 else "small"
        side = 6 * SIZES[size]
        colour = colours[int(rng.integers(len(colours)))]
        for _ in range(60):
            left, top = (int(v) for v in rng.integers(2, config.image_size - side - 2, size=2))
            box = (left, top, left + side, top + side)
            if not any(_overlap(box, other.box) for other in placed):
                placed.append(SceneObject(name, colour, size, box))
                break
    return sorted(placed, key=lambda obj: (obj.box[0], obj.box[1]))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 3) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])
