"""``headscope vlm eval`` as separate processes: killed with SIGKILL and restarted, and under torchrun.

Both compare against one uninterrupted single-process run of the same fixture: the merged
``results.jsonl`` must be byte-identical and ``summary.json`` equal. The test answerer
(``fake-hash``) makes the answers a pure function of image, prompt and condition, so any lost,
repeated or misplaced record shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe.cli import main
from tests.hallucination.eval_fixtures import write_fixture
from tests.helpers import REPO

TOTAL = 46


def count_lines(folder: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in folder.glob("shards/*.jsonl"))


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children first found, then theirs), from ``/proc``."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The fixture and one uninterrupted single-process run of it."""
    root = tmp_path_factory.mktemp("eval")
    fixture = write_fixture(root / "set")
    assert main(fixture.argv(root / "reference")) == 0
    return fixture, root / "reference"


def assert_same_results(out: Path, reference: Path) -> None:
    assert (out / "results.jsonl").read_bytes() == (reference / "results.jsonl").read_bytes()
    assert json.loads((out / "summary.json").read_text()) == json.loads((reference / "summary.json").read_text())


def test_killed_run_restarted_equals_an_uninterrupted_one(reference, tmp_path):
    fixture, expected = reference
    out = tmp_path / "out"
    command = [sys.executable, "-m", "probe.cli", *fixture.argv(out, answerer="fake-hash-slow", batch_size=2)]
    process = subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while count_lines(out) < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    cut = count_lines(out)
    assert 10 <= cut < TOTAL, f"the run was not cut mid-way ({cut} of {TOTAL} records)"
    assert not (out / "results.jsonl").exists()
    with open(out / "shards" / "rank000-of-001.jsonl", "ab") as shard:
        shard.write(b'{"condition": "act", "item_id": "pope/fi')  # as if killed inside a write
    done = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"{cut} records done before" in done.stdout
    assert_same_results(out, expected)
    keys = [(r["condition"], r["item_id"]) for r in map(json.loads, (out / "shards" / "rank000-of-001.jsonl")
                                                       .read_text().splitlines())]
    assert len(keys) == len(set(keys)) == TOTAL


@pytest.mark.parametrize("processes", [1, 2])
def test_torchrun_gives_the_results_of_one_process(reference, tmp_path, processes):
    fixture, expected = reference
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "probe.cli", *fixture.argv(out)]
    done = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = sorted(path.name for path in (out / "shards").iterdir())
    assert shards == [f"rank{r:03d}-of-{processes:03d}.jsonl" for r in range(processes)]
    assert_same_results(out, expected)
    assert done.stdout.count("saved ") == 1  # rank 0 alone merges and reports


def test_a_killed_torchrun_run_is_finished_by_one_process(reference, tmp_path):
    """Two processes killed together mid-run (the launcher and its workers, SIGKILL), then one process
    finishes: it reads both shards of the killed run and answers only what they lack."""
    fixture, expected = reference
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "probe.cli", *fixture.argv(out, answerer="fake-hash-slow", batch_size=2)]
    process = subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while count_lines(out) < 12 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in [*descendants(process.pid), process.pid]:  # torchrun starts its workers in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    cut = count_lines(out)
    assert 12 <= cut < TOTAL and len(list((out / "shards").glob("*-of-002.jsonl"))) == 2
    restart = [sys.executable, "-m", "probe.cli", *fixture.argv(out, answerer="fake-hash-slow", batch_size=2)]
    done = subprocess.run(restart, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert_same_results(out, expected)
    assert count_lines(out) == TOTAL  # nothing answered twice across the three shard files
