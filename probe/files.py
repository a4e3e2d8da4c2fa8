"""Files written whole or not at all: results that a crash or an error must not leave half-written.

Context:
    :func:`atomic_path` hands out a temporary path beside the target and renames it over the
    target only when the write succeeded. The temporary is created with the mode a plain
    ``open(path, "w")`` would give (``0o666`` less the umask) and is named
    ``.NAME.<pid>.<random>.tmp`` after its writer, so a later write to the same target removes
    the temporaries of writers that died (``kill -9``, power loss) instead of leaving them behind.
    A ``SIGTERM`` normally kills Python without running any cleanup; inside
    :func:`terminate_as_exit` it raises :class:`SystemExit` instead, so the temporary is removed.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; it replaces ``target`` when the block ends.

    If the block raises (``SystemExit`` and ``KeyboardInterrupt`` included), the temporary file is
    removed and ``target`` keeps its old content (or stays absent), so a reader never sees half a
    file. Parent folders are created; temporaries of the same target left by dead writers are
    removed first. The final file has the mode a plain ``open(target, "w")`` would give, even
    when the writer replaced the temporary by a file of its own.

    Example:
        >>> with atomic_path("out/report.jsonl") as tmp:
        ...     tmp.write_text("...")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(target)
    tmp = create_temporary(target)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        yield tmp
        os.chmod(tmp, mode)  # a writer that replaced the file (safetensors does) made it 0600
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` through :func:`atomic_path`; returns ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def create_temporary(target: Path) -> Path:
    """Create an empty ``.NAME.<pid>.<random>.tmp`` beside ``target``, mode ``0o666`` less the umask."""
    while True:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another writer drew the same name: draw again
        os.close(fd)
        return tmp


def remove_dead_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` whose writer process no longer exists; returns them."""
    removed = []
    for tmp in target.parent.glob(f".{_glob_escape(target.name)}.*{TEMPORARY_SUFFIX}"):
        pid = writer_pid(tmp, target)
        if pid is not None and not process_alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def writer_pid(tmp: Path, target: Path) -> int | None:
    """The pid in a temporary's name ``.NAME.<pid>.<random>.tmp``, or None if it is not one of ours."""
    middle = tmp.name[len(target.name) + 2 : -len(TEMPORARY_SUFFIX)]
    pid, dot, token = middle.partition(".")
    if not (dot and pid.isdigit() and token.isalnum()):
        return None
    return int(pid)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: it exists but is not ours
    return True


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Inside the block, ``SIGTERM`` raises ``SystemExit(143)`` so ``finally``/``except`` cleanups run.

    Python's default ``SIGTERM`` action kills the process at once, leaving the temporaries of
    :func:`atomic_path` behind. Signal handlers can only be set from the main thread; elsewhere
    this does nothing. The previous handler is restored on exit.

    Example:
        >>> with terminate_as_exit():
        ...     record.save("rec")    # a `kill PID` now removes the half-written temporary
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _exit_on_terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
