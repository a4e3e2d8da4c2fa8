"""Reading annotation and question files, with one-line errors that name the file, the problem and the fix.

Files may be gzip-compressed (by name ``*.gz`` or by their first bytes). Every failure a user can
cause (a missing file, a folder, gzip garbage, bytes that are not UTF-8, broken JSON) raises
:class:`probe.errors.InputError`, which the command line prints as one ``error:`` line.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Any

from probe.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of ``path`` (decompressed when it is gzip); ``what`` names the file in errors."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; pass the path of an existing file")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; pass the path of a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{what} {path} cannot be read ({err.strerror}); check its permissions") from None
    if path.suffix == ".gz" or data.startswith(GZIP_MAGIC):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{what} {path} is not a readable gzip file ({err}); "
                             "download or copy it again") from None
    return data


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path`` (decompressed when it is gzip)."""
    try:
        return read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {err.start}); "
                         "pass a JSON or text file") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value stored in ``path``."""
    return _parse_json(read_text(path, what), path, what)


def read_json_lines(path: str | os.PathLike, what: str) -> list[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of a JSON-lines file."""
    return _parse_lines(read_text(path, what), path, what)


def json_records(path: str | os.PathLike, what: str) -> list[tuple[int, Any]]:
    """Records of a JSON-lines file, or of a file holding one JSON array (numbered from 1)."""
    text = read_text(path, what)
    if not text.lstrip().startswith("["):
        return _parse_lines(text, path, what)
    values = _parse_json(text, path, what)
    if not isinstance(values, list) or not values:
        raise InputError(f"{what} {path} holds no records; pass a file with at least one record")
    return list(enumerate(values, start=1))


def _parse_json(text: str, path: str | os.PathLike, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{what} {path} is not valid JSON (line {err.lineno}: {err.msg}); "
                         "fix the file or pass another one") from None


def _parse_lines(text: str, path: str | os.PathLike, what: str) -> list[tuple[int, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise InputError(f"{what} {path} line {number} is not valid JSON ({err.msg}); "
                             "each line must hold one JSON object") from None
    if not records:
        raise InputError(f"{what} {path} holds no records; pass a file with one JSON object per line")
    return records
