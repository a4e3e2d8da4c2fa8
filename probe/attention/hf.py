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
    ``with`` block and always restores the previous implementation, also on exceptions.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from probe.attention.backends import get_backend
from probe.attention.mask import LazyMask, dense_mask, lazy_mask
from probe.attention.spec import AttentionOutput, LayerEdit, StatRequest

IMPLEMENTATION = "headscope"


@dataclass(frozen=True)
class LayerPlan:
    """What one layer must do in the current forward.

    Attributes:
        want: statistics to return (nothing: plain attention).
        edit: a function from the call's mask to the layer's resolved edit (positions depend
            on padding, so edits are resolved per call), or None.
        backend: backend name for this layer.
    """

    want: StatRequest = StatRequest()
    edit: Callable[[LazyMask, int], LayerEdit | None] | None = None
    backend: str = "reference"


@dataclass
class AttentionSession:
    """The state one capture or edit context shares with the registered attention function.

    Attributes:
        layer_of: ``id(attention module) -> layer index`` for the language model's layers;
            other attention modules (a vision tower, say) run plain attention.
        plans: layer index -> :class:`LayerPlan`; layers not listed run ``default``.
        default: plan for listed-but-absent layers.
        on_result: called with ``(layer, output, mask)`` after each layer's attention.
    """

    layer_of: dict[int, int]
    plans: dict[int, LayerPlan] = field(default_factory=dict)
    default: LayerPlan = LayerPlan(backend="sdpa")
    on_result: Callable[[int, AttentionOutput, LazyMask], None] | None = None

    def plan(self, layer: int) -> LayerPlan:
        return self.plans.get(layer, self.default)


_ACTIVE: ContextVar[tuple[AttentionSession, ...]] = ContextVar("headscope_sessions", default=())


@contextlib.contextmanager
def active_session(session: AttentionSession) -> Iterator[AttentionSession]:
    """Make ``session`` visible to the attention function inside the block (sessions stack)."""
    token = _ACTIVE.set(_ACTIVE.get() + (session,))
    try:
        yield session
    finally:
        _ACTIVE.reset(token)


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
    **_: object,
) -> tuple[Tensor, Tensor | None]:
    """The function registered with ``AttentionInterface`` as ``"headscope"``.

    Returns HF's pair ``(attn_output [batch, q, head, d], attn_weights or None)``.
    """
    if dropout and module.training:
        raise NotImplementedError("headscope attention does not implement attention dropout; call model.eval()")
    batch, _, q_len, _ = query.shape
    mask = dense_mask(attention_mask, batch, q_len, key.shape[2], query.device)
    mask = mask.with_structure(causal=getattr(module, "is_causal", True), sliding_window=sliding_window)
    sessions = [s for s in active_sessions() if id(module) in s.layer_of]
    if not sessions:
        result = get_backend("sdpa")(query, key, value, mask, scaling=scaling, softcap=softcap)
        return result.output, None
    session = sessions[-1]
    layer = session.layer_of[id(module)]
    plan = _merged_plan(sessions, layer)
    edit = plan.edit(mask, query.shape[1]) if plan.edit is not None else None
    backend = get_backend(plan.backend)
    result = backend(query, key, value, mask, scaling=scaling, softcap=softcap, want=plan.want, edit=edit)
    for s in sessions:
        if s.on_result is not None:
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
    if not edits:
        return LayerPlan(want=want, backend=backend)
    return LayerPlan(want=want, edit=_compose_edits(edits), backend=backend)


def _union_requests(requests: list[StatRequest]) -> StatRequest:
    sizes = {r.block_size for r in requests if r.block_size is not None}
    return StatRequest(
        pattern=any(r.pattern for r in requests),
        received=any(r.received for r in requests),
        entropy=any(r.entropy for r in requests),
        distance=any(r.distance for r in requests),
        first_token=any(r.first_token for r in requests),
        block_size=min(sizes) if sizes else None,
    )


def _compose_edits(edits: list[Callable[[LazyMask, int], LayerEdit | None]]) -> Callable:
    from probe.edits.resolve import combine_layer_edits

    def resolve(mask: LazyMask, heads: int) -> LayerEdit | None:
        return combine_layer_edits([e(mask, heads) for e in edits])

    return resolve


def register_headscope_attention() -> None:
    """Register ``"headscope"`` with transformers (idempotent)."""
    AttentionInterface.register(IMPLEMENTATION, headscope_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, lazy_mask)


@contextlib.contextmanager
def use_headscope_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to ``"headscope"`` attention inside the block; restore it afterwards."""
    register_headscope_attention()
    previous = model.config._attn_implementation
    if previous == IMPLEMENTATION:
        yield model
        return
    model.set_attn_implementation(IMPLEMENTATION)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


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
