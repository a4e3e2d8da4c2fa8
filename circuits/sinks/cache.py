"""A JSON-lines result cache that survives being killed: one complete line per finished unit.

Each record is written with a single ``write`` of one line followed by ``flush`` and ``fsync``,
so a kill leaves at most one partial last line (no newline after it). That line is tolerated
when reading and dropped before the next append (a record cut just before its newline is
complete JSON and is kept). The first line is a header; resuming with a different header is
refused, since the cached results would answer another question. Any other line that is not a
JSON object, or a first line that is not a header, means the file is not such a cache: it is
refused at once and left untouched, rather than appended to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HEADER_START = '{"kind": "header"'
"""How every header line starts (records are written with sorted keys)."""

FIX = "delete it or pass another --cache"


class CacheMismatch(ValueError):
    """The cache file was written for other settings."""


class CacheCorrupt(ValueError):
    """The file is not a cache this code wrote: a line that is not JSON, or no header first."""


def check_cache_file(path: Path) -> list[dict]:
    """The complete records of ``path`` (none if missing or blank), header first.

    Raises:
        CacheCorrupt: a complete line that is not a JSON object, a first line that is not a
            header, or an unterminated lone line that cannot be the start of one.
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CacheCorrupt(f"cannot read cache {path} ({err}); {FIX}") from err
    if not text.strip():
        return []
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # tail: "" after a final newline, else an unterminated line
    records = [_record(path, number, line) for number, line in enumerate(complete, start=1)]
    if tail and (last := _parsed(tail)) is not None:
        records.append(last)  # cut just before its newline: the record is whole
    elif tail and not records and not (tail.startswith(HEADER_START) or HEADER_START.startswith(tail)):
        raise CacheCorrupt(f"cache {path} holds no header line: it is not a head-search cache; {FIX}")
    if records and records[0].get("kind") != "header":
        raise CacheCorrupt(f"cache {path} does not start with a header line: it is not a head-search cache; {FIX}")
    return records


def read_cache(path: Path, header: dict) -> list[dict]:
    """Records already in ``path`` (none if missing); raises if its header differs or it is not a cache."""
    records = check_cache_file(path)
    if not records:
        return []
    if records[0].get("settings") != header:
        raise CacheMismatch(f"cache {path} was written for other settings ({records[0].get('settings')}); {FIX}")
    return records[1:]


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line durably (after dropping a partial last line a kill left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    repair_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def start_cache(path: Path, header: dict) -> list[dict]:
    """Open (or create) the cache and return the records already done."""
    done = read_cache(path, header)
    repair_tail(path)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        append_record(path, {"kind": "header", "settings": header})
    return done


def repair_tail(path: Path) -> None:
    """End ``path`` with a newline: seal a last line that is whole JSON, drop one that was cut short."""
    if not path.exists() or _ends_with_newline(path):
        return
    data = path.read_bytes()
    kept, newline, tail = data.rpartition(b"\n")
    if _parsed(tail.decode("utf-8", errors="replace")) is not None:
        with open(path, "ab") as handle:
            handle.write(b"\n")
    else:
        with open(path, "r+b") as handle:
            handle.truncate(len(kept) + len(newline))


def _record(path: Path, number: int, line: str) -> dict:
    record = _parsed(line)
    if record is None:
        raise CacheCorrupt(f"cache {path} line {number} is not a JSON object: it is not a head-search cache; {FIX}")
    return record


def _parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return True  # empty: nothing to repair
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
