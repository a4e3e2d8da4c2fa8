"""Evaluation results as JSON lines that survive a kill: shard files appended in units, one merged file.

Context:
    Each process appends its records to its own shard file, ``OUT/shards/rankRRR-of-WWW.jsonl``,
    one *unit* (the records of one batch) per ``write`` followed by ``fsync``. A ``kill -9`` can
    therefore cut the file only inside the last unit: every line before the cut is a whole record,
    and the cut line (no newline, or not JSON) is dropped when the run restarts. On restart every
    shard file of the folder is read, whatever world size wrote it, and the records there are
    *done*: a run restarted with 1, 2 or 8 processes answers exactly the items still missing, so
    no record is lost or written twice.

    A shard file is locked (``flock``) while its process writes it, so a second run started on
    the same folder while the first still writes (or while torchrun workers outlive a killed
    launcher) is refused instead of interleaving its lines. A record is keyed by
    ``(condition, item_id)``. When every process has finished, rank 0 merges
    the shards into ``OUT/results.jsonl``, ordered as the items and conditions of the run, through
    :func:`probe.files.atomic_path` (written whole or not at all).

    ``OUT/run.json`` holds the settings that decide the answers (model, answerer, prompts, token
    budgets, conditions); a restart with other settings is refused rather than mixing two runs.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from probe.errors import InputError
from probe.files import atomic_path, write_text_atomic

SHARD_FOLDER = "shards"
RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "run.json"

RecordKey = tuple[str, str]


def record_key(record: dict) -> RecordKey:
    """``(condition, item_id)``: what makes a record unique in a run."""
    return record["condition"], record["item_id"]


def encode_records(records: Iterable[dict]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n" for record in records).encode()


def shard_path(out: Path, rank: int, world: int) -> Path:
    return Path(out) / SHARD_FOLDER / f"rank{rank:03d}-of-{world:03d}.jsonl"


def shard_files(out: Path) -> list[Path]:
    return sorted((Path(out) / SHARD_FOLDER).glob("rank*-of-*.jsonl"))


def read_records(path: Path) -> tuple[list[dict], int]:
    """The whole records of a JSON-lines results file and the byte length they take.

    A last line cut by a kill (no final newline, or not a JSON object) is left out; the length
    returned then ends before it, so a writer can truncate the file there.

    Raises:
        InputError: a line before the last is not a JSON object (the file is not a results file,
            or was edited), naming the file and line.
    """
    data = Path(path).read_bytes()
    records, good = [], 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] is the part after the last newline
        record = _decode(line)
        if record is None:
            if number == len(lines) - 1 and not lines[-1]:
                break  # a last full line that is not a record: torn (zero-filled) too
            raise InputError(f"{path}: line {number} is not a result record; this is not a file of "
                             "`headscope vlm eval`: delete it or pass another --out")
        records.append(record)
        good += len(line) + 1
    return records, good


def _decode(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "condition" in record and "item_id" in record else None


def done_records(out: Path) -> dict[RecordKey, dict]:
    """Every whole record in the shard files under ``out`` (the first of any repeated key)."""
    done: dict[RecordKey, dict] = {}
    for path in shard_files(out):
        for record in read_records(path)[0]:
            done.setdefault(record_key(record), record)
    return done


def lock_exclusively(fd: int, path: Path) -> None:
    """Hold an exclusive ``flock`` on ``fd`` until it closes (the kernel drops it when the process
    dies, so a killed run leaves no stale lock); refuse when another process holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(f"another process is writing {path} (an earlier run still going, or its torchrun workers "
                         "outliving their launcher); wait for it or stop it, then run again") from None


class ShardWriter:
    """Appends units of records to one shard file, each written and ``fsync``-ed as one piece.

    Opening it takes an exclusive lock on the file, so two runs never append to one shard, and
    drops a torn last line left by a killed writer, so the next unit starts on a fresh line. Use
    as a context manager.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            lock_exclusively(self._fd, self.path)
            good = read_records(self.path)[1]
        except BaseException:
            os.close(self._fd)
            raise
        os.ftruncate(self._fd, good)
        os.lseek(self._fd, good, os.SEEK_SET)
        self.written = 0

    def append(self, records: Sequence[dict]) -> None:
        """Write ``records`` as one unit and ``fsync`` it before returning."""
        data = memoryview(encode_records(records))
        while data:
            data = data[os.write(self._fd, data):]
        os.fsync(self._fd)
        self.written += len(records)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def merge_shards(out: Path, order: Sequence[RecordKey]) -> tuple[list[dict], list[RecordKey]]:
    """Write ``OUT/results.jsonl`` from the shards, in ``order``; returns its records and the
    keys of ``order`` that no shard holds (empty after a complete run).

    Records of keys outside ``order`` (items of an earlier ``--limit``) stay in the shards but
    are not merged.
    """
    done = done_records(out)
    records = [done[key] for key in order if key in done]
    missing = [key for key in order if key not in done]
    with atomic_path(Path(out) / RESULTS_FILE) as tmp:
        tmp.write_bytes(encode_records(records))
    return records, missing


def check_manifest(out: Path, settings: dict, *, write: bool) -> None:
    """Refuse to continue a run in ``out`` made with other settings; ``write``: record them if new.

    Raises:
        InputError: naming the settings that differ.
    """
    path = Path(out) / MANIFEST_FILE
    if not path.exists():
        if write:
            write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"--out: {path} cannot be read ({err}); delete it or pass another --out") from None
    if not isinstance(stored, dict):
        raise InputError(f"--out: {path} is not a run manifest; delete it or pass another --out")
    changed = sorted(key for key in set(stored) | set(settings) if stored.get(key) != settings.get(key))
    if changed:
        raise InputError(f"--out {out} holds a run with other settings ({', '.join(changed)}); a restart must use "
                         "the same ones: pass them again, or another --out for a new run")
