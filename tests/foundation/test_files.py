"""Atomic writes: the target changes only when the whole write succeeded."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from probe.files import atomic_path, terminate_as_exit, write_text_atomic


def test_atomic_path_replaces_the_target_only_at_the_end(tmp_path):
    target = tmp_path / "deep" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert tmp.parent == target.parent and not target.exists()
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# --- permissions, stale temporaries, SIGTERM ---------------------------------------------------

REPO = Path(__file__).resolve().parents[2]

TERMINATED_WRITER = """
import sys, time
from pathlib import Path
from probe.files import atomic_path, terminate_as_exit
target, marker = Path(sys.argv[1]), Path(sys.argv[2])
with terminate_as_exit(), atomic_path(target) as tmp:
    tmp.write_text("half")
    marker.write_text("ready")
    time.sleep(120)
"""


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait(timeout=60)
    return child.pid


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_file_gets_the_mode_a_plain_open_would_give(tmp_path, mask, mode):
    with umask(mask):
        written = write_text_atomic(tmp_path / "out.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE(written.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode


def test_the_mode_holds_when_the_writer_replaces_the_temporary(tmp_path):
    """safetensors' save_file writes a new file of mode 0600 over the path it is given."""
    with umask(0o022):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.unlink()
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o644


def test_the_temporary_names_its_writer(tmp_path):
    with atomic_path(tmp_path / "out.txt") as tmp:
        assert tmp.name.startswith(f".out.txt.{os.getpid()}.") and tmp.name.endswith(".tmp")


def test_a_write_removes_temporaries_of_dead_writers_and_keeps_live_ones(tmp_path):
    dead = tmp_path / f".rec.safetensors.{dead_pid()}.0a1b2c3d.tmp"
    live = tmp_path / f".rec.safetensors.{os.getpid()}.4e5f6a7b.tmp"
    other_target = tmp_path / f".other.safetensors.{dead_pid()}.0a1b2c3d.tmp"
    for path in (dead, live, other_target):
        path.write_bytes(b"left by a killed save")
    write_text_atomic(tmp_path / "rec.safetensors", "new")
    assert not dead.exists(), "a dead writer's temporary must be removed"
    assert live.exists(), "a live writer's temporary must be kept"
    assert other_target.exists(), "only the temporaries of the same target are touched"


def test_terminate_as_exit_installs_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with terminate_as_exit():
        assert signal.getsignal(signal.SIGTERM) is not before
        with pytest.raises(SystemExit) as stop:
            signal.raise_signal(signal.SIGTERM)
        assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_terminate_as_exit_is_a_no_op_off_the_main_thread():
    before, seen = signal.getsignal(signal.SIGTERM), []

    def body():
        with terminate_as_exit():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(timeout=30)
    assert seen == [before]


def test_a_terminated_write_leaves_no_temporary(tmp_path):
    out, marker = tmp_path / "out", tmp_path / "ready"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", TERMINATED_WRITER, str(out / "rec.safetensors"), str(marker)],
                              cwd=REPO)
    try:
        assert wait_until(marker.exists, 120), "the writer never reached its write"
        assert [p.name for p in out.iterdir()] != [], "the temporary should exist while writing"
        writer.send_signal(signal.SIGTERM)
        code = writer.wait(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=60)
    assert code == 128 + signal.SIGTERM
    assert [p.name for p in out.iterdir()] == []
