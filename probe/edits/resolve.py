"""Resolve declarative edits into one layer's tensors for one attention call.

Key positions are per prompt (0 = first real token), so they are resolved against the call's
key layout: where each batch row's first real key sits, and how many keys there are (which grows
during generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from probe.attention.spec import KeyScale, LayerEdit
from probe.edits.spec import (BiasKeys, BoostKeys, Edit, EditError, ImageKeys, ImagePatches, Positions, ScaleHeads,
                              ScaleKeys, Sinks)


@dataclass(frozen=True)
class KeyLayout:
    """Where the keys of one attention call are.

    Attributes:
        first_key: ``[batch]`` index of each row's first real key.
        kv_length: number of keys.
        device: where tensors go.
        image_keys: True at the call's image-token keys (edits with :class:`ImageKeys` or
            :class:`ImagePatches`), else None.
    """

    first_key: Int[Tensor, " batch"]
    kv_length: int
    device: torch.device
    image_keys: Bool[Tensor, "batch key"] | None = None

    @property
    def batch(self) -> int:
        return self.first_key.shape[0]


def layer_edit(edits: Sequence[Edit], layer: int, n_heads: int, layout: KeyLayout) -> LayerEdit | None:
    """The combined edit of ``layer`` (None when no edit targets it)."""
    parts = [_resolve(edit, n_heads, layout) for edit in edits if edit.applies_to(layer)]
    return combine_layer_edits(parts)


def combine_layer_edits(parts: Sequence[LayerEdit | None]) -> LayerEdit | None:
    """Compose edits of one layer: biases add, key scalings chain, head scales multiply, last-row
    boosts add.

    Head scales of shape ``[head]`` and ``[batch, head]`` (edits limited to some prompts)
    broadcast together."""
    parts = [p for p in parts if p is not None and not p.is_empty]
    if not parts:
        return None
    biases = [p.key_bias for p in parts if p.key_bias is not None]
    scales = [p.head_scale for p in parts if p.head_scale is not None]
    boosts = [p.last_row_boost for p in parts if p.last_row_boost is not None]
    return LayerEdit(
        key_bias=torch.stack(biases).sum(0) if biases else None,
        key_scales=tuple(s for p in parts for s in p.key_scales),
        head_scale=reduce(torch.mul, scales) if scales else None,
        last_row_boost=torch.stack(boosts).sum(0) if boosts else None,
    )


def _resolve(edit: Edit, n_heads: int, layout: KeyLayout) -> LayerEdit:
    """One edit's tensors; with ``prompts`` set, factors become ``[batch, head]`` (1 elsewhere)."""
    targets = _target_mask(edit, n_heads, layout)  # [head] or [batch, head]
    if isinstance(edit, ScaleHeads):
        return LayerEdit(head_scale=torch.where(targets, edit.factor, 1.0))
    if isinstance(edit, (BiasKeys, BoostKeys)):
        rows = targets if targets.dim() == 2 else targets[None, :]
        keys = _key_mask(edit.keys, layout)[:, None, :] & rows[:, :, None]
        if isinstance(edit, BoostKeys):
            return LayerEdit(last_row_boost=keys.float() * edit.alpha)
        return LayerEdit(key_bias=keys.float() * edit.bias)
    if isinstance(edit, ScaleKeys):
        factor = torch.where(targets, edit.factor, 1.0)
        if isinstance(edit.keys, Sinks):
            return LayerEdit(key_scales=(KeyScale(factor=factor, keys=edit.keys.rule),))
        keys = _key_mask(edit.keys, layout)[:, None, :].expand(-1, n_heads, -1)
        return LayerEdit(key_scales=(KeyScale(factor=factor, keys=keys),))
    raise EditError(f"not an edit: {edit!r}; use ScaleKeys, BiasKeys or ScaleHeads")


def _target_mask(edit: Edit, n_heads: int, layout: KeyLayout) -> Bool[Tensor, "..."]:
    """The heads an edit targets, ``[head]``; ``[batch, head]`` when it targets some prompts."""
    heads = _head_mask(edit.heads, n_heads, layout.device)
    if edit.prompts is None:
        return heads
    rows = torch.zeros(layout.batch, dtype=torch.bool, device=layout.device)
    for prompt in edit.prompts:
        if prompt >= layout.batch:
            raise EditError(
                f"edit {type(edit).__name__} targets prompt {prompt}, but the batch has {layout.batch} rows "
                f"(0..{layout.batch - 1})"
            )
        rows[prompt] = True
    return rows[:, None] & heads[None, :]


def _head_mask(heads: tuple[int, ...] | None, n_heads: int, device) -> Bool[Tensor, " head"]:
    mask = torch.zeros(n_heads, dtype=torch.bool, device=device)
    if heads is None:
        return mask.fill_(True)
    for head in heads:
        if not 0 <= head < n_heads:
            raise EditError(f"edit names head {head}, but layers have {n_heads} heads (0..{n_heads - 1})")
        mask[head] = True
    return mask


def _key_mask(keys: Positions | ImageKeys | ImagePatches, layout: KeyLayout) -> Bool[Tensor, "batch key"]:
    """The key columns a selector picks in this call."""
    return KEY_MASKS[type(keys)](keys, layout)


def _image_mask(keys: ImageKeys, layout: KeyLayout) -> Bool[Tensor, "batch key"]:
    if layout.image_keys is None:
        raise EditError("ImageKeys() needs the image-token positions of the forward; apply the edits to a "
                        "vision-language model (a LoadedModel with an image_token_id) on inputs with images")
    return layout.image_keys.to(layout.device)


def _patch_mask(keys: ImagePatches, layout: KeyLayout) -> Bool[Tensor, "batch key"]:
    """The chosen image tokens of each row: the ``indices[b]``-th image keys of row ``b``."""
    image = _image_mask(ImageKeys(), layout)
    if len(keys.indices) != layout.batch:
        raise EditError(f"ImagePatches has index lists for {len(keys.indices)} prompts but the batch has "
                        f"{layout.batch} rows; build it for this batch (one list per prompt, in order)")
    mask = torch.zeros_like(image)
    for row, indices in enumerate(keys.indices):
        columns = torch.nonzero(image[row]).flatten()
        if indices and max(indices) >= columns.numel():
            raise EditError(f"ImagePatches: prompt {row} has {columns.numel()} image tokens, but index "
                            f"{max(indices)} is chosen (indices count its image tokens from 0)")
        mask[row, columns[list(indices)]] = True
    return mask


def _position_mask(keys: Positions, layout: KeyLayout) -> Bool[Tensor, "batch key"]:
    """Key columns of per-prompt positions; positions past the current keys select nothing."""
    mask = torch.zeros(layout.batch, layout.kv_length, dtype=torch.bool, device=layout.device)
    rows = torch.arange(layout.batch, device=layout.device)
    for pos in keys.positions:
        cols = layout.first_key.to(layout.device) + pos if pos >= 0 else torch.full_like(rows, layout.kv_length + pos)
        ok = (cols >= layout.first_key.to(layout.device)) & (cols < layout.kv_length)
        mask[rows[ok], cols[ok]] = True
    return mask


KEY_MASKS = {Positions: _position_mask, ImageKeys: _image_mask, ImagePatches: _patch_mask}
"""Explicit key selector type -> its key columns in one call (Sinks are resolved by the backend)."""
