"""From what a session asks for (a prompt or a saved record, and edits) to records and views.

Context:
    :class:`Workbench` is the only place that touches the model. Callbacks hand it a
    :class:`Source` and :class:`~.settings.EditSettings` read from the browser and get back a
    :class:`View` (a record and the prompt's index in it). Captures are cached per
    (model, prompt, capture mode, edits): moving between heads or metrics costs no forward.

    Prompts up to ``settings.long_input_tokens`` tokens are captured in pattern mode (full
    matrices, every layer); longer ones in statistics mode, whose per-key and per-query
    reductions feed the summary views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probe.capture import AttentionRecord, CaptureConfig, InputError, capture
from probe.edits import apply_edits

from apps.heads_dashboard.settings import DashboardSettings, EditSettings
from apps.heads_dashboard.state import LRUCache, ModelHolder, ModelNotReady


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

    def __init__(self, settings: DashboardSettings, holder: ModelHolder | None, record: AttentionRecord | None = None):
        self.settings = settings
        self.holder = holder
        self.saved = record
        self.cache: LRUCache[AttentionRecord] = LRUCache(settings.cache_entries)

    def view(self, source: Source, edits: EditSettings = EditSettings()) -> View:
        """The record for ``source`` with ``edits`` applied (InputError on bad input)."""
        if source.prompt is not None:
            return View(self._live(source.prompt, edits))
        if source.record_prompt is not None:
            return self._saved(source.record_prompt, edits)
        raise InputError("type a prompt and press Run")

    def _saved(self, index: int, edits: EditSettings) -> View:
        if self.saved is None or not 0 <= index < self.saved.batch_size:
            raise InputError(f"the saved record has no prompt {index}")
        if not edits.is_empty:
            raise InputError("edits need a live prompt: type the prompt in the box and press Run")
        return View(self.saved, prompt=index, live=False)

    def _live(self, prompt: str, edits: EditSettings) -> AttentionRecord:
        if not prompt.strip():
            raise InputError("the prompt is empty; type some text")
        if self.holder is None:
            raise ModelNotReady("this dashboard runs without a model; pick a prompt of the saved record")
        model = self.holder.get()
        geometry = model.geometry
        edits.check(geometry.n_layers, geometry.n_heads)
        n_tokens = len(model.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        mode = "stats" if n_tokens > self.settings.long_input_tokens else "pattern"
        key = (model.name, prompt, mode, edits)
        return self.cache.get_or_compute(key, lambda: self._capture(model, prompt, mode, edits), self.holder.lock)

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


def _probabilities(view: View) -> torch.Tensor:
    logits = view.record.last_logits
    if logits is None:
        raise InputError("this record has no logits")
    return logits[view.prompt].float().softmax(dim=-1)
