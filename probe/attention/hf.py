"""Route a Hugging Face model's attention through headscope, without forking modeling files.

Context:
    transformers selects each layer's attention math from ``AttentionInterface`` by the name in
    ``config._attn_implementation``, and its masks from ``AttentionMaskInterface`` by the same
    name. We register one function under ``"headscope"`` in both: the mask side returns a
    :class:`~probe.attention.mask.LazyMask`; the attention side asks the active
    :class:`AttentionSession` (a context variable, so threads and nested contexts do not see each
    other's sessions) what this layer must produce, runs the chosen backend and hands the result
    back to the session.

    :func:`use_headscope_attention` switches a model to ``"headscope"`` for the duration of a
    ``with`` block and always restores the previous implementation, also on exceptions. Both
    context managers tolerate blocks that end out of order (two ``apply_edits`` contexts closed
    first-in-first-out, say): a session leaves the stack by identity, and a model goes back to
    its own attention only when the last block using it ends.

Generation:
    ACT's sink rule needs every query of the input. At a decode step the call holds one query,
    so a rule evaluated there would see every key through a visible count of 1. Instead the
    sinks found at the prefill (the call whose first query is position 0) are kept per layer
    in the session and reused, padded with "not a sink" for the keys generated since, by every
    later step of the same sequence, as VHR fixes its heads at the first step.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from probe.attention.backends import get_backend
from probe.attention.mask import LazyMask, dense_mask, lazy_mask
from probe.attention.reference import extend_selection
from probe.attention.spec import AttentionOutput, KeyScale, LayerEdit, SinkRule, StatRequest

IMPLEMENTATION = "headscope"


@dataclass(frozen=True)
class LayerPlan:
    """What one layer must do in the current forward.

    Attributes:
        want: statistics to return (nothing: plain attention).
        edit: a function from the call's mask to the layer's resolved edit (positions depend
            on padding, so edits are resolved per call), or None.
        backend: backend name for this layer.
        chunk_size: query rows per block for backends that work in blocks (None: the
            backend's default).
    """

    want: StatRequest = StatRequest()
    edit: Callable[[LazyMask, int], LayerEdit | None] | None = None
    backend: str = "reference"
    chunk_size: int | None = None


@dataclass
class AttentionSession:
    """The state one capture or edit context shares with the registered attention function.

    Attributes:
        layer_of: ``id(attention module) -> layer index`` for the language model's layers;
            other attention modules (a vision tower, say) run plain attention.
        plans: layer index -> :class:`LayerPlan`; layers not listed run ``default``.
        default: plan for listed-but-absent layers.
        on_result: called with ``(layer, output, mask)`` after the attention of each layer
            listed in ``plans`` (the layers this session asked for).
        prefill_sinks: layer -> the sink selections of its last prefill, one per
            :class:`SinkRule` key scaling (see the module docstring, Generation).
    """

    layer_of: dict[int, int]
    plans: dict[int, LayerPlan] = field(default_factory=dict)
    default: LayerPlan = LayerPlan(backend="sdpa")
    on_result: Callable[[int, AttentionOutput, LazyMask], None] | None = None
    prefill_sinks: dict[int, tuple[Tensor, ...]] = field(default_factory=dict)

    def plan(self, layer: int) -> LayerPlan:
        return self.plans.get(layer, self.default)

    def fix_decode_sinks(self, layer: int, mask: LazyMask, edit: LayerEdit | None) -> LayerEdit | None:
        """At a decode step, replace each :class:`SinkRule` by the sinks of the prefill."""
        stored = self.prefill_sinks.get(layer)
        if edit is None or mask.q_offset == 0 or stored is None:
            return edit
        rules = [i for i, scale in enumerate(edit.key_scales) if isinstance(scale.keys, SinkRule)]
        if len(rules) != len(stored) or stored[0].shape[0] != mask.batch_size:
            return edit  # another sequence than the stored prefill's: evaluate the rule here
        scales = list(edit.key_scales)
        for index, sinks in zip(rules, stored):
            scales[index] = KeyScale(factor=scales[index].factor, keys=extend_selection(sinks, mask.kv_length))
        return replace(edit, key_scales=tuple(scales))

    def remember_sinks(self, layer: int, mask: LazyMask, result: AttentionOutput) -> None:
        """Keep a prefill's sink selections for the decode steps that follow it."""
        if mask.q_offset == 0:
            if result.sinks:
                self.prefill_sinks[layer] = tuple(s.detach() for s in result.sinks)
            else:
                self.prefill_sinks.pop(layer, None)


_ACTIVE: ContextVar[tuple[AttentionSession, ...]] = ContextVar("headscope_sessions", default=())


@contextlib.contextmanager
def active_session(session: AttentionSession) -> Iterator[AttentionSession]:
    """Make ``session`` visible to the attention function inside the block (sessions stack).

    On exit the session is removed by identity, not by restoring the stack it found: blocks that
    end out of order then leave exactly the sessions still open.
    """
    _ACTIVE.set(_ACTIVE.get() + (session,))
    try:
        yield session
    finally:
        _ACTIVE.set(tuple(s for s in _ACTIVE.get() if s is not session))


def active_sessions() -> tuple[AttentionSession, ...]:
    return _ACTIVE.get()


def headscope_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: LazyMask | Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    sliding_window: int | None = None,
    is_causal: bool | None = None,
    **_: object,
) -> tuple[Tensor, Tensor | None]:
    """The function registered with ``AttentionInterface`` as ``"headscope"``.

    ``is_causal`` (else the module's own flag, as HF's SDPA reads it) decides what a call without
    a mask sees: a vision tower's encoder attends both ways.

    Returns HF's pair ``(attn_output [batch, q, head, d], attn_weights or None)``.
    """
    if dropout and module.training:
        raise NotImplementedError("headscope attention does not implement attention dropout; call model.eval()")
    batch, _, q_len, _ = query.shape
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    mask = dense_mask(attention_mask, batch, q_len, key.shape[2], query.device, causal=bool(causal))
    mask = mask.with_structure(causal=bool(causal), sliding_window=sliding_window)
    sessions = [s for s in active_sessions() if id(module) in s.layer_of]
    if not sessions:
        result = get_backend("sdpa")(query, key, value, mask, scaling=scaling, softcap=softcap)
        return result.output, None
    session = sessions[-1]
    layer = session.layer_of[id(module)]
    plan = _merged_plan(sessions, layer)
    edit = plan.edit(mask, query.shape[1]) if plan.edit is not None else None
    edit = session.fix_decode_sinks(layer, mask, edit)
    backend = get_backend(plan.backend)
    options = {"chunk_size": plan.chunk_size} if plan.chunk_size is not None else {}
    result = backend(query, key, value, mask, scaling=scaling, softcap=softcap, want=plan.want, edit=edit, **options)
    session.remember_sinks(layer, mask, result)
    for s in sessions:
        if s.on_result is not None and layer in s.plans:
            s.on_result(layer, result, mask)
    return result.output, result.pattern


def _merged_plan(sessions: list[AttentionSession], layer: int) -> LayerPlan:
    """Combine the plans of nested sessions: statistics of any, edits of all (outer first)."""
    plans = [s.plan(layer) for s in sessions]
    want = _union_requests([p.want for p in plans])
    edits = [p.edit for p in plans if p.edit is not None]
    backend = next((p.backend for p in reversed(plans) if p.backend != "sdpa"), plans[-1].backend)
    if want.pattern or want.any_stats or edits:
        backend = "reference" if backend == "sdpa" else backend
    chunks = [p.chunk_size for p in plans if p.chunk_size is not None]
    chunk_size = min(chunks) if chunks else None
    edit = _compose_edits(edits) if edits else None
    return LayerPlan(want=want, edit=edit, backend=backend, chunk_size=chunk_size)


def _union_requests(requests: list[StatRequest]) -> StatRequest:
    """One request that serves every nested session.

    Flags are or-ed; block statistics use the smallest block size asked. The lookback window
    and the band are parameters of their statistic, and one forward computes each statistic
    once: sessions that ask for them must ask for the same window (the same :class:`Band`,
    first rows included), else the call raises ``ValueError``. A session that does not ask for
    one leaves the other's choice in place.
    """
    sizes = {r.block_size for r in requests if r.block_size is not None}
    return StatRequest(
        pattern=any(r.pattern for r in requests),
        received=any(r.received for r in requests),
        entropy=any(r.entropy for r in requests),
        distance=any(r.distance for r in requests),
        first_token=any(r.first_token for r in requests),
        block_size=min(sizes) if sizes else None,
        lookback_window=_the_one_setting([r.lookback_window for r in requests], "lookback_window"),
        band=_the_one_setting([r.band for r in requests], "band"),
        span=_the_one_setting([r.span for r in requests], "span"),
    )


def _the_one_setting(values: list, name: str):
    """The single non-None value nested sessions ask for (None if none asks); two differing ones raise."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    if len(distinct) > 1:
        raise ValueError(f"nested headscope sessions ask for different {name} settings {distinct}; one forward "
                         f"computes one {name}: open them with the same {name}, or run separate forwards")
    return distinct[0] if distinct else None


def _compose_edits(edits: list[Callable[[LazyMask, int], LayerEdit | None]]) -> Callable:
    from probe.edits.resolve import combine_layer_edits

    def resolve(mask: LazyMask, heads: int) -> LayerEdit | None:
        return combine_layer_edits([e(mask, heads) for e in edits])

    return resolve


def register_headscope_attention() -> None:
    """Register ``"headscope"`` with transformers (idempotent)."""
    AttentionInterface.register(IMPLEMENTATION, headscope_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, lazy_mask)


@dataclass
class _Switch:
    """How many open blocks use a model's ``"headscope"`` attention, and what to restore."""

    users: int
    previous: str


_SWITCHES: "weakref.WeakKeyDictionary[nn.Module, _Switch]" = weakref.WeakKeyDictionary()
_SWITCH_LOCK = threading.Lock()


@contextlib.contextmanager
def use_headscope_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to ``"headscope"`` attention inside the block; restore it afterwards.

    Blocks on one model may nest and may end in any order: the model keeps ``"headscope"``
    until the last of them ends, then gets back the implementation it had before the first.
    """
    register_headscope_attention()
    with _SWITCH_LOCK:
        switch = _SWITCHES.get(model)
        if switch is None:
            previous = model.config._attn_implementation
            switch = _SWITCHES[model] = _Switch(users=0, previous=previous)
            if previous != IMPLEMENTATION:
                model.set_attn_implementation(IMPLEMENTATION)
        switch.users += 1
    try:
        yield model
    finally:
        with _SWITCH_LOCK:
            switch.users -= 1
            if switch.users == 0:
                del _SWITCHES[model]
                if switch.previous != IMPLEMENTATION:
                    model.set_attn_implementation(switch.previous)


def attention_modules(model: nn.Module) -> dict[int, int]:
    """``id(attention module) -> layer index`` via the model family's adapter."""
    from probe.models.families import family_of

    adapter = family_of(model)
    return {id(module): index for index, module in enumerate(adapter.attention_modules(model))}



__all__ = [
    "AttentionSession",
    "LayerPlan",
    "active_session",
    "attention_modules",
    "headscope_attention",
    "register_headscope_attention",
    "use_headscope_attention",
]
