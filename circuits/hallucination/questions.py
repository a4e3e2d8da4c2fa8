"""POPE question files: JSON lines ``{question_id, image, text, label}``, read with validation.

POPE (Li et al. 2023) ships one file per split (``coco_pope_random.json``, ``..._popular.json``,
``..._adversarial.json``; JSON lines despite the suffix). A file holding one JSON array is read too.
Every record must have the four fields, no others except the optional ``object`` (the object the
question asks about, which :mod:`circuits.hallucination.question_sets` writes), and a ``label`` of
``yes`` or ``no``; question ids must be unique. Anything else is one error naming the file, the
line and the fix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from circuits.hallucination.files import json_records
from probe.errors import InputError
from probe.files import write_text_atomic

REQUIRED_FIELDS = ("question_id", "image", "text", "label")
OPTIONAL_FIELDS = ("object",)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
LABELS = ("yes", "no")
_ASKED = re.compile(r"^is there an? (.+?) in the image\??$", re.IGNORECASE)


@dataclass(frozen=True)
class PopeQuestion:
    """One POPE question.

    Attributes:
        question_id: unique within its file (an integer in POPE's files).
        image: the image's file name ("COCO_val2014_000000310196.jpg").
        text: the question ("Is there a snowboard in the image?").
        label: the true answer, ``"yes"`` or ``"no"``.
        object: the object asked about, when known (read from ``text`` for POPE's template).
    """

    question_id: int | str
    image: str
    text: str
    label: str
    object: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        return record if self.object is not None else {k: v for k, v in record.items() if k != "object"}


def asked_object(text: str) -> str | None:
    """The object of a question in POPE's template ("Is there a dog in the image?" -> "dog")."""
    match = _ASKED.match(text.strip())
    return match.group(1).lower() if match else None


def load_pope_questions(path: str | os.PathLike) -> list[PopeQuestion]:
    """The questions of a POPE question file, validated (see the module's docstring)."""
    questions, seen = [], set()
    for number, record in json_records(path, "POPE question file"):
        question = _question(record, f"POPE question file {path} line {number}")
        if question.question_id in seen:
            raise InputError(f"POPE question file {path} line {number}: question_id {question.question_id!r} occurs "
                             "twice; give every question its own id")
        seen.add(question.question_id)
        questions.append(question)
    return questions


def write_pope_questions(questions: Iterable[PopeQuestion], path: str | os.PathLike) -> Path:
    """Write ``questions`` as a POPE question file (JSON lines), atomically."""
    return write_text_atomic(path, "".join(json.dumps(q.to_dict()) + "\n" for q in questions))


def _question(record: Any, where: str) -> PopeQuestion:
    if not isinstance(record, dict):
        raise InputError(f"{where} is a JSON {type(record).__name__}, not an object; write "
                         "{\"question_id\": ..., \"image\": ..., \"text\": ..., \"label\": ...}")
    unknown = sorted(set(record) - set(KNOWN_FIELDS))
    if unknown:
        raise InputError(f"{where} has the unknown field {unknown[0]!r}; known fields: {', '.join(KNOWN_FIELDS)} "
                         "(remove or rename it)")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise InputError(f"{where} lacks the field {missing[0]!r}; every question needs {', '.join(REQUIRED_FIELDS)}")
    qid = record["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
        raise InputError(f"{where}: question_id must be an integer or a non-empty string, got {qid!r}")
    for name in ("image", "text"):
        if not isinstance(record[name], str) or not record[name].strip():
            raise InputError(f"{where}: {name!r} must be a non-empty string, got {record[name]!r}")
    label = record["label"].strip().lower() if isinstance(record["label"], str) else record["label"]
    if label not in LABELS:
        raise InputError(f"{where}: label must be 'yes' or 'no', got {record['label']!r}")
    obj = record.get("object", asked_object(record["text"]))
    if obj is not None and not isinstance(obj, str):
        raise InputError(f"{where}: 'object' must be a string, got {obj!r}")
    return PopeQuestion(qid, record["image"], record["text"], label, obj)
