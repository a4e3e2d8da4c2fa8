"""POPE question sets built from any annotations: random, popular and adversarial absent objects.

Context:
    POPE (Li et al. 2023, ``utils.py`` of AoiDragon/POPE) asks, per image, about three objects
    that are there ("yes") and three that are not ("no"), alternating. The absent object asked
    after each present one is drawn

    - ``random``: uniformly from the objects of the whole annotation set absent from the image;
    - ``popular``: the most frequent such object (by the number of images holding it);
    - ``adversarial``: the absent object that co-occurs most often with that present object;

    never one the image has or one already asked about it. When popular or adversarial run out
    of candidates, a random absent object is asked (as POPE does). Here the present objects are a
    seeded draw from the image's objects (POPE took the first three its segmenter listed), ties in
    frequency are broken by name, and an image with fewer than ``per_image`` objects (or absent
    ones) gets as many pairs as it can fill, so yes and no stay balanced. The draws use
    :mod:`circuits.discovery.draws`, which give the same questions on every Python version.

Example:
    >>> questions = build_pope_questions({"a.png": {"dog", "cat"}, "b.png": {"dog", "car"}}, "popular", per_image=1)
    >>> [(q.image, q.object, q.label) for q in questions]
    [('a.png', 'dog', 'yes'), ('a.png', 'car', 'no'), ('b.png', 'dog', 'yes'), ('b.png', 'cat', 'no')]
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from circuits.discovery.draws import distinct, index
from circuits.hallucination.pope import SPLITS
from circuits.hallucination.questions import PopeQuestion, write_pope_questions
from probe.errors import InputError

TEMPLATE = "Is there {article} {object} in the image?"


@dataclass(frozen=True)
class ObjectStatistics:
    """What the samplers need of the whole annotation set.

    Attributes:
        objects: every object, sorted.
        by_frequency: every object, the most frequent first (ties by name).
        co_occurring: per object, the objects seen with it, the most frequent first (ties by name).
    """

    objects: tuple[str, ...]
    by_frequency: tuple[str, ...]
    co_occurring: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, annotations: Mapping[str, frozenset[str]]) -> ObjectStatistics:
        frequency = Counter(obj for objects in annotations.values() for obj in objects)
        pairs: dict[str, Counter] = {obj: Counter() for obj in frequency}
        for objects in annotations.values():
            for obj in objects:
                pairs[obj].update(other for other in objects if other != obj)
        ranked = lambda counts: tuple(sorted(counts, key=lambda o: (-counts[o], o)))  # noqa: E731
        return cls(tuple(sorted(frequency)), ranked(frequency),
                   MappingProxyType({obj: ranked(counts) for obj, counts in pairs.items()}))


Sampler = Callable[[ObjectStatistics, str, set[str], random.Random], "str | None"]


def _random(stats: ObjectStatistics, present: str, excluded: set[str], rng: random.Random) -> str | None:
    pool = [obj for obj in stats.objects if obj not in excluded]
    return pool[index(rng, len(pool))] if pool else None


def _first_allowed(ranked: Iterable[str], excluded: set[str]) -> str | None:
    return next((obj for obj in ranked if obj not in excluded), None)


NEGATIVE_SAMPLERS: Mapping[str, Sampler] = MappingProxyType({
    "random": _random,
    "popular": lambda stats, present, excluded, rng: _first_allowed(stats.by_frequency, excluded),
    "adversarial": lambda stats, present, excluded, rng: _first_allowed(stats.co_occurring[present], excluded),
})
"""How each split draws the absent object asked after ``present`` (None: none left, draw at random)."""


def build_pope_questions(annotations: Mapping[str, Iterable[str]], split: str, per_image: int = 3, seed: int = 0,
                         image_name: Callable[[str], str] | None = None,
                         statistics: ObjectStatistics | None = None) -> list[PopeQuestion]:
    """POPE questions of one split over every annotated image (see the module's docstring).

    Args:
        annotations: image name -> its objects (:func:`~circuits.hallucination.annotations.load_annotations`).
        split: ``random``, ``popular`` or ``adversarial``.
        per_image: present (and as many absent) objects asked per image; POPE asks 3.
        seed: the seed of the draws.
        image_name: the ``image`` written in each question for an annotation name (by default the
            name itself; e.g. :func:`~circuits.hallucination.annotations.coco_file_name` for CHAIR ids).
        statistics: the object frequencies and co-occurrences that ``popular`` and ``adversarial``
            rank by (default: those of ``annotations``). Pass those of the data a model learnt from
            to ask about the objects it learnt to expect, e.g. on scenes that break a learnt pair.
    """
    if split not in NEGATIVE_SAMPLERS:
        raise InputError(f"unknown POPE split {split!r}; splits: {', '.join(SPLITS)}")
    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise InputError(f"per_image must be an integer >= 1, got {per_image!r}")
    sets = {name: frozenset(objects) for name, objects in annotations.items() if objects}
    if not sets:
        raise InputError("no annotated image has an object; pass annotations with objects")
    stats, rng = statistics or ObjectStatistics.of(sets), random.Random(seed)
    questions: list[PopeQuestion] = []
    for name in sorted(sets):
        for obj, label in _image_pairs(stats, sets[name], NEGATIVE_SAMPLERS[split], per_image, rng):
            questions.append(_question(len(questions) + 1, (image_name or str)(name), obj, label))
    return questions


def write_pope_splits(annotations: Mapping[str, Iterable[str]], folder: str | os.PathLike, name: str = "custom",
                      **options) -> dict[str, Path]:
    """Build and write the three splits as ``FOLDER/{name}_pope_{split}.json``, as POPE names its files.

    ``options`` go to :func:`build_pope_questions` (``per_image``, ``seed``, ``image_name``).
    Returns ``{split: path}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {split: write_pope_questions(build_pope_questions(annotations, split, **options),
                                        folder / f"{name}_pope_{split}.json") for split in SPLITS}


def _image_pairs(stats: ObjectStatistics, objects: frozenset[str], sampler: Sampler, per_image: int,
                 rng: random.Random) -> list[tuple[str, str]]:
    k = min(per_image, len(objects), len(stats.objects) - len(objects))
    pairs, asked = [], set(objects)
    for present in distinct(rng, sorted(objects), k):
        absent = sampler(stats, present, asked, rng) or _random(stats, present, asked, rng)
        asked.add(absent)
        pairs += [(present, "yes"), (absent, "no")]
    return pairs


def _question(question_id: int, image: str, obj: str, label: str) -> PopeQuestion:
    article = "an" if obj[:1].lower() in "aeiou" else "a"
    return PopeQuestion(question_id, image, TEMPLATE.format(article=article, object=obj), label, obj)
