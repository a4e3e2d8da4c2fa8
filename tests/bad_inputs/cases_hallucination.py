"""Bad-input rows: POPE question files, annotation sources, CHAIR lists and the metric calls."""

from __future__ import annotations

import json
from pathlib import Path

from circuits.hallucination.annotations import load_annotations
from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from circuits.hallucination.pope import pope_metrics
from circuits.hallucination.question_sets import build_pope_questions
from circuits.hallucination.questions import load_pope_questions
from tests.bad_inputs.table import Case, Env, api
from tests.hallucination.metric_fixtures import MINI_LISTS

QUESTION = {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a dog in the image?",
            "label": "yes"}


def questions(env: Env, **fields) -> Path:
    path = env.tmp / "coco_pope_random.json"
    path.write_text(json.dumps({**QUESTION, **fields}) + "\n")
    return path


def written(env: Env, name: str, data: bytes) -> Path:
    path = env.tmp / name
    path.write_bytes(data)
    return path


def pope_file(build):
    return lambda env: load_pope_questions(build(env))


def annotations(build):
    return lambda env: load_annotations(build(env))


CASES: list[Case] = [
    api("pope-questions-unknown-field", pope_file(lambda env: questions(env, colour="red")), "colour"),
    api("pope-questions-bad-label", pope_file(lambda env: questions(env, label="maybe")), "label must be"),
    api("pope-questions-missing-text", pope_file(lambda env: written(env, "q.json", b'{"question_id": 1}\n')),
        "lacks the field"),
    api("pope-questions-not-json", pope_file(lambda env: written(env, "q.json", b"question 1: dog?\n")),
        "not valid JSON"),
    api("pope-questions-missing", pope_file(lambda env: env.tmp / "none.json"), "does not exist"),
    api("annotations-gzip-garbage", annotations(lambda env: written(env, "a.json.gz", b"\x1f\x8bnot gzip at all")),
        "gzip"),
    api("annotations-wrong-shape", annotations(lambda env: written(env, "a.json", b'[["dog"]]')), "imid_to_objects"),
    api("annotations-jsonl-unknown-field",
        annotations(lambda env: written(env, "a.jsonl", b'{"image": "a.png", "objects": [], "boxes": []}\n')),
        "unknown field"),
    api("annotations-unknown-format", lambda env: load_annotations(f"xml:{env.tmp}/a.xml"), "annotation format"),
    api("annotations-yolo-without-config", annotations(lambda env: env.tmp), "config.yaml"),
    api("chair-lists-missing", lambda env: ChairVocabulary.from_file(
        written(env, "chair.json", json.dumps({"mscoco_objects": []}).encode())), "double_word_dict"),
    api("chair-truth-not-category", lambda env: chair_metrics(ChairVocabulary.from_lists(MINI_LISTS), ["a puppy"],
                                                              [{"puppy"}]), "category"),
    api("pope-answers-missing", lambda env: pope_metrics(["yes", "no"], ["yes"]), "one answer per question"),
    api("pope-set-unknown-split", lambda env: build_pope_questions({"a": {"dog"}}, "hard"), "split"),
]
