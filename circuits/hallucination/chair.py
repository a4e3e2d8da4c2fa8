"""CHAIR: the objects a caption mentions that are not in the image (Rohrbach et al. 2018).

Context:
    CHAIR reads a caption for the 80 COCO categories: it tokenises and singularises the caption
    (:mod:`circuits.hallucination.words`), merges two-word objects ("teddy bear", "hot dog",
    "baby elephant" -> "elephant", "toilet seat" -> "toilet"), drops "seat" from captions that also
    name a toilet (so "the seat of the toilet" does not fire "chair"), and maps every synonym to its
    category ("puppy" -> "dog", "table" -> "dining table"). A mention is *hallucinated* when its
    category is not among the image's ground-truth objects. Then:

    - CHAIR_S: the fraction of captions with at least one hallucinated mention;
    - CHAIR_I: hallucinated mentions / all mentions, every occurrence counted ("a dog and another
      dog" is two mentions);
    - recall: ground-truth objects mentioned / ground-truth objects, each pooled over captions
      (each caption counts the distinct categories it recalls).

    This follows the standalone reference (Maxlinn/CHAIR-metric-standalone ``chair.py``, after
    LisaAnne/Hallucination), whose lists are the CHAIR file's ``mscoco_objects``,
    ``inverse_synonym_dict`` and ``double_word_dict``. The reference's quirks are kept, so its
    numbers are reproduced: " motor bike" and " cheesecake" are listed with a leading space and so
    never match, "home plate" and "train track" are merged but are no objects, and with the default
    singular rules "a bus" is missed (it becomes "bu"); ``singular="keep_known"`` keeps words the
    vocabulary knows.

Example:
    >>> vocabulary = ChairVocabulary.from_file("../shared/data/chair/chair_coco2014.json.gz")
    >>> [m.category for m in vocabulary.objects_in("Two puppies next to a teddy bear.")]
    ['dog', 'teddy bear']
    >>> chair_metrics(vocabulary, ["A dog on a couch."], [{"dog"}]).chair_i
    0.5
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from circuits.evaluation.bootstrap import Interval
from circuits.hallucination.files import read_json
from circuits.hallucination.intervals import CHAIR_STATISTICS, pooled_intervals
from circuits.hallucination.words import SINGULARS, caption_tokens
from probe.errors import InputError

LIST_FIELDS = ("mscoco_objects", "inverse_synonym_dict", "double_word_dict")
"""The fields of a CHAIR file that make a vocabulary (``imid_to_objects`` is ground truth)."""


@dataclass(frozen=True)
class Mention:
    """One object word in a caption.

    Attributes:
        word: the vocabulary word found, after singular forms and two-word merges ("puppy",
            "teddy bear", "elephant" for "baby elephants").
        category: its COCO category ("dog").
        position: the index of its first token in :func:`~circuits.hallucination.words.caption_tokens`.
    """

    word: str
    category: str
    position: int


@dataclass(frozen=True)
class ChairVocabulary:
    """CHAIR's word lists: vocabulary words by category, and two-word merges.

    Attributes:
        synonyms: every vocabulary word -> its COCO category (the reference's ``mscoco_objects``,
            mapped by ``inverse_synonym_dict``).
        double_words: two-word phrases -> the word they count as ("baby bird" -> "bird").
        singular: the singular-form rules by name in :data:`~circuits.hallucination.words.SINGULARS`.
    """

    synonyms: Mapping[str, str]
    double_words: Mapping[str, str]
    singular: str = "reference"
    categories: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.singular not in SINGULARS:
            raise InputError(f"unknown singular rules {self.singular!r}; known: {', '.join(SINGULARS)}")
        object.__setattr__(self, "synonyms", MappingProxyType({w: c for w, c in self.synonyms.items() if w and c}))
        object.__setattr__(self, "double_words", MappingProxyType(dict(self.double_words)))
        object.__setattr__(self, "categories", frozenset(self.synonyms.values()))

    @classmethod
    def from_file(cls, path: str | os.PathLike, singular: str = "reference") -> ChairVocabulary:
        """The vocabulary of a CHAIR file (JSON, gzip or not, as ``chair_coco2014.json.gz``)."""
        data = read_json(path, "CHAIR file")
        return cls.from_lists(data, source=f"CHAIR file {path}", singular=singular)

    @classmethod
    def from_lists(cls, data: Any, source: str = "CHAIR lists", singular: str = "reference") -> ChairVocabulary:
        """A vocabulary from the reference's three lists in one mapping (see :data:`LIST_FIELDS`); an
        optional ``singular`` field names the file's own singular rules (the synthetic world's
        vocabulary asks for ``keep_known``, so that "bus" stays a bus)."""
        if not isinstance(data, dict):
            raise InputError(f"{source} is a JSON {type(data).__name__}, not an object; pass the CHAIR file with "
                             f"{', '.join(LIST_FIELDS)}")
        missing = [name for name in LIST_FIELDS if name not in data]
        if missing:
            raise InputError(f"{source} lacks {', '.join(map(repr, missing))}; pass the CHAIR file with "
                             f"{', '.join(LIST_FIELDS)}")
        objects, inverse, double = (data[name] for name in LIST_FIELDS)
        _check_words(objects, inverse, double, source)
        return cls({word: inverse[word] for word in objects}, double, data.get("singular", singular))

    def words(self, caption: str) -> list[tuple[str, int]]:
        """``(word, position)`` of every word of ``caption`` after singular forms and two-word merges
        (the reference's ``words`` output, with each word's first token index)."""
        singular = SINGULARS[self.singular]
        known = self.synonyms.keys() | {part for phrase in self.double_words for part in phrase.split()}
        return merge_double_words([singular(token, known) for token in caption_tokens(caption)], self.double_words)

    def objects_in(self, caption: str) -> list[Mention]:
        """The object mentions of ``caption``, in order, as the reference finds them."""
        merged = self.words(caption)
        if any(word == "toilet" for word, _ in merged):  # "the seat of the toilet" is no chair
            merged = [(word, position) for word, position in merged if word != "seat"]
        return [Mention(word, self.synonyms[word], position) for word, position in merged if word in self.synonyms]


def merge_double_words(words: Sequence[str], double_words: Mapping[str, str]) -> list[tuple[str, int]]:
    """``(word, position)`` after merging, left to right, each listed pair of neighbours into one word."""
    merged, i = [], 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        if pair in double_words:
            merged.append((double_words[pair], i))
            i += 2
        else:
            merged.append((words[i], i))
            i += 1
    return merged


def _check_words(objects: Any, inverse: Any, double: Any, source: str) -> None:
    fix = "pass the CHAIR file (chair_coco2014.json.gz) or lists of its shape"
    if not isinstance(objects, list) or not all(isinstance(word, str) for word in objects):
        raise InputError(f"{source}: 'mscoco_objects' must be a list of words; {fix}")
    for name, mapping in (("inverse_synonym_dict", inverse), ("double_word_dict", double)):
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise InputError(f"{source}: {name!r} must map words to words; {fix}")
    unmapped = sorted(set(objects) - inverse.keys())
    if unmapped:
        raise InputError(f"{source}: {len(unmapped)} words of 'mscoco_objects' have no category in "
                         f"'inverse_synonym_dict' (e.g. {unmapped[0]!r}); {fix}")


@dataclass(frozen=True)
class CaptionChair:
    """CHAIR of one caption.

    Attributes:
        caption: the caption.
        mentions: its object mentions, in order.
        hallucinated: the mentions whose category is not in ``truth``.
        truth: the image's ground-truth categories.
        recalled: the ground-truth categories the caption mentions.
    """

    caption: str
    mentions: tuple[Mention, ...]
    hallucinated: tuple[Mention, ...]
    truth: frozenset[str]
    recalled: frozenset[str]

    @property
    def chair_s(self) -> bool:
        return bool(self.hallucinated)

    @property
    def chair_i(self) -> float:
        """Hallucinated mentions / mentions (0 when the caption names no object, as the reference)."""
        return len(self.hallucinated) / len(self.mentions) if self.mentions else 0.0

    @property
    def recall(self) -> float:
        """Recalled / ground-truth categories (0 when the image has none, as the reference)."""
        return len(self.recalled) / len(self.truth) if self.truth else 0.0

    def counts(self) -> list[int]:
        """The caption's row of :data:`~circuits.hallucination.intervals.CHAIR_COLUMNS`."""
        return [int(self.chair_s), len(self.hallucinated), len(self.mentions), len(self.recalled), len(self.truth), 1]

    def to_dict(self) -> dict[str, Any]:
        return {"caption": self.caption, "mentions": [[m.word, m.category] for m in self.mentions],
                "hallucinated": [[m.word, m.category] for m in self.hallucinated], "truth": sorted(self.truth),
                "recalled": sorted(self.recalled), "chair_s": int(self.chair_s), "chair_i": self.chair_i,
                "recall": self.recall}


@dataclass(frozen=True)
class ChairMetrics:
    """CHAIR over a set of captions, pooled as the reference pools it.

    Attributes:
        chair_s: captions with a hallucinated mention / captions.
        chair_i: hallucinated mentions / mentions (0 when no caption names an object).
        recall: recalled ground-truth objects / ground-truth objects (0 when there are none).
        n: the number of captions.
        captions: per caption, its :class:`CaptionChair`.
    """

    chair_s: float
    chair_i: float
    recall: float
    n: int
    captions: tuple[CaptionChair, ...]

    def counts(self) -> np.ndarray:
        """``[caption, column]`` counts (:data:`~circuits.hallucination.intervals.CHAIR_COLUMNS`)."""
        return np.asarray([caption.counts() for caption in self.captions], dtype=float)

    def intervals(self, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
        """CHAIR_S, CHAIR_I and recall with percentile-bootstrap intervals over captions."""
        return pooled_intervals(self.counts(), CHAIR_STATISTICS, n_boot=n_boot, level=level, seed=seed)

    def to_dict(self, details: bool = True) -> dict[str, Any]:
        totals = self.counts().sum(axis=0).astype(int).tolist()
        record = {"chair_s": self.chair_s, "chair_i": self.chair_i, "recall": self.recall, "n": self.n,
                  "mentions": totals[2], "hallucinated": totals[1], "truth": totals[4], "recalled": totals[3]}
        if details:
            record["captions"] = [caption.to_dict() for caption in self.captions]
        return record


def chair_metrics(vocabulary: ChairVocabulary, captions: Sequence[str],
                  truths: Sequence[Iterable[str]]) -> ChairMetrics:
    """CHAIR_S, CHAIR_I and recall of ``captions`` against each image's ground-truth categories.

    Args:
        vocabulary: the word lists (:meth:`ChairVocabulary.from_file`).
        captions: one caption per image.
        truths: per caption, the categories in its image (names of ``vocabulary.categories``,
            e.g. from :func:`circuits.hallucination.annotations.load_annotations`).
    """
    if isinstance(captions, str):
        raise InputError("captions must be a list of captions, got one string; wrap it in a list")
    if len(captions) != len(truths):
        raise InputError(f"{len(captions)} captions but {len(truths)} ground-truth object sets; "
                         "pass one set per caption")
    if not captions:
        raise InputError("no captions to score; pass at least one caption")
    rows = tuple(_caption_chair(vocabulary, caption, _truth(vocabulary, truth, i))
                 for i, (caption, truth) in enumerate(zip(captions, truths)))
    hallucinated, mentions = sum(len(r.hallucinated) for r in rows), sum(len(r.mentions) for r in rows)
    recalled, truth = sum(len(r.recalled) for r in rows), sum(len(r.truth) for r in rows)
    return ChairMetrics(chair_s=sum(r.chair_s for r in rows) / len(rows),
                        chair_i=hallucinated / mentions if mentions else 0.0,
                        recall=recalled / truth if truth else 0.0, n=len(rows), captions=rows)


def _caption_chair(vocabulary: ChairVocabulary, caption: str, truth: frozenset[str]) -> CaptionChair:
    if not isinstance(caption, str):
        raise InputError(f"a caption must be a string, got {type(caption).__name__}")
    mentions = tuple(vocabulary.objects_in(caption))
    return CaptionChair(caption, mentions, tuple(m for m in mentions if m.category not in truth), truth,
                        frozenset(m.category for m in mentions if m.category in truth))


def _truth(vocabulary: ChairVocabulary, objects: Iterable[str], index: int) -> frozenset[str]:
    if isinstance(objects, str):
        raise InputError(f"ground truth {index} is one string {objects!r}; pass a set of category names")
    truth = frozenset(objects)
    unknown = sorted(truth - vocabulary.categories)
    if unknown:
        raise InputError(f"ground truth {index} names {', '.join(map(repr, unknown[:3]))}, not a CHAIR category; "
                         "name objects by their COCO category (vocabulary.categories), e.g. 'dog' for 'puppy'")
    return truth
