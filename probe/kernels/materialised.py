"""Plain materialised attention with every statistic: the ground truth for tests and GPU checks.

Context:
    This builds the whole ``[batch, head, q, k]`` pattern (float64 by default), so it is only
    for small inputs. It shares no code with the kernels or with the chunked reference backend:
    each statistic is written straight from its definition in :mod:`probe.attention.spec`, and
    the allowed pairs come in as an explicit boolean mask (a causal triangle, a padding mask, or
    a :class:`~probe.kernels.blocks.BlockTable` expanded by ``allowed_rows``), which is how the
    CPU path reproduces block-sparse attention exactly.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def materialised_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    allowed: Bool[Tensor, "_ _ q k"],
    *,
    scaling: float | None = None,
    key_bias: Float[Tensor, "_ _ k"] | None = None,
    scale_keys: Bool[Tensor, "_ _ k"] | None = None,
    scale_factor: Float[Tensor, " head"] | None = None,
    head_scale: Float[Tensor, " head"] | None = None,
    query_valid: Bool[Tensor, "batch q"] | None = None,
    q_offset: int = 0,
    kv_offset: int = 0,
    block_size: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Float[Tensor, "batch q head d"], dict[str, Tensor]]:
    """Softmax attention and its statistics, computed on the full pattern.

    Args:
        allowed: True where query ``i`` may attend key ``j`` (broadcast over batch/head).
        key_bias: additive logit bias.
        scale_keys, scale_factor: ACT scaling of selected keys with redistribution.
        head_scale: per-head output multiplier.
        query_valid: False at padding queries (NaN row statistics, excluded from column sums).
        q_offset, kv_offset: absolute positions of the first query / key (for distances).
        block_size: also return ``block_sum`` / ``block_max`` over square tiles.

    Returns:
        ``(output, stats)`` with stats named as in :mod:`probe.attention.spec` (``count`` is the
        per-head number of valid queries that see each key).
    """
    batch, heads, n_q, _ = query.shape
    group = heads // key.shape[1]
    q, k, v = query.to(dtype), key.to(dtype).repeat_interleave(group, 1), value.to(dtype).repeat_interleave(group, 1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scaling
    if key_bias is not None:
        scores = scores + key_bias.to(dtype)[:, :, None, :]
    allowed = allowed.expand_as(scores)
    scores = scores.masked_fill(~allowed, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    if scale_keys is not None:
        probs = _act_scale(probs, scale_keys.expand(batch, heads, -1), scale_factor.to(dtype))
    output = torch.einsum("bhqk,bhkd->bqhd", probs, v)
    if head_scale is not None:
        output = output * head_scale.to(dtype)[None, None, :, None]
    valid = torch.ones(batch, n_q, dtype=torch.bool) if query_valid is None else query_valid
    valid = valid.to(query.device)
    stats = _row_stats(probs, lse, valid, q_offset, kv_offset)
    stats.update(_column_stats(probs, allowed, valid))
    if block_size is not None:
        stats.update(_block_stats(probs * valid[:, None, :, None], block_size))
    return output, stats


def _act_scale(probs: Tensor, selected: Tensor, factor: Tensor) -> Tensor:
    """p' = f p on selected keys, p (1 - f P_S) / (1 - P_S) elsewhere (rows with P_S ~ 1 kept)."""
    sel = selected[:, :, None, :]
    f = factor[None, :, None, None]
    p_sel = (probs * sel).sum(-1, keepdim=True)
    ok = (1 - p_sel) > 1e-6
    rest = (1 - f * p_sel) / (1 - p_sel).clamp_min(1e-6)
    return torch.where(ok, torch.where(sel, f * probs, probs * rest), probs)


def _row_stats(probs: Tensor, lse: Tensor, valid: Tensor, q_offset: int, kv_offset: int) -> dict[str, Tensor]:
    n_q, n_k = probs.shape[-2:]
    q_pos = torch.arange(n_q, dtype=probs.dtype, device=probs.device) + q_offset
    k_pos = torch.arange(n_k, dtype=probs.dtype, device=probs.device) + kv_offset
    rows = {
        "lse": lse,
        "entropy": -torch.special.xlogy(probs, probs).sum(-1),
        "distance": (probs * (q_pos[:, None] - k_pos[None, :])).sum(-1),
    }
    nan = torch.tensor(math.nan, dtype=probs.dtype, device=probs.device)
    return {name: torch.where(valid[:, None, :], value, nan) for name, value in rows.items()}


def _column_stats(probs: Tensor, allowed: Tensor, valid: Tensor) -> dict[str, Tensor]:
    p = probs * valid[:, None, :, None]
    count = (allowed & valid[:, None, :, None]).sum(2).to(probs.dtype)
    total = p.sum(2)
    return {
        "received_sum": total,
        "received_max": p.amax(2),
        "count": count,
        "received_mean": torch.where(count > 0, total / count.clamp_min(1), 0.0),
    }


def _block_stats(p: Tensor, size: int) -> dict[str, Tensor]:
    batch, heads, n_q, n_k = p.shape
    qb, kb = math.ceil(n_q / size), math.ceil(n_k / size)
    padded = p.new_zeros(batch, heads, qb * size, kb * size)
    padded[:, :, :n_q, :n_k] = p
    tiles = padded.reshape(batch, heads, qb, size, kb, size)
    return {"block_sum": tiles.sum(dim=(3, 5)), "block_max": tiles.amax(dim=(3, 5))}


def causal_allowed(n_q: int, n_k: int, q_offset: int | None = None, window: int | None = None) -> Bool[Tensor, "1 1 q k"]:
    """The causal (optionally sliding-window) pattern; queries are the last ``n_q`` keys by default."""
    q_offset = n_k - n_q if q_offset is None else q_offset
    qi = torch.arange(n_q)[:, None] + q_offset
    kj = torch.arange(n_k)[None, :]
    ok = qi >= kj
    if window is not None:
        ok = ok & (qi - kj < window)
    return ok[None, None]
