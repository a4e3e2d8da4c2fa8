"""Background jobs as Dash runs them (``JobManager``, a ``DiskcacheManager``: one forked process per job).

The tiny model is made deliberately slow on long inputs (its forward sleeps first), so a "long
capture" is long without using the CPU; the bounds below are relative to that sleep and generous.
"""

from __future__ import annotations

import time

import pytest

from apps.heads_dashboard import callbacks
from apps.heads_dashboard.jobs import JobManager
from apps.heads_dashboard.settings import DashboardSettings
from apps.heads_dashboard.state import ModelHolder, RecordStore
from apps.heads_dashboard.workbench import NotCaptured, Source, Workbench
from tests.apps.conftest import tiny_model

SLOW_TOKENS, SLOW_SECONDS = 100, 30.0
LONG = "the river ran backwards " * 40
SHORT = "a short prompt"


def _slow_model():
    model = tiny_model("slow-tiny")

    def pause(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] > SLOW_TOKENS:
            time.sleep(SLOW_SECONDS)

    model.hf.register_forward_pre_hook(pause, with_kwargs=True)
    return model


@pytest.fixture
def setup(tmp_path):
    """(workbench, manager, job function) wired as the app wires them."""
    model = _slow_model()
    holder = ModelHolder(model.name, lambda _: model).start()
    assert holder.wait(30).state == "ready"
    manager = JobManager(tmp_path / "jobs")
    bench = Workbench(DashboardSettings(abandon_after_s=2.0), holder, store=RecordStore(tmp_path / "captures", 8),
                      jobs=manager)

    def capture(set_progress, prompt):
        bench.enter_job()
        return callbacks.capture_job(bench, {"prompt": prompt}, set_progress)

    yield bench, manager, manager.make_job_fn(capture, progress=True)
    for key in list(manager.handle):
        if str(key).startswith("headscope-polled-"):
            pid = int(str(key).rsplit("-", 1)[1])
            if manager.job_running(pid):
                manager.terminate_job(pid)


def _start(manager, job_fn, key: str, prompt: str) -> int:
    return manager.call_job_fn(key, job_fn, [prompt], {})


def _wait(condition, seconds: float, poll=lambda: None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        poll()
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_short_capture_does_not_wait_for_a_long_one(setup):
    bench, manager, job_fn = setup
    started = time.monotonic()
    bench.view(Source(prompt="warm up the tokenizer and the model"))
    own_s = time.monotonic() - started  # the short capture's own compute, in this process

    long_pid = _start(manager, job_fn, "long", LONG)
    assert _wait(lambda: "capturing" in str(manager.progress("long")), 10,
                 lambda: manager.note_poll(long_pid)), "the long job never started capturing"
    started = time.monotonic()
    short_pid = _start(manager, job_fn, "short", SHORT)
    polls = lambda: (manager.note_poll(long_pid), manager.note_poll(short_pid))  # noqa: E731 - two pages polling
    assert _wait(lambda: manager.result_ready("short"), SLOW_SECONDS / 2, polls), "the short job waited"
    short_s = time.monotonic() - started
    assert manager.job_running(long_pid) and not manager.result_ready("long")  # still in its slow forward
    assert short_s < own_s + 5.0, f"short job {short_s:.2f} s against {own_s:.2f} s of its own compute"
    assert manager.get_result("short", short_pid) == (Source(prompt=SHORT).to_store(), "")
    assert bench.cached_view(Source(prompt=SHORT)).tokens  # the job's capture reached the server's store


def test_cancel_kills_the_job_and_nothing_is_written(setup):
    bench, manager, job_fn = setup
    pid = _start(manager, job_fn, "long", LONG)
    assert _wait(lambda: manager.progress("long") is not None, 10,
                 lambda: manager.note_poll(pid))
    manager.terminate_job(pid)  # what Dash does on Cancel, and when the same page runs the callback again
    assert not manager.job_running(pid)
    time.sleep(0.5)
    assert not manager.result_ready("long")
    with pytest.raises(NotCaptured):
        bench.cached_view(Source(prompt=LONG))


def test_a_job_no_page_asks_about_ends_itself(setup):
    bench, manager, job_fn = setup
    pid = _start(manager, job_fn, "abandoned", LONG)
    assert _wait(lambda: not manager.job_running(pid), 3 * bench.settings.abandon_after_s + 3), "the job kept running"
    assert not manager.result_ready("abandoned")
