"""Column statistics of ACT-edited attention: K2 for the unselected keys, PyTorch for the few selected.

Context:
    ACT (:mod:`probe.kernels.act.row_pass`) multiplies row ``i``'s probabilities on its head's
    selected keys S by ``a_i`` and on every other key by ``r_i`` (the pass writes both per row).
    K2 computes ``sum_i exp(s_ij - lse_i)``, so given ``lse_i - ln r_i`` it yields the edited
    column sums, maxima and block statistics of every key outside S (:func:`k2_inputs`: the
    shifted log-sum-exp, and a -1e30 bias that takes S's columns out). S holds a few keys per
    head, so their edited terms ``a_i p_ij`` are computed here for every row at once (one
    ``[query, |S|]`` product per head) and added into the same tables
    (:func:`add_selected_columns`).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probe.kernels.act.row_pass import ActLists
from probe.kernels.blocks import NEG_BIAS, TokenRule

TINY = 1.0e-30  # a row whose other keys get nothing keeps a finite log-sum-exp (K2 counts it)
QUERY_CHUNK = 4096  # queries upcast to float32 at a time (a whole 128k x 32-head Q would be 2 GiB)


def k2_inputs(
    lse: Float[Tensor, "batch head q"],
    bias: Float[Tensor, "_ _ k"] | None,
    selected: Bool[Tensor, "_ _ k"],
    rest_factor: Float[Tensor, "batch head q"],
) -> tuple[Tensor, Tensor]:
    """``(lse - ln r, bias with -1e30 at each head's selected keys)`` for K2."""
    batch, heads, _ = lse.shape
    n_kv = selected.shape[-1]
    shifted = lse - torch.log(rest_factor.clamp_min(TINY))
    base = bias if bias is not None else torch.zeros(1, 1, n_kv, device=lse.device)
    masked = torch.where(selected.to(lse.device), NEG_BIAS, base.float())
    return shifted, masked.expand(batch, heads, n_kv)


def add_selected_columns(
    stats: dict[str, Tensor],
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    lse: Float[Tensor, "batch head q"],
    bias: Float[Tensor, "_ _ k"] | None,
    lists: ActLists,
    own_factor: Float[Tensor, "batch head q"],
    rule: TokenRule,
    scaling: float,
    block_size: int | None,
) -> None:
    """Add the selected keys' edited terms ``a_i p_ij`` to ``received_sum``, ``received_max`` and,
    with ``block_size``, ``block_sum`` / ``block_max`` (in place). ``lse`` is the unedited
    log-sum-exp, NaN at padding queries (they add nothing)."""
    terms, idx = _selected_terms(query, key, lse, bias, lists, own_factor, rule, scaling)  # (B,H,Q,W), (B,H,W)
    stats["received_sum"].scatter_add_(-1, idx, terms.sum(2))
    stats["received_max"].scatter_reduce_(-1, idx, terms.amax(2), "amax")
    if block_size is None:
        return
    batch, heads, n_q, width = terms.shape
    q_blocks = math.ceil(n_q / block_size)
    tiles = torch.nn.functional.pad(terms, (0, 0, 0, q_blocks * block_size - n_q))
    tiles = tiles.view(batch, heads, q_blocks, block_size, width)
    kb = (idx // block_size)[:, :, None, :].expand(batch, heads, q_blocks, width)
    stats["block_sum"].scatter_add_(-1, kb, tiles.sum(3))
    stats["block_max"].scatter_reduce_(-1, kb, tiles.amax(3), "amax")


def _selected_terms(query, key, lse, bias, lists: ActLists, own_factor, rule: TokenRule, scaling: float):
    """``a_i p_ij`` for each head's own selected keys (0 for list padding and other heads' keys)
    and the keys' indices (padding at key 0, where it adds 0)."""
    batch, heads, n_q, _ = query.shape
    group = heads // key.shape[1]
    idx = lists.keys.clamp_min(0).long()  # (B, H, W)
    b = torch.arange(batch, device=query.device)[:, None, None]
    kvh = (torch.arange(heads, device=query.device) // group)[None, :, None]
    k_sel = key[b, kvh, idx].float()  # (B, H, W, D)
    logits = torch.cat([torch.einsum("bhqd,bhwd->bhqw", query[:, :, i:i + QUERY_CHUNK].float(), k_sel)
                        for i in range(0, n_q, QUERY_CHUNK)], dim=2) * scaling
    if bias is not None:
        logits = logits + bias.float().expand(batch, heads, -1).gather(-1, idx)[:, :, None, :]
    q_idx = torch.arange(n_q, device=query.device)[None, None, :, None]
    h_idx = torch.arange(heads, device=query.device)[None, :, None, None]
    seen = rule.allowed(h_idx, q_idx, idx[:, :, None, :], heads, key.shape[2])
    own = (lists.mine > 0)[:, :, None, :] & seen
    p = torch.exp(logits - lse[..., None])
    terms = torch.where(own & torch.isfinite(p), p * own_factor[..., None], 0.0)
    return terms, idx
