"""Server-side state shared by all browser sessions: the model and a cache of captures.

Context:
    Nothing here is per user. What a user is looking at (prompt, metric, head, edits) lives in
    the browser (``dcc.Store`` and the widgets' own values) and arrives with every callback;
    the server keeps only what is expensive and identical for everyone: the loaded model and
    captures keyed by everything that determines them.

    The model loads on a background thread so the page is served at once and callbacks answer
    "loading" instead of waiting. The server process runs only short forwards (at most
    ``settings.sync_tokens`` tokens, one at a time, :meth:`.workbench.Workbench.compute_here`);
    other captures run in background jobs (:mod:`.jobs`), each a process forked from the server with its own
    copy-on-write copy of the model, so one job's edits are invisible to every other job and no
    job waits for another. A job writes its capture to the :class:`RecordStore` (a folder of
    safetensors records); the server reads it from there into its :class:`LRUCache`.

    :attr:`ModelHolder.lock` still serialises forwards *within one process* (a job, or a script
    that drives a :class:`~.workbench.Workbench` directly); a server thread takes it only while
    holding the job manager's fork lock, so a job never inherits it held.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, Hashable, TypeVar

from probe.capture.record import AttentionRecord
from probe.models import LoadedModel, load_model

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelNotReady(RuntimeError):
    """The model is still loading, or failed to load; the message says which."""


@dataclass(frozen=True)
class ModelStatus:
    """``state`` is ``"loading"``, ``"ready"`` or ``"failed"``; ``message`` is for the user."""

    state: str
    message: str


class ModelHolder:
    """One model, loaded once on a background thread; callers never wait for it."""

    def __init__(self, name: str, loader: Callable[[str], LoadedModel] = load_model):
        self.name = name
        self._loader = loader
        self._model: LoadedModel | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._load, name=f"load-{name}", daemon=True)
        self.lock = threading.Lock()  # one forward at a time within a process (see module docstring)

    def start(self) -> "ModelHolder":
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> ModelStatus:
        """Block until loading ends (for scripts and tests, never in callbacks)."""
        self._thread.join(timeout)
        return self.status

    def _load(self) -> None:
        try:
            self._model = self._loader(self.name)
        except Exception as err:  # noqa: BLE001 - any failure is reported in the page
            log.exception("loading model %s failed", self.name)
            self._error = f"{type(err).__name__}: {err}"

    @property
    def status(self) -> ModelStatus:
        if self._model is not None:
            g = self._model.geometry
            return ModelStatus("ready", f"model {self.name}: {g.n_layers} layers x {g.n_heads} heads")
        if self._error is not None:
            return ModelStatus("failed", f"model {self.name} failed to load: {self._error}")
        return ModelStatus("loading", f"loading model {self.name}…")

    def get(self) -> LoadedModel:
        """The model, or :class:`ModelNotReady` at once if it is not loaded."""
        if self._model is None:
            raise ModelNotReady(self.status.message)
        return self._model


class LRUCache(Generic[T]):
    """A thread-safe least-recently-used cache with a fixed number of entries."""

    def __init__(self, entries: int):
        self.entries = entries
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], T], guard: threading.Lock) -> T:
        """The cached value, or ``compute()`` run under ``guard`` and stored.

        A request that waited on ``guard`` looks again first: another request for the same key
        may have filled the entry meanwhile (counted as neither hit nor miss).
        """
        value = self.get(key)
        if value is not None:
            return value
        with guard:
            with self._lock:
                value = self._items.get(key)
            if value is None:
                value = compute()
                self.put(key, value)
        return value

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class RecordStore:
    """Captures on disk, keyed by anything hashable with a stable ``repr``; shared by processes.

    Background jobs write here and the server reads, so a capture crosses from a job to the
    server as one safetensors file (no pickle). Writes are atomic (:meth:`AttentionRecord.save`
    writes a temporary file and renames it): a reader sees a whole record or none. The folder
    keeps the ``entries`` most recently written records.
    """

    def __init__(self, folder: str | os.PathLike, entries: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entries = entries

    def path(self, key: Hashable) -> Path:
        return self.folder / f"{hashlib.sha256(repr(key).encode()).hexdigest()[:32]}.safetensors"

    def __contains__(self, key: Hashable) -> bool:
        return self.path(key).exists()

    def get(self, key: Hashable) -> AttentionRecord | None:
        path = self.path(key)
        try:
            return AttentionRecord.load(path)
        except ValueError:
            if path.exists():
                raise
            return None  # not written yet, or pruned

    def put(self, key: Hashable, record: AttentionRecord) -> None:
        record.save(self.path(key))
        self._prune()

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.safetensors"), key=_mtime, reverse=True)
        for stale in files[self.entries:]:
            stale.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
