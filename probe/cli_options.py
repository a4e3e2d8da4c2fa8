"""Argument types and path checks shared by the ``headscope`` subcommands.

Context:
    Every subcommand's parser is built on each ``headscope`` call, ``--help`` included, so this
    module imports only the standard library. Counts are checked by argparse ``type=`` functions,
    so nonsense fails at parse time with the option's name; output paths are checked by
    :func:`check_output_path` before a command loads a model, so a path that cannot be written
    is reported in a second rather than after the whole run.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path


class UsageError(ValueError):
    """An error the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class LazyCommand:
    """A subcommand's run function, named by module and function and imported when it runs.

    Attributes:
        module: the module that defines it (``"circuits.sinks.cli"``).
        function: its name there (``"run_sinks"``).
    """

    module: str
    function: str

    def __call__(self, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(self.module), self.function)(args)


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1 (a count, a size, a limit)."""
    value = _parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (a count where 0 means none, or a limit where 0 means off)."""
    value = _parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0 (a temperature, a threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text!r}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    value = _parse_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers (``0,5,29``)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def check_output_path(path: Path, option: str = "--out", *, stem: bool = False) -> None:
    """Raise :class:`UsageError` unless files can be written at ``path``.

    Missing parent folders are fine (writers create them) as long as the nearest existing one
    is a folder that takes new files; that is tried by creating and removing a temporary file.

    Args:
        path: the file to write, or with ``stem`` the stem that suffixes are added to.
        option: the option that named ``path``, for the message.
        stem: ``path`` is a stem (``rec`` for ``rec.safetensors``), so it may name a folder.
    """
    path = Path(path)
    if not stem and path.is_dir():
        raise UsageError(f"{option}: {path} is a folder, not a file; pass a file path such as {path / 'results.jsonl'}")
    folder = nearest_existing(path.parent)
    if not folder.is_dir():
        raise UsageError(f"{option}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=".headscope-check-", dir=folder):
            pass
    except OSError as err:
        raise UsageError(f"{option}: cannot write in {folder} ({err.strerror or err}); "
                         "pass a path in a folder you can write to") from None


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
