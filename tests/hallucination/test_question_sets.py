"""POPE question sets from annotations: balanced, alternating, seeded, and the splits' negatives by hand."""

from __future__ import annotations

import pytest

from circuits.hallucination.question_sets import ObjectStatistics, build_pope_questions
from probe.errors import InputError

ANNOTATIONS = {"a": {"dog", "cat", "person"}, "b": {"dog", "person"}, "c": {"car", "person"}, "d": {"cat"}}
# frequency: person 3, cat 2, dog 2, car 1 (ties by name) -> popular order person, cat, dog, car.
# co-occurrence: dog: person 2, cat 1; cat: dog 1, person 1; person: dog 2, car 1, cat 1; car: person 1.


def test_statistics_by_hand():
    stats = ObjectStatistics.of({k: frozenset(v) for k, v in ANNOTATIONS.items()})
    assert stats.objects == ("car", "cat", "dog", "person")
    assert stats.by_frequency == ("person", "cat", "dog", "car")
    assert dict(stats.co_occurring) == {"dog": ("person", "cat"), "cat": ("dog", "person"),
                                        "person": ("dog", "car", "cat"), "car": ("person",)}


def pairs(questions):
    return [(q.image, q.object, q.label) for q in questions]


def test_popular_negatives_by_hand():
    # a: the first of person, cat, dog, car it lacks is car; b: cat; c: cat; d (only cat): person.
    negatives = [(q.image, q.object) for q in build_pope_questions(ANNOTATIONS, "popular", per_image=1)
                 if q.label == "no"]
    assert negatives == [("a", "car"), ("b", "cat"), ("c", "cat"), ("d", "person")]


def test_adversarial_negatives_by_hand():
    # the first object co-occurring with the asked present one that the image lacks; where none is left
    # (a: every partner is present; c asked about car: person is present) a random absent one.
    by_hand = {("b", "dog"): "cat", ("b", "person"): "car", ("c", "person"): "dog", ("d", "cat"): "dog",
               ("a", "dog"): "car", ("a", "cat"): "car", ("a", "person"): "car"}
    for seed in range(6):
        questions = build_pope_questions(ANNOTATIONS, "adversarial", per_image=1, seed=seed)
        for present, absent in zip(questions[::2], questions[1::2]):
            key = (present.image, present.object)
            assert absent.object == by_hand.get(key, absent.object), (seed, key)
            assert absent.object not in ANNOTATIONS[present.image]


@pytest.mark.parametrize("split", ["random", "popular", "adversarial"])
def test_structure(split):
    questions = build_pope_questions(ANNOTATIONS, split, per_image=3, seed=1)
    assert [q.question_id for q in questions] == list(range(1, len(questions) + 1))
    assert [q.label for q in questions] == ["yes", "no"] * (len(questions) // 2)
    per_image = {image: [(o, label) for i, o, label in pairs(questions) if i == image] for image in ANNOTATIONS}
    # a: 3 present but 1 absent object (car) -> 1 pair; b: 2 present, 2 absent -> 2; c: 2; d: 1 present -> 1.
    assert {image: len(asked) // 2 for image, asked in per_image.items()} == {"a": 1, "b": 2, "c": 2, "d": 1}
    for image, asked in per_image.items():
        assert len({o for o, _ in asked}) == len(asked)
        assert all((o in ANNOTATIONS[image]) == (label == "yes") for o, label in asked)
    assert build_pope_questions(ANNOTATIONS, split, per_image=3, seed=1) == questions


def test_text_and_image_names():
    questions = build_pope_questions({"7": {"apple", "dog"}, "8": {"car"}}, "random", per_image=1,
                                     image_name=lambda key: f"img_{key}.png")
    assert {q.image for q in questions} == {"img_7.png", "img_8.png"}
    texts = {q.object: q.text for q in questions}
    assert texts.get("apple", "Is there an apple in the image?") == "Is there an apple in the image?"
    assert texts["car"] == "Is there a car in the image?"


def test_bad_arguments():
    with pytest.raises(InputError, match="splits: random, popular, adversarial"):
        build_pope_questions(ANNOTATIONS, "hard")
    with pytest.raises(InputError, match="per_image"):
        build_pope_questions(ANNOTATIONS, "random", per_image=0)
    with pytest.raises(InputError, match="no annotated image"):
        build_pope_questions({"a": set()}, "random")


def test_written_splits_read_back(tmp_path):
    from circuits.hallucination.question_sets import write_pope_splits
    from circuits.hallucination.questions import load_pope_questions

    paths = write_pope_splits(ANNOTATIONS, tmp_path / "sets", name="world", per_image=2, seed=4)
    assert {split: path.name for split, path in paths.items()} == {
        "random": "world_pope_random.json", "popular": "world_pope_popular.json",
        "adversarial": "world_pope_adversarial.json"}
    assert load_pope_questions(paths["popular"]) == build_pope_questions(ANNOTATIONS, "popular", per_image=2, seed=4)
