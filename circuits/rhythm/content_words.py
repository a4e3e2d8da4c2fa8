"""Content words of a text and the Jaccard similarity of two texts' content words.

Context:
    The rhythm paper's perturbation test (Li et al., arXiv 2510.13554, Table 1;
    :mod:`circuits.rhythm.perturb`) compares two continuations by the Jaccard similarity of
    their content words. The paper does not say what a content word is; the rule here:

    - the text is lower-cased and split by :data:`WORD`: runs of letters, or numbers with their
      inner ``.`` or ``,`` (thousands commas removed, ``1,000`` -> ``1000``); apostrophes split
      words (``don't`` -> ``don``, ``t``), as NLTK's list expects;
    - stop words are removed: NLTK's English list (179 function words, copied in
      ``data/stopwords_en.txt``) by default, so the result is the same on every machine; the
      installed NLTK data or scikit-learn's ``ENGLISH_STOP_WORDS`` on request (the latter also
      drops number words such as "two" and "hundred");
    - numbers are content words: GSM8K reasoning is about numbers.

    The Jaccard similarity of two sets is ``|A & B| / |A | B|``, and 1 when both are empty (two
    continuations without content words do not differ in content).

Example:
    >>> stop = stop_words()
    >>> jaccard(content_words("So 3 + 4 = 7 apples.", stop), content_words("Then 3 apples, and 5.", stop))
    0.4
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*")
"""A word: a run of letters, or a number with inner ``.`` or ``,`` (``3.5``, ``1,000``)."""

BUILTIN_STOP_WORDS = Path(__file__).resolve().parents[2] / "data" / "stopwords_en.txt"
STOP_WORD_SOURCES = ("builtin", "nltk", "sklearn")


@functools.cache
def stop_words(source: str = "builtin") -> frozenset[str]:
    """The English stop words of ``source``, lower-case: ``builtin``, ``nltk`` or ``sklearn`` (see
    the module docstring).

    Raises:
        ValueError: ``nltk`` without NLTK's stopwords data, ``sklearn`` without scikit-learn.
    """
    if source == "builtin":
        lines = BUILTIN_STOP_WORDS.read_text(encoding="utf-8").splitlines()
        return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))
    if source == "sklearn":
        try:
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
        except ImportError:
            raise ValueError("stop words 'sklearn' need scikit-learn, which is not installed; "
                             "use the builtin list (NLTK's)") from None
        return frozenset(ENGLISH_STOP_WORDS)
    if source == "nltk":
        try:
            from nltk.corpus import stopwords
            return frozenset(stopwords.words("english"))
        except (ImportError, LookupError):
            raise ValueError("stop words 'nltk' need NLTK with its stopwords data (nltk.download('stopwords')); "
                             "the builtin list is NLTK's English list") from None
    raise ValueError(f"unknown stop-word source {source!r}; one of {', '.join(STOP_WORD_SOURCES)}")


def content_words(text: str, stop: frozenset[str]) -> set[str]:
    """The lower-cased words of ``text`` (:data:`WORD`) that are not in ``stop``.

    Example:
        >>> sorted(content_words("She has 1,000 apples and 3.5 pears.", stop_words()))
        ['1000', '3.5', 'apples', 'pears']
    """
    words = (w.replace(",", "") for w in WORD.findall(text.lower()))
    return {w for w in words if w not in stop}


def jaccard(a: set[str], b: set[str]) -> float:
    """``|a & b| / |a | b|``; 1.0 when both are empty (two continuations with no content words
    do not differ in content)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0
