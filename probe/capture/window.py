"""Full attention rows for a window of queries of a long input, never the whole seq x seq pattern.

Context:
    Pattern mode holds ``layers x heads x tokens^2`` floats, so long inputs are captured in
    statistics mode, which keeps per-key and per-query reductions only. To look at the actual
    rows of some queries of a long input (the last 64 tokens of a 4,000-token prompt, say),
    :func:`capture_window` runs one forward in which the recorded layers go through the
    ``"query-window"`` backend: the reference backend computes the layer as usual (chunked over
    queries, O(chunk x keys) memory), then the rows ``start..stop-1`` are computed once more with
    the same edits and kept. Memory is ``layers x heads x (stop - start) x tokens`` floats.

    The rows are those of the forward's own (edited) attention: edits apply through
    :func:`probe.edits.apply_edits` around the call, as for :func:`probe.capture`. ACT's sink
    sets are the ones the full layer found (a window alone would see other column means), and a
    last-row boost (PAINT) applies when the window holds the last query, which is the only row
    it touches.

Example:
    >>> window = capture_window(model, long_prompt, start=-64)        # the last 64 queries
    >>> window.rows[5].shape                                          # [head, 64, tokens]
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from jaxtyping import Float
from torch import Tensor

from probe.attention.backends import register_backend
from probe.attention.hf import AttentionSession, LayerPlan, active_session, attention_modules, use_headscope_attention
from probe.attention.mask import LazyMask
from probe.attention.reference import DEFAULT_CHUNK, reference_attention
from probe.attention.spec import AttentionOutput, KeyScale, LayerEdit, SinkRule, StatRequest
from probe.capture.hf import run_forward
from probe.capture.inputs import InputError, check_layers, tokenize
from probe.edits import apply_edits
from probe.edits.spec import Edit
from probe.models.loading import LoadedModel

WINDOW_BACKEND = "query-window"
WINDOW_STAT = "window_pattern"
WINDOW_BYTES_LIMIT = 2 * 2**30

_WINDOW: ContextVar[tuple[int, int] | None] = ContextVar("headscope_query_window", default=None)


@dataclass(frozen=True)
class QueryWindow:
    """The attention rows of queries ``start..stop-1`` of one prompt.

    Attributes:
        tokens: the prompt's tokens.
        start, stop: the window's first query and one past its last (0 = the first token).
        rows: layer -> ``[head, stop - start, tokens]``; keys after each query are 0.
    """

    tokens: list[str]
    start: int
    stop: int
    rows: dict[int, Float[Tensor, "head w k"]]

    @property
    def layers(self) -> list[int]:
        return sorted(self.rows)

    def row(self, layer: int, head: int, query: int) -> Float[Tensor, " k"]:
        """Query ``query`` (a prompt position inside the window) of one head."""
        if not self.start <= query < self.stop:
            raise InputError(f"query {query} is outside the window {self.start}..{self.stop - 1}; "
                             "capture a window that holds it")
        return self.rows[layer][head, query - self.start]


def window_bounds(start: object, stop: object, n_tokens: int) -> tuple[int, int]:
    """``(start, stop)`` as positions ``0 <= start < stop <= n_tokens`` (negatives count from the end;
    ``stop`` None: to the end), or one InputError."""
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"the window's {name} must be an integer, got {value!r}")
    lo = start + n_tokens if start < 0 else start
    hi = n_tokens if stop is None else (stop + n_tokens if stop < 0 else stop)
    if not 0 <= lo < hi <= n_tokens:
        raise InputError(f"the query window {start}..{stop} is empty or outside the prompt's {n_tokens} tokens; "
                         f"give 0 <= start < stop <= {n_tokens} (negative values count from the end)")
    return lo, hi


def capture_window(model: LoadedModel, prompt: str, start: int, stop: int | None = None, *,
                   layers: Sequence[int] | None = None, edits: Sequence[Edit] = (),
                   chunk_size: int = DEFAULT_CHUNK, bytes_limit: int = WINDOW_BYTES_LIMIT) -> QueryWindow:
    """The full rows of queries ``start..stop-1`` of ``prompt`` for ``layers`` (all by default).

    Raises:
        InputError: a bad prompt or layer, an empty window, or rows over ``bytes_limit``.
    """
    geometry = model.geometry
    chosen = check_layers(None if layers is None else tuple(layers), geometry)
    batch = tokenize(model.tokenizer, prompt, geometry.context_length)
    n_tokens = len(batch.tokens[0])
    lo, hi = window_bounds(start, stop, n_tokens)
    needed = len(chosen) * geometry.n_heads * (hi - lo) * n_tokens * 4
    if needed > bytes_limit:
        raise InputError(f"the window's rows would hold {needed / 2**30:.1f} GiB ({len(chosen)} layers x "
                         f"{geometry.n_heads} heads x {hi - lo} queries x {n_tokens} keys), over the "
                         f"{bytes_limit / 2**30:.1f} GiB limit; choose fewer queries or layers")
    rows: dict[int, Tensor] = {}

    def keep(layer: int, result: AttentionOutput, mask: LazyMask) -> None:
        rows[layer] = result.stats[WINDOW_STAT][0].float().cpu()

    plan = LayerPlan(want=StatRequest(), backend=WINDOW_BACKEND, chunk_size=chunk_size)
    session = AttentionSession(layer_of=attention_modules(model.hf), plans={layer: plan for layer in chosen},
                               on_result=keep)
    with apply_edits(model, list(edits)), use_headscope_attention(model.hf), active_session(session), \
            _window(lo, hi):
        run_forward(model.hf, batch.input_ids, batch.attention_mask)
    return QueryWindow(tokens=batch.tokens[0], start=lo, stop=hi, rows=rows)


@contextlib.contextmanager
def _window(start: int, stop: int) -> Iterator[None]:
    token = _WINDOW.set((start, stop))
    try:
        yield
    finally:
        _WINDOW.reset(token)


def window_attention(query, key, value, mask: LazyMask, *, scaling=None, softcap=None, want=StatRequest(),
                     edit: LayerEdit | None = None, chunk_size: int = DEFAULT_CHUNK) -> AttentionOutput:
    """The reference backend, plus (inside :func:`capture_window`) the window's rows as the
    statistic ``window_pattern`` ``[batch, head, w, keys]``."""
    result = reference_attention(query, key, value, mask, scaling=scaling, softcap=softcap, want=want, edit=edit,
                                 chunk_size=chunk_size)
    window = _WINDOW.get()
    if window is None or mask.q_offset != 0:  # not capturing, or a decode step
        return result
    start, stop = window
    sub_mask = replace(mask, q_length=stop - start, q_offset=mask.q_offset + start)
    rows = reference_attention(query[:, :, start:stop], key, value, sub_mask, scaling=scaling, softcap=softcap,
                               want=StatRequest(pattern=True), edit=_window_edit(edit, result, stop == mask.q_length),
                               chunk_size=chunk_size)
    return replace(result, stats={**result.stats, WINDOW_STAT: rows.pattern})


def _window_edit(edit: LayerEdit | None, full: AttentionOutput, holds_last_row: bool) -> LayerEdit | None:
    """The layer's edit for the window's rows: each sink rule replaced by the sinks the whole layer
    found; the last-row boost kept only when the window holds the last query."""
    if edit is None:
        return None
    sinks = iter(full.sinks)
    scales = tuple(KeyScale(s.factor, next(sinks)) if isinstance(s.keys, SinkRule) else s for s in edit.key_scales)
    return replace(edit, key_scales=scales, last_row_boost=edit.last_row_boost if holds_last_row else None)


register_backend(WINDOW_BACKEND, window_attention, overwrite=True)  # a module reload re-registers the same function
