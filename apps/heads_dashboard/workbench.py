"""From what a session asks for (a prompt or a saved record, and edits) to records and views.

Context:
    :class:`Workbench` is the only place that touches the model. Callbacks hand it a
    :class:`Source` and :class:`~.settings.EditSettings` read from the browser and get back a
    :class:`View` (a record and the prompt's index in it). Captures are cached per
    (model, prompt, capture mode, edits): moving between heads or metrics costs no forward.

    In the app the work is split three ways (see :mod:`.jobs`): :meth:`Workbench.plan` checks a
    request in the server before anything is queued (empty prompt, too many tokens, heads that
    do not exist); :meth:`Workbench.compute` runs in a background job and writes the captures
    to the :class:`~.state.RecordStore`; :meth:`Workbench.cached_view` serves views from memory
    or that store and never runs the model (:class:`NotCaptured` if the capture is not there).
    :meth:`Workbench.view` does all three in the calling process, for scripts and tests.

    Prompts up to ``settings.long_input_tokens`` tokens are captured in pattern mode (full
    matrices, every layer); longer ones in statistics mode, whose per-key and per-query
    reductions feed the summary views.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator

import torch

from probe.capture import AttentionRecord, CaptureConfig, InputError, capture
from probe.edits import apply_edits
from probe.models import LoadedModel
from probe.models.families import family_of

from apps.heads_dashboard.jobs import JobManager, start_job
from apps.heads_dashboard.settings import DashboardSettings, EditSettings
from apps.heads_dashboard.state import LRUCache, ModelHolder, ModelNotReady, RecordStore

Progress = Callable[[str], None]


class NotCaptured(LookupError):
    """The capture a view needs is neither in memory nor in the record store (press Run)."""


@dataclass(frozen=True)
class Plan:
    """A checked live request: what to capture and the cache keys of its records.

    Attributes:
        prompt: the prompt text.
        n_tokens: its length in tokens (with special tokens).
        mode: ``"pattern"`` (full patterns) or ``"stats"`` (long input: summaries).
        edits: the edits (empty: the plain capture only).
    """

    model: str
    prompt: str
    n_tokens: int
    mode: str
    edits: EditSettings = EditSettings()

    def key(self, edits: EditSettings | None = None) -> Hashable:
        return (self.model, self.prompt, self.mode, self.edits if edits is None else edits)

    @property
    def keys(self) -> list[Hashable]:
        """The plain capture's key, then the edited one's when there are edits."""
        return [self.key(EditSettings())] + ([self.key()] if not self.edits.is_empty else [])


@dataclass(frozen=True)
class Source:
    """What a browser session looks at: a typed prompt, or one prompt of the saved record."""

    prompt: str | None = None
    record_prompt: int | None = None

    def to_store(self) -> dict:
        return {"prompt": self.prompt, "record_prompt": self.record_prompt}

    @classmethod
    def from_store(cls, data: dict | None) -> "Source":
        data = data or {}
        return cls(prompt=data.get("prompt"), record_prompt=data.get("record_prompt"))

    @property
    def is_empty(self) -> bool:
        return self.prompt is None and self.record_prompt is None


@dataclass(frozen=True)
class View:
    """A record and which of its prompts a session is looking at.

    Attributes:
        record: the capture (live or loaded from disk).
        prompt: index of the prompt in ``record``.
        live: True when it came from the model (so edits and next-token decoding work).
    """

    record: AttentionRecord
    prompt: int = 0
    live: bool = True

    @property
    def tokens(self) -> list[str]:
        return self.record.tokens[self.prompt]

    @property
    def is_summary(self) -> bool:
        """No full patterns (a long input): show per-key and per-query summaries."""
        return not self.record.patterns


@dataclass(frozen=True)
class NextTokens:
    """Next-token probabilities before and after an edit, over the union of both top-k sets."""

    tokens: list[str]
    before: list[float]
    after: list[float]


class Workbench:
    """Runs prompts through the model (cached) and serves saved records."""

    def __init__(self, settings: DashboardSettings, holder: ModelHolder | None, record: AttentionRecord | None = None,
                 store: RecordStore | None = None, jobs: JobManager | None = None):
        self.settings = settings
        self.holder = holder
        self.saved = record
        self.store = store
        self.jobs = jobs
        self.cache: LRUCache[AttentionRecord] = LRUCache(settings.cache_entries)

    def view(self, source: Source, edits: EditSettings = EditSettings()) -> View:
        """The record for ``source`` with ``edits`` applied, computed here if needed (InputError on bad input)."""
        if source.prompt is None:
            return self._source_view(source, edits)
        plan = self.plan(source, edits)
        with self.holder.lock:
            self.compute(plan)
        return self.cached_view(source, edits)

    def runs_here(self, plan: Plan) -> bool:
        """Whether ``plan`` is short enough to capture in the server (``settings.sync_tokens``)
        rather than in a job; only in the app (with a job manager, whose fork lock it takes)."""
        return self.jobs is not None and plan.n_tokens <= self.settings.sync_tokens

    def compute_here(self, plan: Plan) -> None:
        """Capture a short ``plan`` in this process under the job manager's fork lock: short
        requests run one at a time (each waits for at most one other short forward) and no job is
        forked while the model carries this capture's hooks or edits.

        The forward runs on one torch thread, as jobs do: on this 2-core box with another process busy,
        a 69-token SmolLM2 capture took 6 to 11 s on two OpenMP threads and 0.3 s on one (and a
        server that ran multi-threaded OpenMP regions would hang jobs forked later with more
        than one thread, :mod:`.jobs`)."""
        torch.set_num_threads(1)  # this request thread's OpenMP setting
        with self.jobs.fork_lock, self.holder.lock:
            self.compute(plan)

    def enter_job(self) -> None:
        """Call first in every background callback (it runs in a forked process; see :mod:`.jobs`)."""
        if self.jobs is None:
            torch.set_num_threads(self.settings.job_threads)
        else:
            start_job(self.jobs, self.settings.job_threads, self.settings.abandon_after_s)

    def plan(self, source: Source, edits: EditSettings = EditSettings()) -> Plan:
        """Check a live request without running the model: the prompt's length against the
        model's context and ``settings.max_prompt_tokens``, the edits' heads against the model.
        Raises :class:`InputError` or :class:`ModelNotReady` with the message for the user."""
        if source.prompt is None:
            raise InputError("edits need a live prompt: type the prompt in the box and press Run")
        prompt = source.prompt
        if not prompt.strip():
            raise InputError("the prompt is empty; type some text")
        model = self._model()
        geometry = model.geometry
        edits.check(geometry.n_layers, geometry.n_heads)
        n_tokens = len(model.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        context = geometry.context_length
        if context is not None and n_tokens > context:
            raise InputError(f"the prompt has {n_tokens} tokens, longer than the model's context window of {context}; "
                             "shorten it")
        if n_tokens > self.settings.max_prompt_tokens:
            raise InputError(f"the prompt has {n_tokens} tokens; this dashboard captures at most "
                             f"{self.settings.max_prompt_tokens} (--max-prompt-tokens); shorten it")
        mode = "stats" if n_tokens > self.settings.long_input_tokens else "pattern"
        return Plan(model.name, prompt, n_tokens, mode, edits)

    def is_cached(self, plan: Plan) -> bool:
        """Every record ``plan`` needs is in memory or in the store (no job needed)."""
        return all(key in self.cache or (self.store is not None and key in self.store) for key in plan.keys)

    def cached_view(self, source: Source, edits: EditSettings = EditSettings()) -> View:
        """The view from memory or the record store; :class:`NotCaptured` if it was never captured."""
        if source.prompt is None:
            return self._source_view(source, edits)
        record = self._cached_record(self.plan(source, edits).key())
        if record is None:
            raise NotCaptured("this prompt is not captured yet; press Run")
        return View(record)

    def compute(self, plan: Plan, progress: Progress | None = None) -> None:
        """Capture what ``plan`` needs and is not cached (in a job; the caller holds the model)."""
        model = self._model()
        for edits in [EditSettings(), plan.edits] if not plan.edits.is_empty else [EditSettings()]:
            key = plan.key(edits)
            if self._cached_record(key) is not None:
                continue
            what = f"capturing {plan.n_tokens} tokens" + ("" if edits.is_empty else f" under {edits.describe()}")
            with _layer_progress(model, what, progress):
                record = self._capture(model, plan.prompt, plan.mode, edits)
            self.cache.put(key, record)
            if self.store is not None:
                self.store.put(key, record)

    def keep(self, key: Hashable, record: AttentionRecord) -> None:
        """Store a record computed elsewhere (a data set's capture) in memory and the record store."""
        self.cache.put(key, record)
        if self.store is not None:
            self.store.put(key, record)

    def cached_record(self, key: Hashable) -> AttentionRecord | None:
        """The record stored under ``key`` (memory, then the record store), or None."""
        return self._cached_record(key)

    def _cached_record(self, key: Hashable) -> AttentionRecord | None:
        record = self.cache.get(key)
        if record is None and self.store is not None:
            record = self.store.get(key)
            if record is not None:
                self.cache.put(key, record)
        return record

    def _model(self) -> LoadedModel:
        if self.holder is None:
            raise ModelNotReady("this dashboard runs without a model; pick a prompt of the saved record")
        return self.holder.get()

    def _source_view(self, source: Source, edits: EditSettings) -> View:
        if source.record_prompt is not None:
            return self._saved(source.record_prompt, edits)
        raise InputError("type a prompt and press Run")

    def _saved(self, index: int, edits: EditSettings) -> View:
        if self.saved is None or not 0 <= index < self.saved.batch_size:
            raise InputError(f"the saved record has no prompt {index}")
        if not edits.is_empty:
            raise InputError("edits need a live prompt: type the prompt in the box and press Run")
        return View(self.saved, prompt=index, live=False)

    @staticmethod
    def _capture(model, prompt: str, mode: str, edits: EditSettings) -> AttentionRecord:
        config = CaptureConfig(mode=mode)
        with torch.no_grad(), apply_edits(model, edits.to_edits(model.geometry.n_layers)):
            return capture(model, prompt, config)

    def next_tokens(self, before: View, after: View) -> NextTokens:
        """Top-``settings.top_tokens`` candidates of either side, ordered by the unedited probability."""
        if not before.live:
            raise InputError("next-token probabilities need a live prompt")
        p_before = _probabilities(before)
        p_after = _probabilities(after)
        k = self.settings.top_tokens
        ids = torch.cat([p_before.topk(k).indices, p_after.topk(k).indices]).unique()
        ids = ids[p_before[ids].argsort(descending=True)]
        tokenizer = self.holder.get().tokenizer
        return NextTokens(
            tokens=[tokenizer.decode([int(i)]) for i in ids],
            before=p_before[ids].tolist(),
            after=p_after[ids].tolist(),
        )


def check_head(view: View, layer: int | None, head: int | None) -> tuple[int, int]:
    """Validate a (layer, head) chosen in the UI against the record; InputError says the range."""
    if layer is None or head is None:
        raise InputError("click a head in the heatmap, or type its layer and head")
    layers = view.record.layers
    if layer not in layers:
        raise InputError(f"layer {layer} does not exist: recorded layers are {layers[0]}..{layers[-1]}")
    n_heads = view.record.n_heads
    if not 0 <= head < n_heads:
        raise InputError(f"head {head} does not exist: each layer has {n_heads} heads (0..{n_heads - 1})")
    return int(layer), int(head)


PROGRESS_EVERY_S = 0.25
"""Least time between two progress reports (each is a write to the job's disk cache, a few ms)."""


@contextlib.contextmanager
def _layer_progress(model: LoadedModel, what: str, progress: Progress | None) -> Iterator[None]:
    """Report ``what: layer i of n`` as decoder layers finish, at most every ``PROGRESS_EVERY_S``
    (nothing if ``progress`` is None)."""
    if progress is None:
        yield
        return
    layers = family_of(model.hf).layers(model.hf)
    progress(f"{what}…")
    last = [time.monotonic()]

    def hook(index: int):
        def report(module, args, output) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                progress(f"{what}: layer {index + 1} of {len(layers)}")

        return report

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _probabilities(view: View) -> torch.Tensor:
    logits = view.record.last_logits
    if logits is None:
        raise InputError("this record has no logits")
    return logits[view.prompt].float().softmax(dim=-1)
