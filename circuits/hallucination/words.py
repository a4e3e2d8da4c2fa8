"""Caption tokens and singular forms as the CHAIR reference computes them, without NLTK downloads.

Context:
    The CHAIR reference (Rohrbach et al. 2018; the standalone ``Maxlinn/CHAIR-metric-standalone``
    ``chair.py``) lower-cases a caption, splits it with ``nltk.word_tokenize`` and passes every
    token through ``pattern.en.singularize``. Neither is usable offline as is: ``word_tokenize``
    needs the downloaded punkt model for sentences, and ``pattern`` does not install on current
    Pythons. Here:

    - sentences are split at ``.``, ``!`` or ``?`` followed by white space (punkt also splits there
      for ordinary words; it differs on abbreviations such as "st.", rare in captions), and each
      sentence goes through NLTK's Treebank tokenizer, which needs no download;
    - :func:`pattern_singular` follows the rules of ``pattern.en.singularize`` (pattern 3.6, after
      Bermi Ferrer's Inflector), quirks included, so that CHAIR numbers stay comparable with
      published ones. Its quirks matter for COCO words: "bus" becomes "bu" and "glass" "glas"
      (a final ``s`` is dropped), "ties" becomes "ty", "cookies"/"doggies" stay plural, while
      "buses", "glasses", "people", "knives", "mice", "women", "children", "oxen" come out right.
    - :func:`known_singular` is the same rules, except that a word the vocabulary already knows
      ("bus", "glass") is left alone: a corrected variant, selected by name in :data:`SINGULARS`.

Example:
    >>> [pattern_singular(w) for w in ("people", "knives", "mice", "buses", "glasses", "bus")]
    ['person', 'knife', 'mouse', 'bus', 'glass', 'bu']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from functools import cache
from types import MappingProxyType
from typing import Mapping

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


@cache
def _treebank():
    from nltk.tokenize.destructive import NLTKWordTokenizer  # needs no downloaded data

    return NLTKWordTokenizer()


def caption_tokens(caption: str) -> list[str]:
    """The lower-cased tokens of ``caption``, as ``nltk.word_tokenize(caption.lower())`` gives them.

    Example:
        >>> caption_tokens("Two dogs' bowls. A man, isn't it?")
        ['two', 'dogs', "'", 'bowls', '.', 'a', 'man', ',', 'is', "n't", 'it', '?']
    """
    sentences = _SENTENCE_BREAK.split(caption.lower().strip())
    return [token for sentence in sentences if sentence for token in _treebank().tokenize(sentence)]


# The word lists and suffix rules of pattern.en.singularize (pattern 3.6), restated as data.
UNINFLECTED = frozenset((
    "bison", "bream", "breeches", "britches", "carp", "chassis", "christmas", "clippers", "cod", "contretemps",
    "corps", "debris", "diabetes", "djinn", "eland", "elk", "flounder", "gallows", "georgia", "graffiti",
    "headquarters", "herpes", "high-jinks", "homework", "innings", "jackanapes", "mackerel", "measles", "mews",
    "mumps", "news", "pincers", "pliers", "proceedings", "rabies", "salmon", "scissors", "series", "shears",
    "species", "swine", "swiss", "trout", "tuna", "whiting", "wildebeest",
))
UNCOUNTABLE = frozenset((
    "advice", "bread", "butter", "cheese", "electricity", "equipment", "fruit", "furniture", "garbage", "gravel",
    "happiness", "information", "ketchup", "knowledge", "love", "luggage", "mathematics", "mayonnaise", "meat",
    "mustard", "news", "progress", "research", "rice", "sand", "software", "understanding", "water",
))
IE_WORDS = frozenset((
    "alergie", "auntie", "beanie", "birdie", "bogie", "bombie", "collie", "cookie", "cutie", "doggie", "eyrie",
    "freebie", "goonie", "groupie", "hankie", "hippie", "hoagie", "hottie", "indie", "junkie", "laddie", "laramie",
    "lingerie", "meanie", "newbie", "nightie", "oldie", "^pie", "pixie", "quickie", "reverie", "rookie", "softie",
    "sortie", "stoolie", "sweetie", "techie", "^tie", "toughie", "valkyrie", "veggie", "weenie", "yuppie", "zombie",
))
"""Words whose plural adds ``s`` to ``-ie``. ``^pie`` and ``^tie`` are written so in pattern and so
never match: "ties" falls through to the ``-ies`` rule and becomes "ty"."""
IRREGULAR: Mapping[str, str] = MappingProxyType({
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef", "brethren": "brother",
    "children": "child", "corpora": "corpus", "corpuses": "corpus", "ephemerides": "ephemeris", "feet": "foot",
    "ganglia": "ganglion", "geese": "goose", "genera": "genus", "genii": "genie", "graffiti": "graffito",
    "helves": "helve", "kine": "cow", "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose",
    "monies": "money", "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox", "penes": "penis",
    "penises": "penis", "people": "person", "sexes": "sex", "soliloquies": "soliloquy", "teeth": "tooth",
    "testes": "testis", "trilbys": "trilby", "turves": "turf", "zoa": "zoon",
})
"""Irregular plural endings, matched as suffixes ("policemen" -> "policeman", "women" -> "woman")."""
PREPOSITIONS = frozenset((
    "about", "above", "across", "after", "among", "around", "at", "athwart", "before", "behind", "below", "beneath",
    "beside", "besides", "between", "betwixt", "beyond", "but", "by", "during", "except", "for", "from", "in",
    "into", "near", "of", "off", "on", "onto", "out", "over", "since", "till", "to", "under", "unto", "until",
    "upon", "with",
))
"""The second part of compounds singularised on their first part ("mothers-in-law")."""
_UNCHANGED = UNINFLECTED | UNCOUNTABLE

_SUFFIX_RULES = (
    (r"(.)ae$", r"\1a"), (r"(.)itis$", r"\1itis"), (r"(.)eaux$", r"\1eau"), (r"(quiz)zes$", r"\1"),
    (r"(matr)ices$", r"\1ix"), (r"(ap|vert|ind)ices$", r"\1ex"), (r"^(ox)en", r"\1"), (r"(alias|status)es$", r"\1"),
    (r"([octop|vir])i$", r"\1us"), (r"(cris|ax|test)es$", r"\1is"), (r"(shoe)s$", r"\1"), (r"(o)es$", r"\1"),
    (r"(bus)es$", r"\1"), (r"([m|l])ice$", r"\1ouse"), (r"(x|ch|ss|sh)es$", r"\1"), (r"(m)ovies$", r"\1ovie"),
    (r"(.)ombies$", r"\1ombie"), (r"(s)eries$", r"\1eries"), (r"([^aeiouy]|qu)ies$", r"\1y"),
    (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"), (r"(sive)s$", r"\1"),
    (r"(tive)s$", r"\1"), (r"(hive)s$", r"\1"), (r"([^f])ves$", r"\1fe"), (r"(^analy)ses$", r"\1sis"),
    (r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"), (r"(.)opses$", r"\1opsis"),
    (r"(.)yses$", r"\1ysis"), (r"(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(.)oses$", r"\1osis"),
    (r"([ti])a$", r"\1um"), (r"(n)ews$", r"\1ews"), (r"s$", ""),
)
SUFFIX_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(rule), to) for rule, to in _SUFFIX_RULES)
"""Suffix rules, the first that matches wins; unmatched groups count as empty (as pattern makes them)."""


def pattern_singular(word: str) -> str:
    """The singular of a lower-cased ``word`` as ``pattern.en.singularize`` gives it, quirks included."""
    if "-" in word:
        head, *rest = word.split("-")
        if rest and rest[0] in PREPOSITIONS:
            return "-".join([pattern_singular(head), *rest])
    if word.endswith("'"):
        return pattern_singular(word[:-1]) + "'s"
    if any(listed.endswith(word) for listed in _UNCHANGED):  # pattern's test, suffixes included
        return word
    if any(word.endswith(ie + "s") for ie in IE_WORDS):
        return word  # pattern returns the word unchanged here ("cookies" stays "cookies")
    for plural, singular in IRREGULAR.items():
        if word.endswith(plural):
            return word[: len(word) - len(plural)] + singular
    for suffix, replacement in SUFFIX_RULES:
        if suffix.search(word):
            return suffix.sub(replacement, word)
    return word


def known_singular(word: str, known: Collection[str] = ()) -> str:
    """:func:`pattern_singular`, except that a word in ``known`` is already singular ("bus" stays "bus")."""
    return word if word in known else pattern_singular(word)


SINGULARS: Mapping[str, Callable[[str, Collection[str]], str]] = MappingProxyType({
    "reference": lambda word, known: pattern_singular(word),
    "keep_known": known_singular,
})
"""Singular-form rules by name: ``reference`` (the CHAIR reference's, the default) or ``keep_known``
(the same, but vocabulary words and the words of its two-word objects are kept: "a bus" counts as a
bus and "tennis racket" stays whole, which the reference misses)."""
