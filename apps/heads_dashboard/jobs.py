"""Background jobs: Dash's ``DiskcacheManager``, one forked process per job, and what a job does first.

Context:
    Long work (a capture, an edited capture, a panel's analysis) runs as a Dash background
    callback (``background=True``). Dash's :class:`~dash.DiskcacheManager` starts each job as a
    process forked from the server (``multiprocess.Process``, fork on Linux) and keeps results,
    progress and cancel state in a :mod:`diskcache` folder. Forking gives each job the loaded
    model without reloading it (copy-on-write: the weights are shared until written, and nothing
    writes them), and its own copy of everything a ``with apply_edits(...)`` block installs, so
    jobs of different sessions run side by side and never see each other's edits. Dash kills a
    job's process on Cancel (``cancel=``) and when the same page starts the same callback again.

    Two things are added here:

    - :func:`start_job`, which every background callback calls first: it sets the job's torch
      threads (``settings.job_threads``; a forked child must not reuse the parent's OpenMP pool)
      and starts a watchdog thread that ends the job when no page has asked about it for
      ``settings.abandon_after_s`` (the page was closed: Dash itself does not cancel on unload);
    - :class:`JobManager`, a ``DiskcacheManager`` that notes the time of each poll for that
      watchdog.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import diskcache
import torch
from dash import DiskcacheManager

POLLED = "headscope-polled-{job}"
"""Diskcache key: when a page last asked about job ``job`` (its pid)."""


class JobManager(DiskcacheManager):
    """Dash's disk-cache manager, noting when each job was last polled.

    Args:
        folder: the diskcache folder (results, progress and poll times).
        expire: seconds after which an unread result or poll time is dropped.
    """

    def __init__(self, folder: str | os.PathLike, expire: float = 3600.0):
        self.folder = Path(folder)
        self.fork_lock = threading.Lock()
        """Held while a job is forked; the server's short in-process captures hold it too
        (:meth:`.workbench.Workbench.compute_here`), so no job is forked in the middle of one
        (it would inherit the model with that capture's hooks or edits installed)."""
        super().__init__(diskcache.Cache(str(self.folder)), expire=expire)

    def call_job_fn(self, key, job_fn, args, context):
        with self.fork_lock:
            pid = super().call_job_fn(key, job_fn, args, context)
        self.note_poll(pid)
        return pid

    def get_result(self, key, job):
        if job:
            self.note_poll(job)
        return super().get_result(key, job)

    def note_poll(self, job) -> None:
        self.handle.set(POLLED.format(job=int(job)), time.time(), expire=self.expire)

    def progress(self, key) -> list | None:
        """The job's last progress values, left in place for the page to read."""
        return self.handle.get(self._make_progress_key(key))

    def last_poll(self, job: int) -> float | None:
        return self.handle.get(POLLED.format(job=int(job)))


def new_job_folder() -> Path:
    """A fresh folder for one server's job state and captures (removed by the OS's tmp cleaning)."""
    return Path(tempfile.mkdtemp(prefix="headscope-dashboard-"))


def start_job(manager: JobManager, threads: int, abandon_after_s: float, check_every_s: float = 0.5) -> None:
    """Prepare the current (forked) job process: torch threads, and the abandoned-job watchdog."""
    torch.set_num_threads(threads)
    pid = os.getpid()

    def watch() -> None:
        while True:
            time.sleep(check_every_s)
            polled = manager.last_poll(pid)
            if polled is None or time.time() - polled > abandon_after_s:
                os._exit(0)  # nobody will read the result; end without writing one

    threading.Thread(target=watch, name="abandoned-job-watchdog", daemon=True).start()
