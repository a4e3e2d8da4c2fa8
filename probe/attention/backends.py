"""Attention backends by name: a registry, not an if/elif ladder.

Context:
    A backend is a callable with the signature of
    :func:`probe.attention.reference.reference_attention`::

        backend(query, key, value, mask, *, scaling, softcap, want, edit, chunk_size) -> AttentionOutput

    ``chunk_size`` (query rows per block) is passed only when a capture sets it; backends that do
    not work in blocks of rows accept and ignore it.

    ``"reference"`` (plain torch, exact, any device) is always registered, and so is ``"fast"``
    (:mod:`probe.attention.fast`: the same results with fewer passes over memory on CPU, the
    reference elsewhere); ``"sdpa"`` runs
    layers that need neither statistics nor edits through PyTorch's fused kernel. GPU kernels
    register themselves under their own names when their module is imported; ``OPTIONAL_BACKENDS``
    names those modules, and :func:`get_backend` imports them by name on first use (see
    ``probe.kernels.backend``).
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from probe.attention.fast import fast_attention
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import AttentionOutput, LayerEdit, StatRequest


# A backend has the signature of ``reference_attention``:
# backend(query, key, value, mask, *, scaling, softcap, want, edit[, chunk_size]) -> AttentionOutput
AttentionBackend = Callable[..., AttentionOutput]


_BACKENDS: dict[str, AttentionBackend] = {}
SDPA_ROWS = 2048  # query rows per SDPA call when an explicit mask is needed (keeps masks O(rows x keys))


def register_backend(name: str, backend: AttentionBackend, *, overwrite: bool = False) -> None:
    """Make ``backend`` selectable as ``name``; registering a taken name raises unless ``overwrite``."""
    if name in _BACKENDS and not overwrite:
        raise ValueError(f"attention backend {name!r} is already registered; pass overwrite=True to replace it")
    _BACKENDS[name] = backend


def get_backend(name: str) -> AttentionBackend:
    """The backend registered as ``name``, with the list of choices when it is unknown."""
    if name not in _BACKENDS:
        _load_optional_backends()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown attention backend {name!r}; available: {sorted(_BACKENDS)}"
        ) from None


def available_backends() -> list[str]:
    _load_optional_backends()
    return sorted(_BACKENDS)


def sdpa_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    *,
    scaling: float | None = None,
    softcap: float | None = None,
    want: StatRequest = StatRequest(),
    edit: LayerEdit | None = None,
    chunk_size: int | None = None,
) -> AttentionOutput:
    """PyTorch's fused attention for layers that need no statistics and no edits (others go to
    the reference, with ``chunk_size``)."""
    if want.pattern or want.any_stats or (edit is not None and not edit.is_empty) or softcap is not None:
        options = {"chunk_size": chunk_size} if chunk_size is not None else {}
        return reference_attention(query, key, value, mask, scaling=scaling, softcap=softcap, want=want, edit=edit,
                                   **options)
    plain_causal = mask.causal and mask.padding is None and mask.sliding_window is None and mask.q_offset == 0
    enable_gqa = query.shape[1] != key.shape[1]
    if plain_causal and mask.q_length == mask.kv_length:
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=enable_gqa
        )
        return AttentionOutput(output=out.transpose(1, 2), pattern=None, stats={})
    blocks = []
    for start in range(0, mask.q_length, SDPA_ROWS):
        stop = min(start + SDPA_ROWS, mask.q_length)
        rows = mask.rows(start, stop)
        # Rows that may see nothing (padding queries) would come out NaN and poison later layers
        # through 0 * NaN; let them see everything instead, as eager attention effectively does.
        rows = rows | ~rows.any(-1, keepdim=True)
        blocks.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:stop], key, value, attn_mask=rows, scale=scaling, enable_gqa=enable_gqa
            )
        )
    return AttentionOutput(output=torch.cat(blocks, dim=2).transpose(1, 2), pattern=None, stats={})


# Backends that live outside this package, by name: the module that registers each when imported.
# Resolved by module name on first use, so this registry imports none of them (the kernels' backend
# imports this module to register itself; a static import back would be a cycle).
OPTIONAL_BACKENDS: dict[str, str] = {"triton": "probe.kernels.backend"}


def _load_optional_backends() -> None:
    """Import the optional backends (GPU kernels) so they can register; absent ones are skipped."""
    for name, module in OPTIONAL_BACKENDS.items():
        if name not in _BACKENDS:
            try:
                importlib.import_module(module)
            except ImportError:
                pass


register_backend("reference", reference_attention)
register_backend("sdpa", sdpa_attention)
register_backend("fast", fast_attention)
