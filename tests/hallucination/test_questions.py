"""POPE question files: read, written back, and refused with a clear error when malformed."""

from __future__ import annotations

import gzip
import json

import pytest

from circuits.hallucination.questions import PopeQuestion, asked_object, load_pope_questions, write_pope_questions
from probe.errors import InputError

RECORDS = [
    {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
     "label": "yes"},
    {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": "Is there an apple in the image?",
     "label": "no"},
]


def lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_reads_json_lines_json_arrays_and_gzip(tmp_path):
    expected = [PopeQuestion(1, RECORDS[0]["image"], RECORDS[0]["text"], "yes", "snowboard"),
                PopeQuestion(2, RECORDS[1]["image"], RECORDS[1]["text"], "no", "apple")]
    assert load_pope_questions(lines(tmp_path / "q.json", RECORDS)) == expected
    (tmp_path / "array.json").write_text(json.dumps(RECORDS, indent=1))
    assert load_pope_questions(tmp_path / "array.json") == expected
    (tmp_path / "q.jsonl.gz").write_bytes(gzip.compress((tmp_path / "q.json").read_bytes()))
    assert load_pope_questions(tmp_path / "q.jsonl.gz") == expected


def test_round_trip(tmp_path):
    questions = [PopeQuestion(7, "a.png", "Is there a dog in the image?", "yes", "dog"),
                 PopeQuestion("x", "b.png", "Is the cat black?", "no")]
    written = write_pope_questions(questions, tmp_path / "out.jsonl")
    assert load_pope_questions(written) == questions
    assert "object" not in written.read_text().splitlines()[1]


def test_asked_object():
    assert asked_object("Is there a traffic light in the image?") == "traffic light"
    assert asked_object("Is there an traffic light in the image?") == "traffic light"  # as in POPE's files
    assert asked_object("What colour is the car?") is None


@pytest.mark.parametrize("edit, word", [
    (lambda r: {**r, "colour": "red"}, "unknown field 'colour'; known fields: question_id, image, text, label"),
    (lambda r: {k: v for k, v in r.items() if k != "label"}, "lacks the field 'label'"),
    (lambda r: {**r, "label": "maybe"}, "label must be 'yes' or 'no'"),
    (lambda r: {**r, "question_id": 1.5}, "question_id"),
    (lambda r: {**r, "image": ""}, "'image' must be"),
    (lambda r: [r], "not an object"),
])
def test_bad_records(tmp_path, edit, word):
    path = lines(tmp_path / "q.json", [RECORDS[0], edit(RECORDS[1])])
    with pytest.raises(InputError, match=word) as caught:
        load_pope_questions(path)
    assert "line 2" in str(caught.value)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="twice"):
        load_pope_questions(lines(tmp_path / "dup.json", [RECORDS[0], RECORDS[0]]))
    (tmp_path / "broken.json").write_text(json.dumps(RECORDS[0]) + "\n{oops\n")
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        load_pope_questions(tmp_path / "broken.json")
    (tmp_path / "empty.json").write_text("\n")
    with pytest.raises(InputError, match="no records"):
        load_pope_questions(tmp_path / "empty.json")
    with pytest.raises(InputError, match="does not exist"):
        load_pope_questions(tmp_path / "none.json")
