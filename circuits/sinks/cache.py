"""A JSON-lines result cache that survives being killed: one complete line per finished unit.

Each record is written with a single ``write`` of one line followed by ``flush`` and ``fsync``,
so a kill leaves at most one partial last line, which :func:`read_cache` ignores. The first line
is a header; resuming with a different header is refused, since the cached results would answer
another question.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class CacheMismatch(ValueError):
    """The cache file was written for other settings."""


def read_cache(path: Path, header: dict) -> list[dict]:
    """Records already in ``path`` (none if missing); raises if its header differs."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    if not records:
        return []
    if records[0].get("kind") != "header" or records[0].get("settings") != header:
        raise CacheMismatch(
            f"cache {path} was written for other settings ({records[0].get('settings')}); "
            "delete it or pass another cache path"
        )
    return records[1:]


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        if handle.tell() and not _ends_with_newline(path):
            handle.write("\n")  # seal a line a kill left unfinished
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def start_cache(path: Path, header: dict) -> list[dict]:
    """Open (or create) the cache and return the records already done."""
    done = read_cache(path, header)
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        append_record(path, {"kind": "header", "settings": header})
    return done


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
