"""CHAIR against the reference's own published outputs.

``outputs.json`` of Maxlinn/CHAIR-metric-standalone (commit 471eb75) holds the reference's output on
its two example captions (LLaVA descriptions of COCO images 1290 and 6871): per caption the word
list after singular forms and merges (``words``), the categories it mentions
(``mscoco_generated_words``) and its ground truth, and overall CHAIR_S 0, CHAIR_I 0, recall 6/7.
The word lists and categories below are those outputs, copied; the parser must give them exactly.
"""

from __future__ import annotations

import pytest

from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from tests.hallucination.metric_fixtures import CHAIR_FILE, MINI_LISTS

CAKE = ("The image features a young child sitting in a high chair, reaching for a birthday cake placed on a dining "
        "table. The cake has a single pink candle on it, indicating that it is a birthday celebration. \n\nAnother "
        "person, possibly a woman, is present in the scene, standing behind the child and holding out their hand "
        "towards the cake. A cup is also visible on the table, close to the cake. The scene captures a joyful moment "
        "of a child's birthday celebration.")
BEAR = ("The image features a large white polar bear swimming in a blue pool of water. The bear is in the process of "
        "diving underwater, with its head submerged and its body partially visible. The bear's paw is also visible, "
        "as it swims through the water. The scene captures the bear's natural behavior and movement in its aquatic "
        "environment.")

CAKE_WORDS = (
    "the image feature a young child sitting in a high chair , reaching for a birthday cake placed on a dining table . "
    "the cake ha a single pink candle on it , indicating that it is a birthday celebration . another person , possibly "
    "a woman , is present in the scene , standing behind the child and holding out their hand toward the cake . a cup "
    "is also visible on the table , close to the cake . the scene capture a joyful moment of a child ' birthday "
    "celebration .").split(" ")
BEAR_WORDS = (
    "the image feature a large white polar bear swimming in a blue pool of water . the bear is in the proces of diving "
    "underwater , with it head submerged and it body partially visible . the bear ' paw is also visible , as it swim "
    "through the water . the scene capture the bear ' natural behavior and movement in it aquatic environment .").split(" ")
CAKE_CATEGORIES = ["person", "chair", "cake", "dining table", "cake", "person", "person", "person", "cake", "cup",
                   "dining table", "cake", "person"]
TRUTHS = [{"dining table", "cup", "chair", "person", "cake"}, {"person", "bear"}]


@pytest.mark.parametrize("caption, words", [(CAKE, CAKE_WORDS), (BEAR, BEAR_WORDS)], ids=["cake", "bear"])
def test_word_lists_equal_the_reference(caption, words):
    assert [word for word, _ in ChairVocabulary.from_lists(MINI_LISTS).words(caption)] == words


@pytest.mark.skipif(not CHAIR_FILE.exists(), reason="../shared/data/chair is not here")
def test_mentions_and_metrics_equal_the_reference():
    vocabulary = ChairVocabulary.from_file(CHAIR_FILE)
    assert [m.category for m in vocabulary.objects_in(CAKE)] == CAKE_CATEGORIES
    assert [m.category for m in vocabulary.objects_in(BEAR)] == ["bear"] * 4
    metrics = chair_metrics(vocabulary, [CAKE, BEAR], TRUTHS)
    assert (metrics.chair_s, metrics.chair_i, metrics.recall) == (0.0, 0.0, 6 / 7)
    assert [c.recall for c in metrics.captions] == [1.0, 0.5]
