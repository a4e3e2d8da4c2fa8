"""Which kind of token a sink is: first token, punctuation, newline, function word, other."""

from __future__ import annotations

import string

TOKEN_TYPES = ("first", "newline", "punctuation", "function_word", "other")

# Closed-class English words (articles, pronouns, prepositions, conjunctions, auxiliaries).
FUNCTION_WORDS = frozenset(
    """a an the this that these those i you he she it we they me him her us them my your his its our their
    of in on at to for from by with about as into over after before under between through during without
    and or but nor so yet if then than because while although though
    is are was were be been being am do does did have has had will would shall should can could may might must
    not no there here what which who whom whose when where why how all any some each every""".split()
)
_PUNCT = set(string.punctuation) | set("“”‘’…—–")


def token_type(text: str, position: int) -> str:
    """Type of a token given its text and its position in the prompt (0 = first real token).

    Order of the tests: position 0 is ``first`` whatever its text; any newline makes it
    ``newline``; only punctuation (ignoring spaces) makes it ``punctuation``; a closed-class
    word (case-insensitive, spaces stripped) is a ``function_word``; the rest is ``other``.
    """
    if position == 0:
        return "first"
    if "\n" in text:
        return "newline"
    stripped = text.strip()
    if stripped and all(ch in _PUNCT for ch in stripped):
        return "punctuation"
    if stripped.lower() in FUNCTION_WORDS:
        return "function_word"
    return "other"
