"""The real POPE question files, CHAIR file and coco128 labels load and fit together (../shared)."""

from __future__ import annotations

from collections import Counter

import pytest

from circuits.hallucination.annotations import image_key, keyed, load_annotations
from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from circuits.hallucination.pope import SPLITS, pope_metrics
from circuits.hallucination.question_sets import build_pope_questions
from circuits.hallucination.questions import load_pope_questions
from tests.hallucination.metric_fixtures import CHAIR_FILE, COCO128, POPE_DIR

pytestmark = pytest.mark.skipif(not (CHAIR_FILE.exists() and POPE_DIR.exists() and COCO128.exists()),
                                reason="../shared/data (POPE, CHAIR, coco128) is not here")


@pytest.fixture(scope="module")
def chair_truth():
    return load_annotations(CHAIR_FILE)


@pytest.mark.parametrize("split", SPLITS)
def test_pope_files(split, chair_truth):
    questions = load_pope_questions(POPE_DIR / f"coco_pope_{split}.json")
    assert len(questions) == 3000 and len({q.image for q in questions}) == 500
    assert Counter(q.label for q in questions) == {"yes": 1500, "no": 1500}
    assert all(q.object for q in questions)
    # POPE's ground truth agrees with CHAIR's: every "yes" object is in the image's CHAIR set, no "no" object is
    truth = {q.image: chair_truth[image_key(q.image)] for q in questions}
    assert all((q.object in truth[q.image]) == (q.label == "yes") for q in questions)
    assert pope_metrics([q.label for q in questions], ["Yes"] * 3000).yes_ratio == 1.0


def test_chair_file_and_coco128_agree(chair_truth):
    vocabulary = ChairVocabulary.from_file(CHAIR_FILE)
    assert len(chair_truth) == 123287 and len(vocabulary.categories) == 80
    yolo = keyed(load_annotations(COCO128))
    assert len(yolo) == 256
    assert set().union(*yolo.values()) <= vocabulary.categories
    assert all(objects <= chair_truth[key] for key, objects in yolo.items())  # CHAIR adds caption objects
    captions = ["A plate of broccoli and oranges in a bowl next to a fork."]
    metrics = chair_metrics(vocabulary, captions, [chair_truth["9"]])
    assert [m.category for m in metrics.captions[0].mentions] == ["broccoli", "orange", "bowl", "fork"]


def test_pope_sets_from_coco128():
    annotations = load_annotations(COCO128)
    for split in SPLITS:
        questions = build_pope_questions(annotations, split)
        assert Counter(q.label for q in questions)["yes"] == len(questions) // 2
        assert all((q.object in annotations[q.image]) == (q.label == "yes") for q in questions)
