"""Host side of the Gluon K2 (:mod:`probe.kernels.gluon.k2_ws`): eligibility, the table it walks, launch.

:func:`gluon_k2_eligible` says whether a column-pass call can take the Hopper kernel (the K1's
operand conditions, 128-key table blocks, 64- or 128-query tiles); :func:`column_stats_gluon`
has the outputs of :func:`probe.kernels.launch.column_stats`, which dispatches to it
(``HEADSCOPE_GLUON_K2=0`` turns it off, to time the Triton K2 it replaced).
"""

from __future__ import annotations

import os

from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Float
from torch import Tensor

from probe.kernels.blocks import BlockTable, rule_kinds, rule_table
from probe.kernels.gluon.views import WS_ROWS, descriptor, row_view, shared_layout, views_fit
from probe.kernels.operands import expand_table

# Dispatched head dims. At 64 (SmolLM2, GPT-2, Pythia) the Gluon K2 took 0.75-0.87x the Triton
# K2's time and the all-statistics call 0.89-0.96x, paired, on the lent H100 (4k x 4 and 16k,
# 32 query / 8 KV heads; benchmarks/kernels/runs/head_dim_64.txt).
GLUON_K2_HEAD_DIMS = (64, 128)


def gluon_k2_eligible(query: Tensor, key: Tensor, table: BlockTable) -> bool:
    """True when :func:`column_stats_gluon` can run this call: K1's operand conditions, 128-key
    table blocks and 64- or 128-query tiles (``HEADSCOPE_GLUON_K2=0`` turns it off)."""
    return gluon_k2_operands(query, key) and table.block_kv == 2 * WS_ROWS and table.block_q in (64, 128)


def gluon_k2_operands(query: Tensor, key: Tensor) -> bool:
    """The operand half of :func:`gluon_k2_eligible` (callers use it to pick 128x128 tables)."""
    if os.environ.get("HEADSCOPE_GLUON_K2", "1") == "0" or not query.is_cuda:
        return False
    if torch.cuda.get_device_capability(query.device)[0] != 9:
        return False
    return (query.dtype in (torch.bfloat16, torch.float16) and key.dtype == query.dtype
            and query.shape[-1] in GLUON_K2_HEAD_DIMS and views_fit(query, key, key))


def k2_stages() -> int:
    """Query tiles in flight in the Gluon K2 (3 x 32 KB beside 32-64 KB of keys); ``HEADSCOPE_K2_STAGES`` overrides."""
    return int(os.environ.get("HEADSCOPE_K2_STAGES", "3"))


def k2_walk(table: BlockTable) -> tuple[BlockTable, int]:
    """The table the Gluon K2 walks and its keys per consumer.

    A table that is exactly its token rule's table (dense, causal, sliding window, sinks) is
    walked at 256-key blocks, 128 keys per consumer (the rule decides inside each block); any
    other table (block-sparse, with skipped tiles the rule allows) as it is, 64 keys per
    consumer. ``HEADSCOPE_K2_KEYS=64`` forces the narrow walk (benchmarks). Cached on the table.
    """
    if os.environ.get("HEADSCOPE_K2_KEYS", "128") == "64":
        return table, 64
    cache = table.__dict__.setdefault("_gluon_k2_walk", {})  # frozen: cache through __dict__
    if "wide" not in cache:
        exact = torch.equal(table.kinds, rule_kinds(table.rule, table.q_len, table.kv_len, table.block_q,
                                                    table.block_kv, table.kinds.shape[1], table.device))
        cache["wide"] = (rule_table(table.rule, table.q_len, table.kv_len, table.block_q, 4 * WS_ROWS, table.device)
                         if exact else None)
    return (cache["wide"], 2 * WS_ROWS) if cache["wide"] is not None else (table, WS_ROWS)


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _k2_prep_kernel(LSE, NEG, SEEN, n_heads, stride_b, stride_h, n_q, n_q_pad, q_blocks, BLOCK_Q: tl.constexpr):
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    offs = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    base = LSE + (bh // n_heads).to(tl.int64) * stride_b + (bh % n_heads).to(tl.int64) * stride_h
    x = tl.load(base + offs, mask=offs < n_q, other=float("nan"))
    seen = (x == x) & (tl.abs(x) < float("inf"))
    tl.store(NEG + bh.to(tl.int64) * n_q_pad + offs, tl.where(seen, -x * 1.4426950408889634, float("-inf")))
    tl.store(SEEN + bh * q_blocks + qb, tl.sum(seen.to(tl.float32), 0))


def k2_prep(lse: Float[Tensor, "batch head q"], block_q: int) -> tuple[Tensor, Tensor]:
    """What the Gluon K2 reads besides Q and K, in one launch: minus the base-2 log-sum-exp,
    ``[batch*head, q_pad]`` (-inf for non-finite entries, i.e. queries that see nothing, and
    past ``q`` up to whole query tiles), and each query tile's count of seen queries,
    ``[batch*head, q_blocks]``. It replaced eight small PyTorch operations, whose host time
    bound short calls (4k tokens) on the lent H100."""
    batch, heads, n_q = lse.shape
    lse = lse if lse.stride(-1) == 1 else lse.contiguous()
    q_blocks = triton.cdiv(n_q, block_q)
    neg = torch.empty(batch * heads, q_blocks * block_q, device=lse.device, dtype=torch.float32)
    seen = torch.empty(batch * heads, q_blocks, device=lse.device, dtype=torch.float32)
    _k2_prep_kernel[(q_blocks, batch * heads)](lse, neg, seen, heads, lse.stride(0), lse.stride(1), n_q,
                                              neg.shape[1], q_blocks, BLOCK_Q=block_q)
    return neg, seen


def column_stats_gluon(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    lse: Float[Tensor, "batch head q"],
    table: BlockTable,
    *,
    qk_scale: float,
    bias: Float[Tensor, "..."],  # [batch, head, k], or a 1-element placeholder without a bias
    bias_strides: tuple[int, int],
    has_bias: bool,
    block_stats: bool,
    outputs: tuple[Tensor, Tensor, Tensor],
) -> dict[str, Tensor]:
    """K2 through :mod:`probe.kernels.gluon.k2_ws`; arguments as prepared by
    :func:`probe.kernels.launch.column_stats` (natural-log ``lse``, non-finite for queries
    that see nothing; base-2 bias; output buffers). Block statistics are over the table's
    128-key tiles."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from probe.kernels.gluon.k2_ws import k2_ws_kernel

    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    walk, keys = k2_walk(table)
    (qv, q_rb, q_rh, q_ch), (kv, k_rb, k_rh, k_ch) = (row_view(t) for t in (query, key))
    col_sum, col_max, count = outputs
    q_blocks, programs = triton.cdiv(n_q, table.block_q), triton.cdiv(n_kv, 2 * keys)
    # Minus the log-sum-exp, -inf for unseen queries and past each head's queries (a query tile
    # read past n_q, the next head's rows, adds nothing); and each query tile's seen queries.
    neg_lse, seen = k2_prep(lse, table.block_q)
    lse_desc = TensorDescriptor.from_tensor(neg_lse.view(-1), [table.block_q], shared_layout((table.block_q,)))
    k128 = programs * (2 * keys // 128)  # 128-key blocks the programs cover (the last may pass n_kv)
    # Block partials [sum | max, batch, head, query tile, 128-key block, 8 (4 warps x 2 halves)].
    parts = torch.zeros(2 if block_stats else 1, batch, heads, q_blocks, k128, 8, device=query.device)
    bsum, bmax = (parts[0], parts[1]) if block_stats else (col_sum, col_sum)  # never written without block stats
    full_n, full_i = expand_table(walk.full_q_num_blocks, walk.full_q_indices, batch, heads)
    part_n, part_i = expand_table(walk.q_num_blocks, walk.q_indices, batch, heads)
    # Heads-inner grid order (heavy causal key blocks of every head first): 0.94x the time at 16k
    # causal, 1.01x at 32k (L2 reuse of each head's queries drops), equal at 4k on the lent H100
    # (notes/kernels.md, "Dead ends": the K2's grid heads-inner); not the default, HEADSCOPE_K2_HEADS_INNER=1.
    heads_inner = table.rule.causal and os.environ.get("HEADSCOPE_K2_HEADS_INNER", "0") == "1"
    k2_ws_kernel[(batch * heads, programs) if heads_inner else (programs, batch * heads)](
        descriptor(qv, table.block_q, head_dim), descriptor(kv, keys, head_dim), lse_desc, seen,
        bias, col_sum, col_max, count, bsum, bmax,
        table.rule.window_tensor(heads, query.device), table.rule.sink_tensor(heads, query.device),
        full_n, full_i, part_n, part_i,
        q_rb, q_rh, q_ch, k_rb, k_rh, k_ch, *bias_strides,
        full_n.stride(0), full_n.stride(1), full_i.stride(0), full_i.stride(1), full_i.stride(2),
        part_n.stride(0), part_n.stride(1), part_i.stride(0), part_i.stride(1), part_i.stride(2),
        q_blocks * k128 * 8, k128 * 8,
        heads, heads // key.shape[1], neg_lse.shape[1], n_kv, table.rule.q_offset - table.rule.kv_offset,
        table.rule.kv_offset, qk_scale,
        HEAD_DIM=head_dim, KEYS=keys, BLOCK_Q=table.block_q, STAGES=k2_stages(), CAUSAL=table.rule.causal,
        LOCAL=table.rule.local, HAS_BIAS=has_bias, BLOCK_STATS=block_stats,
        K_IN_REGISTERS=os.environ.get("HEADSCOPE_K2_AREG", "1") == "1" and keys == WS_ROWS, num_warps=4,
        HEADS_INNER=heads_inner,
    )
    stats = {"received_sum": col_sum, "received_max": col_max, "count": count}
    if block_stats:
        k_blocks = triton.cdiv(n_kv, 128)
        stats.update(block_sum=bsum[..., :k_blocks, :].sum(-1), block_max=bmax[..., :k_blocks, :].amax(-1))
    return stats
