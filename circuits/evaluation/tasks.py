"""Multiple-choice and classification tasks: BIG-Bench-Hard files and JSON lines with the same fields.

Context:
    A task is a list of items ``{"input": str, "target": str}`` (BBH's ``{"examples": [...]}``
    JSON, or one JSON object per line). Each item needs a closed set of options. They come from,
    in order: an explicit ``"options"`` list on the item; an ``Options:`` block in the input, with
    lettered lines ``(A) text`` or dashed lines ``- text``; otherwise the task's distinct targets
    when there are at most ``max_labels`` of them (classification tasks such as
    ``sports_understanding``). A task with none of these has no options and is refused.

    Prompts end where the answer starts, so every option is scored as a continuation:
    lettered items end in ``"\\nAnswer: ("`` and their options are the letters (one token each);
    other items end in ``"\\nAnswer:"`` and their options are ``" " + text``.

Deviation:
    BBH's ``ruin_names`` has a few items whose target is not one of the lettered options (the
    option list was split at commas when the data set was built). Such items are dropped and
    counted in :attr:`Task.dropped` instead of being scored against an answer that is not offered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LETTERED = re.compile(r"^\(([A-Z])\)\s*(.*)$")
DASHED = re.compile(r"^-\s*(.*?)\s*$")
MAX_LABELS = 10


class TaskError(ValueError):
    """A task file that cannot be used, with the reason and the fix."""


@dataclass(frozen=True)
class Item:
    """One scored question.

    Attributes:
        prompt: the text the model reads; the answer continues it.
        options: continuations to compare (e.g. ``("A", "B")`` or ``(" Yes", " No")``).
        answer: index of the correct option.
    """

    prompt: str
    options: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Task:
    """A named list of items; ``dropped`` counts items whose target is not among their options."""

    name: str
    items: tuple[Item, ...]
    dropped: int = 0


def load_task(path: str | Path, max_labels: int = MAX_LABELS, limit: int | None = None) -> Task:
    """Read a BBH ``.json`` or a ``.jsonl`` task file into a :class:`Task`.

    Raises:
        TaskError: unreadable or malformed file, missing fields, or no options.
    """
    path = Path(path)
    records = _read_records(path)
    task = build_task(path.stem, records, max_labels)
    return Task(task.name, task.items[:limit], task.dropped) if limit is not None else task


def build_task(name: str, records: list[dict], max_labels: int = MAX_LABELS) -> Task:
    """Items of a task from its raw ``{"input", "target"[, "options"]}`` records."""
    if not records:
        raise TaskError(f"task {name!r} has no examples")
    for index, record in enumerate(records):
        _check_record(name, index, record)
    labels = sorted({r["target"].strip() for r in records})
    items, dropped = [], 0
    for index, record in enumerate(records):
        item = _item(name, index, record, labels, max_labels)
        if item is None:
            dropped += 1
        else:
            items.append(item)
    if not items:
        raise TaskError(f"task {name!r}: no item's target is among its options")
    return Task(name=name, items=tuple(items), dropped=dropped)


def _read_records(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"cannot read task file {path}: {err}") from err
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskError(f"task file {path} is not valid JSON{' lines' if path.suffix == '.jsonl' else ''}: {err}") from err
    if isinstance(data, dict) and isinstance(data.get("examples"), list):
        return data["examples"]
    if isinstance(data, list):
        return data
    raise TaskError(f"task file {path}: expected a list of examples or {{'examples': [...]}} (BBH layout)")


def _check_record(name: str, index: int, record) -> None:
    if not isinstance(record, dict):
        raise TaskError(f"task {name!r} example {index}: expected an object with 'input' and 'target'")
    for key in ("input", "target"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise TaskError(f"task {name!r} example {index}: field {key!r} must be a non-empty string")
    options = record.get("options")
    if options is not None and (not isinstance(options, list) or len(options) < 2
                                or not all(isinstance(o, str) and o.strip() for o in options)):
        raise TaskError(f"task {name!r} example {index}: 'options' must list at least two non-empty strings")


def _item(name: str, index: int, record: dict, labels: list[str], max_labels: int) -> Item | None:
    text, target = record["input"].rstrip(), record["target"].strip()
    if record.get("options"):
        return _word_item(text, [o.strip() for o in record["options"]], target)
    lettered, dashed = parse_options(text)
    if lettered:
        return _letter_item(text, lettered, target)
    if dashed:
        return _word_item(text, dashed, target)
    if len(labels) <= max_labels and len(labels) >= 2:
        return _word_item(text, labels, target)
    raise TaskError(
        f"task {name!r} example {index} has no options: no 'options' field, no 'Options:' block in the input, "
        f"and the task has {len(labels)} distinct targets (classification needs 2..{max_labels}); "
        "add an 'options' list to each example"
    )


def parse_options(text: str) -> tuple[dict[str, str], list[str]]:
    """Options listed after an ``Options:`` line: ``({letter: text}, [])`` or ``({}, [texts])``."""
    _, found, block = text.partition("Options:")
    if not found:
        return {}, []
    lettered, dashed = {}, []
    for line in block.strip().splitlines():
        if match := LETTERED.match(line.strip()):
            lettered[match.group(1)] = match.group(2)
        elif match := DASHED.match(line.strip()):
            dashed.append(match.group(1))
    return lettered, dashed


def _letter_item(text: str, lettered: dict[str, str], target: str) -> Item | None:
    letters = tuple(lettered)
    match = re.fullmatch(r"\(?([A-Z])\)?", target)
    letter = match.group(1) if match else next((k for k, v in lettered.items() if v.strip() == target), None)
    if letter not in letters:
        return None
    return Item(prompt=f"{text}\nAnswer: (", options=letters, answer=letters.index(letter))


def _word_item(text: str, options: list[str], target: str) -> Item | None:
    lowered = [o.lower() for o in options]
    if target.lower() not in lowered:
        return None
    return Item(prompt=f"{text}\nAnswer:", options=tuple(" " + o for o in options), answer=lowered.index(target.lower()))


def split_items(task: Task, n_calibration: int, n_test: int | None, seed: int = 0) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
    """Disjoint calibration and test items, chosen by a seeded shuffle."""
    import random

    order = list(range(len(task.items)))
    random.Random(f"{task.name}:{seed}").shuffle(order)
    if n_calibration < 0 or (n_test is not None and n_test < 0):
        raise ValueError("split sizes must be non-negative")
    cal = tuple(task.items[i] for i in order[:n_calibration])
    rest = order[n_calibration:]
    test = tuple(task.items[i] for i in (rest if n_test is None else rest[:n_test]))
    return cal, test
