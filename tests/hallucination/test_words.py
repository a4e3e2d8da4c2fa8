"""Singular forms follow pattern.en.singularize (quirks included); tokens follow NLTK's Treebank rules."""

from __future__ import annotations

import pytest

from circuits.hallucination.words import SINGULARS, caption_tokens, known_singular, pattern_singular

# Expected values traced by hand through pattern 3.6's singularize: word lists first (uninflected and
# uncountable as suffixes, the -ie list, irregular suffixes), then the first matching suffix rule.
SINGULAR_CASES = {
    "people": "person", "women": "woman", "policemen": "policeman", "children": "child", "oxen": "ox",
    "teeth": "tooth", "feet": "foot", "geese": "goose", "mice": "mouse", "knives": "knife", "wolves": "wolf",
    "calves": "calf", "leaves": "leaf", "lives": "life", "buses": "bus", "glasses": "glass", "benches": "bench",
    "dishes": "dish", "boxes": "box", "puppies": "puppy", "potatoes": "potato", "shoes": "shoe",
    "giraffes": "giraffe", "skis": "ski", "pizzas": "pizza",
    # uninflected or suffix of a listed word: unchanged
    "sheep": "sheep", "scissors": "scissors", "is": "is", "a": "a", "rice": "rice",
    # the quirks CHAIR inherits
    "bus": "bu", "glass": "glas", "this": "thi", "ties": "ty", "cookies": "cookies", "doggies": "doggies",
    # compounds and possessives
    "mothers-in-law": "mother-in-law", "dogs'": "dog's", "bases": "basis", "theses": "thesis",
}


@pytest.mark.parametrize("word, singular", SINGULAR_CASES.items())
def test_pattern_singular(word, singular):
    assert pattern_singular(word) == singular


def test_keep_known_leaves_vocabulary_words():
    assert known_singular("bus", {"bus"}) == "bus" and known_singular("buses", {"bus"}) == "bus"
    assert SINGULARS["reference"]("bus", {"bus"}) == "bu"


def test_tokens_split_sentences_and_clitics():
    assert caption_tokens("Two dogs' bowls. A man, isn't it?") == [
        "two", "dogs", "'", "bowls", ".", "a", "man", ",", "is", "n't", "it", "?"]
    assert caption_tokens("A hot-dog (on a plate); 1,000 cats!") == [
        "a", "hot-dog", "(", "on", "a", "plate", ")", ";", "1,000", "cats", "!"]
    assert caption_tokens("  ") == []
