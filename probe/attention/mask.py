"""Attention masks that are never materialised whole.

Context:
    Hugging Face models build their masks through ``AttentionMaskInterface``: a model calls the
    mask function registered under its ``_attn_implementation`` with the mask's geometry and a
    ``mask_function(batch, head, q_idx, kv_idx)`` (causal, sliding window, padding ...). For
    ``"headscope"`` we register :func:`lazy_mask`, which keeps those arguments instead of
    building a ``[batch, 1, query, key]`` tensor. The attention backend then asks for one block
    of query rows at a time (:meth:`LazyMask.rows`), and transformers' own ``sdpa_mask`` builds
    that block, so the semantics are exactly the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from jaxtyping import Bool
from torch import Tensor
from transformers.masking_utils import (
    bidirectional_mask_function,
    causal_mask_function,
    prepare_padding_mask,
    sdpa_mask,
)


@dataclass(frozen=True)
class LazyMask:
    """A mask described by its geometry; rows are built on demand.

    Attributes:
        batch_size, q_length, kv_length: the mask's shape is ``[batch, 1, q_length, kv_length]``.
        q_offset, kv_offset: absolute positions of the first query and the first key.
        mask_function: transformers' index-based mask function (without padding).
        padding: ``Bool[batch, kv_length]``, True for real tokens; None when nothing is padded.
        causal, sliding_window: structure the attention module declares, for kernels that
            build their own masks (filled in by the attention function, not by transformers).
    """

    batch_size: int
    q_length: int
    kv_length: int
    q_offset: int = 0
    kv_offset: int = 0
    mask_function: Callable = causal_mask_function
    padding: Bool[Tensor, "batch kv"] | None = None
    use_vmap: bool = False
    device: torch.device | str = "cpu"
    causal: bool = True
    sliding_window: int | None = None

    def rows(self, start: int, stop: int) -> Bool[Tensor, "batch 1 rows kv"]:
        """The mask for query rows ``start:stop`` (True = may attend)."""
        block = sdpa_mask(
            batch_size=self.batch_size,
            q_length=stop - start,
            kv_length=self.kv_length,
            q_offset=self.q_offset + start,
            kv_offset=self.kv_offset,
            mask_function=self.mask_function,
            attention_mask=self.padding,
            allow_is_causal_skip=False,
            use_vmap=self.use_vmap,
            device=self.device,
        )
        return block.expand(self.batch_size, 1, stop - start, self.kv_length)

    def key_padding(self) -> Bool[Tensor, "batch kv"]:
        """True for keys that are real tokens (not padding)."""
        return self._padding_at(self.kv_offset, self.kv_length)

    def query_padding(self) -> Bool[Tensor, "batch q"]:
        """True for queries that are real tokens."""
        return self._padding_at(self.q_offset, self.q_length)

    def _padding_at(self, start: int, length: int) -> Bool[Tensor, "batch n"]:
        if self.padding is None:
            return torch.ones(self.batch_size, length, dtype=torch.bool, device=self.device)
        padded = prepare_padding_mask(self.padding, start + length, 0)
        return padded[:, start : start + length].to(self.device)

    def first_key(self) -> torch.Tensor:
        """Index (into the keys) of the first real token of each batch row: ``Long[batch]``."""
        return self.key_padding().int().argmax(dim=1)

    @property
    def is_fixed(self) -> bool:
        """True when the mask reads a fixed 4-D tensor (an arbitrary mask a caller passed, see
        :func:`dense_mask`) rather than a structure (causal, window, padding) kernels can rebuild."""
        return isinstance(self.mask_function, _FixedMask)

    def with_structure(self, causal: bool, sliding_window: int | None) -> "LazyMask":
        return replace(self, causal=causal, sliding_window=sliding_window)


def lazy_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function: Callable = causal_mask_function,
    attention_mask: Tensor | None = None,
    use_vmap: bool = False,
    device: torch.device | str = "cpu",
    **_: object,
) -> LazyMask:
    """Mask function registered with ``AttentionMaskInterface`` for ``"headscope"``."""
    padding = attention_mask.to(torch.bool) if attention_mask is not None else None
    if padding is not None and bool(padding.all()):
        padding = None
    return LazyMask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=int(q_offset),
        kv_offset=int(kv_offset),
        mask_function=mask_function,
        padding=padding,
        use_vmap=use_vmap,
        device=device,
    )


def dense_mask(mask: LazyMask | Tensor | None, batch: int, q_len: int, kv_len: int, device: torch.device,
               causal: bool = True) -> LazyMask:
    """Wrap whatever a caller passed as ``attention_mask`` into a :class:`LazyMask`.

    A 4D tensor (boolean, or additive float as eager attention uses) is kept as a fixed mask;
    None means plain causal attention over ``kv_len`` keys whose last ``q_len`` are the queries,
    or, when the module is not causal (a vision tower's encoder), every query sees every key.
    """
    if isinstance(mask, LazyMask):
        return mask
    if mask is None and not causal:
        return LazyMask(batch, q_len, kv_len, mask_function=bidirectional_mask_function, device=device, causal=False)
    if mask is None:
        return LazyMask(batch, q_len, kv_len, q_offset=kv_len - q_len, device=device)
    allowed = mask if mask.dtype == torch.bool else mask == 0
    allowed = allowed[..., -kv_len:]
    return LazyMask(
        batch,
        q_len,
        kv_len,
        mask_function=_FixedMask(allowed.expand(batch, 1, q_len, kv_len)),
        use_vmap=False,
        device=device,
        causal=False,
    )


class _FixedMask:
    """An index-based mask function reading a precomputed 4D boolean mask."""

    def __init__(self, allowed: Bool[Tensor, "batch 1 q kv"]):
        self.allowed = allowed

    def __call__(self, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return self.allowed[b, 0, q, kv]
