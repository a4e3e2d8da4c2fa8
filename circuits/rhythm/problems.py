"""GSM8K problems and their answers, for the rhythm analysis's traces.

Context:
    :func:`load_problems` reads GSM8K JSON lines (``{"question", "answer": "... #### 42"}``) or
    a hub data set (``openai/gsm8k``, config ``main``, split ``test``), failing in seconds where
    no hub answers; :func:`extract_answer` reads a response's final number (the last number
    inside the last ``\\boxed{...}``, else the last number; thousands commas and trailing zeros
    dropped, ``\\frac`` not evaluated). Every bad file gives one :class:`TraceInputError` naming the
    file, the line and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterator, Sequence

from probe.models.hub import hub_host, hub_offline, hub_reachable

GSM8K_HUB = "openai/gsm8k"
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
BOXED = "\\boxed{"
PROBLEM_EXAMPLE = '{"question": "...", "answer": "... #### 42"}'


class TraceInputError(ValueError):
    """A problem or trace file that cannot be used, naming the file, the line and the fix."""


@dataclass(frozen=True)
class Problem:
    """One question to reason about.

    Attributes:
        question: the problem text.
        reference: the final number (normalised, see :func:`normalise_number`); None if unknown.
        source: where it was read (``"FILE line N"`` or ``"DATASET (CONFIG, SPLIT) row N"``).
    """

    question: str
    reference: str | None = None
    source: str = ""


# --- numbers and answers -------------------------------------------------------------------


def normalise_number(text: str) -> str | None:
    """``text`` as a plain decimal (no commas, no trailing zeros), or None if it is not a number."""
    cleaned = text.strip().lstrip("$").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return format(value.normalize(), "f") if value.is_finite() else None


def parse_reference(answer: str) -> str | None:
    """The final number of a GSM8K answer (the text after its last ``####``; the whole text if none)."""
    return normalise_number(answer.rpartition("####")[2])


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` in ``text`` (nested braces allowed)."""
    start = text.rfind(BOXED)
    while start >= 0:
        depth, begin = 1, start + len(BOXED)
        for position in range(begin, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                return text[begin:position]
        start = text.rfind(BOXED, 0, start)  # unclosed (cut off): try an earlier box
    return None


def extract_answer(response: str) -> str | None:
    """The last number in the last ``\\boxed{}`` of ``response``, else its last number (normalised)."""
    boxed = last_boxed(response)
    numbers = NUMBER.findall(response if boxed is None else boxed)
    return normalise_number(numbers[-1]) if numbers else None


def answers_match(predicted: str | None, reference: str | None) -> bool | None:
    """Whether two normalised numbers are equal; None without a reference."""
    if reference is None:
        return None
    return predicted is not None and Decimal(predicted) == Decimal(reference)


# --- problems ------------------------------------------------------------------------------


def load_problems(source: str | Path, *, config: str = "main", split: str = "test",
                  limit: int | None = None) -> list[Problem]:
    """Problems from a JSON-lines file, or from a hub data set id such as ``openai/gsm8k``.

    ``source`` is a file when it exists, ends in ``.jsonl``/``.json``, or does not look like
    ``owner/name``; otherwise it is a data set id loaded with ``datasets`` (``config``, ``split``).

    Raises:
        TraceInputError: a bad file (see :func:`read_problems`), or a data set the hub cannot give.
    """
    path = Path(source)
    is_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None
    if path.exists() or path.suffix in (".jsonl", ".json") or not is_hub_id:
        problems = read_problems(path)
    else:
        problems = problems_from_hub(str(source), config=config, split=split)
    return problems[:limit]


def read_problems(path: str | Path) -> list[Problem]:
    """Problems of a JSON-lines file of ``{"question": ..., "answer": "... #### 42"}`` records.

    Blank lines are skipped; ``answer`` may be left out (no reference).

    Raises:
        TraceInputError: naming the file, the line and the fix, for a missing or unreadable
            file, a line that is not a JSON object, a record without a question, an answer
            without a final number, or a file without records.
    """
    path = Path(path)
    problems = [_problem(f"{path} line {number}", record) for number, record in json_lines(path, PROBLEM_EXAMPLE)]
    if not problems:
        raise TraceInputError(f"problem file {path} holds no problems; add one JSON object per line, "
                              f"such as {PROBLEM_EXAMPLE}")
    return problems


def problems_from_hub(dataset: str = GSM8K_HUB, *, config: str = "main", split: str = "test") -> list[Problem]:
    """Problems of a hub data set with ``question``/``answer`` columns (GSM8K's layout).

    Fails within seconds when no hub answers (unless ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` asks for the local cache).

    Raises:
        TraceInputError: no hub, no ``datasets`` package, or the hub has no such data set.
    """
    fix = "pass a JSON-lines file such as ../shared/data/gsm8k/test.jsonl instead"
    if not hub_offline("HF_DATASETS_OFFLINE") and not hub_reachable():
        raise TraceInputError(f"{dataset!r} is not a file, and the hub at {hub_host()} does not answer to load it "
                              f"as a data set; {fix}")
    try:
        import datasets
    except ImportError as err:
        raise TraceInputError(f"loading {dataset!r} from the hub needs the datasets package "
                              f"(pip install datasets); or {fix}") from err
    try:
        rows = datasets.load_dataset(dataset, config, split=split)
    except (ValueError, OSError, ConnectionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TraceInputError(f"cannot load {dataset!r} (config {config!r}, split {split!r}) from the hub "
                              f"({reason}); {fix}") from err
    return [_problem(f"{dataset} ({config}, {split}) row {number}", dict(row)) for number, row in enumerate(rows)]


def problems_digest(problems: Sequence[Problem]) -> str:
    """A SHA-256 of the questions and references, in order (sources are left out)."""
    text = json.dumps([[p.question, p.reference] for p in problems], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _problem(location: str, record: dict) -> Problem:
    """The problem of one record; ``location`` (``"FILE line N"``) names it in errors and as its source."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise TraceInputError(f"{location}: no question (a record needs a non-empty string \"question\"); "
                              f"write it as {PROBLEM_EXAMPLE}")
    answer = answer_text(record.get("answer"))
    reference = parse_reference(answer) if answer is not None else None
    if answer is not None and reference is None:
        raise TraceInputError(f"{location}: the answer has no final number after '####' ({answer[-40:]!r}); "
                              "end it with '#### 42', or leave \"answer\" out")
    return Problem(question, reference, location)


def answer_text(value) -> str | None:
    """An answer field as text: strings as they are, JSON numbers written out, None if absent."""
    if value is None or isinstance(value, str):
        return value
    return "" if isinstance(value, bool) else str(value)  # "" has no number: refused with the line


def json_lines(path: Path, example: str) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for each non-blank line of ``path``; any problem names file and line."""
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise TraceInputError(f"{path} {state}; pass a JSON-lines file with one record per line, such as {example}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TraceInputError(f"cannot read {path} ({err}); pass a UTF-8 JSON-lines file") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            record, reason = None, f"not JSON ({err.msg})"
        else:
            reason = f"a JSON {type(record).__name__}, not an object"
        if not isinstance(record, dict):
            raise TraceInputError(f"{path} line {number} is {reason}; write one JSON object per line, "
                                  f"such as {example}")
        yield number, record
