"""The batch runner: images loaded, answers asked in batches, every outcome recorded.

Context:
    :func:`run_items` walks the items not yet done, ``batch_size`` at a time (a batch holds one
    kind of item, so one token budget), loads each image once and asks the answerer for every
    condition still missing for those items. Each batch's records, answers and failures of all
    conditions, go to the :class:`~circuits.hallucination.store.ShardWriter` as one unit, so a
    kill loses at most the batch in flight.

    An item whose image is missing or corrupt fails alone: its record carries the error and no
    answer, and the rest of the batch goes on. When the answerer raises on a batch (a value the
    model refuses, memory running out), the batch is asked again one item at a time, so only the
    items that fail on their own are recorded as failed. Errors of other types (``TypeError``,
    ``AttributeError`` ...) are bugs and stop the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from circuits.hallucination.answerers import Answerer, Query, Request
from circuits.hallucination.items import EvalItem, ImageError, load_image
from circuits.hallucination.store import RecordKey, ShardWriter

ITEM_ERRORS = (ValueError, RuntimeError, OSError)
"""What an answerer may raise for an item it cannot answer; anything else is a bug."""


@dataclass(frozen=True)
class RunSettings:
    """How :func:`run_items` runs.

    Attributes:
        conditions: ``none`` and the edit conditions, in order.
        batch_size: items per answerer call.
        max_new_tokens: per item kind (``pope``, ``chair``), most tokens per answer.
        images_dir: where relative image paths are found (None: the working folder).
    """

    conditions: tuple[str, ...]
    batch_size: int
    max_new_tokens: dict
    images_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class RunCounts:
    """What one process did: items loaded, records written, of which failures."""

    items: int = 0
    records: int = 0
    failures: int = 0


def outcome_record(item: EvalItem, condition: str, answer: str | None, error: str | None) -> dict:
    """One result line: the condition, the item's fields, the answer or the error."""
    return {"condition": condition, **item.to_dict(), "answer": answer, "error": error}


def pending(items: Sequence[EvalItem], conditions: Sequence[str], done: set[RecordKey]) -> list[EvalItem]:
    """The items with at least one condition not in ``done``."""
    return [item for item in items if any((c, item.item_id) not in done for c in conditions)]


def batches(items: Sequence[EvalItem], size: int) -> Iterator[list[EvalItem]]:
    """Consecutive runs of at most ``size`` items of one kind."""
    batch: list[EvalItem] = []
    for item in items:
        if batch and (len(batch) == size or batch[0].kind != item.kind):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def run_items(items: Sequence[EvalItem], answerer: Answerer, writer: ShardWriter, done: set[RecordKey],
              settings: RunSettings, progress: Callable[[int], object] = lambda n: None) -> RunCounts:
    """Answer every (condition, item) not in ``done``; append each batch's records to ``writer``.

    Args:
        items: this process's items, in run order.
        answerer: answers a batch (:mod:`circuits.hallucination.answerers`).
        writer: the shard file records are appended to.
        done: keys already recorded (by this or an earlier run); they are not asked again.
        settings: conditions, batch size, token budgets, image folder.
        progress: called with the number of items after each batch (a progress bar's update).
    """
    counts = RunCounts()
    for batch in batches(pending(items, settings.conditions, done), settings.batch_size):
        records = run_batch(batch, answerer, done, settings)
        writer.append(records)
        failures = sum(record["error"] is not None for record in records)
        counts = RunCounts(counts.items + len(batch), counts.records + len(records), counts.failures + failures)
        progress(len(batch))
    return counts


def run_batch(batch: list[EvalItem], answerer: Answerer, done: set[RecordKey], settings: RunSettings) -> list[dict]:
    """The records of one batch: image failures for every missing condition, then the answers."""
    images, records = {}, []
    for item in batch:
        try:
            images[item.item_id] = load_image(item.image, settings.images_dir)
        except ImageError as err:
            records += [outcome_record(item, c, None, str(err)) for c in settings.conditions
                        if (c, item.item_id) not in done]
    for condition in settings.conditions:
        todo = [item for item in batch if item.item_id in images and (condition, item.item_id) not in done]
        if not todo:
            continue
        request = Request(condition, todo[0].kind, settings.max_new_tokens[todo[0].kind])
        outcomes = answer_all([(images[item.item_id], item.prompt) for item in todo], answerer, request)
        records += [outcome_record(item, condition, *outcome) for item, outcome in zip(todo, outcomes)]
    return records


def answer_all(queries: list[Query], answerer: Answerer, request: Request) -> list[tuple[str | None, str | None]]:
    """``(answer, None)`` or ``(None, error)`` per query: the batch at once, else one at a time."""
    try:
        return [(text, None) for text in checked(answerer.answer(queries, request), len(queries))]
    except ITEM_ERRORS as err:
        if len(queries) == 1:
            return [(None, f"{type(err).__name__}: {err}")]
    return [answer_all([query], answerer, request)[0] for query in queries]


def checked(answers: list[str], n: int) -> list[str]:
    if len(answers) != n or not all(isinstance(text, str) for text in answers):
        raise TypeError(f"an answerer returned {len(answers)} answers for {n} queries (it must return one string each)")
    return answers
