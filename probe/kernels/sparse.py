"""Block-sparse attention over a :class:`~probe.kernels.blocks.BlockTable`, on GPU or CPU.

Context:
    On CUDA the table drives K1 (output, log-sum-exp, entropy, distance) and, when per-key or
    per-tile statistics are asked, K2 over the transposed table: skipped tiles cost nothing,
    so time follows the kept fraction. On CPU the same result comes from the materialised
    reference with the table expanded to a dense mask (``BlockTable.allowed_rows``); it is
    exact and meant for tests and small inputs.

    Statistics here are per head: ``visible_count`` is ``[batch, head, key]`` because sparse
    tables may differ between heads, and block statistics are over the table's own tiles.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from probe.attention.spec import AttentionOutput, StatRequest
from probe.kernels.blocks import BlockTable
from probe.kernels.materialised import materialised_attention


def block_sparse_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    table: BlockTable,
    *,
    scaling: float | None = None,
    want: StatRequest = StatRequest(),
    key_bias: Float[Tensor, "_ _ k"] | None = None,
    head_scale: Float[Tensor, " head"] | None = None,
) -> AttentionOutput:
    """Attention restricted to ``table``'s tiles (and its token rule inside partial tiles)."""
    if want.block_size is not None and (want.block_size != table.block_q or table.block_q != table.block_kv):
        raise ValueError("block statistics of a sparse call are over the table's square tiles: "
                         f"ask block_size={table.block_q} with block_q == block_kv")
    if want.lookback_window is not None or want.band is not None:
        raise ValueError("block-sparse attention does not compute the look-back or band statistics; "
                         "ask them of a dense call (the reference backend computes them)")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    if query.is_cuda:
        return sparse_with_kernels(query, key, value, table, scaling, want, key_bias, head_scale)
    return sparse_materialised(query, key, value, table, scaling, want, key_bias, head_scale)


def sparse_with_kernels(query, key, value, table, scaling, want, key_bias, head_scale) -> AttentionOutput:
    """:func:`block_sparse_attention` through K1 and K2 (on CPU, in Triton's interpreter)."""
    from probe.kernels.launch import column_stats, flash_forward

    k1 = flash_forward(query, key, value, table, scaling=scaling, key_bias=key_bias,
                       entropy=want.entropy, distance=want.distance, head_scale=head_scale)
    stats: dict[str, Tensor] = {}
    if want.any_stats:
        stats["lse"] = k1.lse
        if want.entropy:
            stats["entropy"] = k1.entropy
        if want.distance:
            stats["distance"] = k1.distance
    if want.received or want.block_size:
        cols = column_stats(query, key, k1.lse, table, scaling=scaling, key_bias=key_bias,
                            block_stats=want.block_size is not None)
        stats.update(_received(cols, want))
    return AttentionOutput(output=k1.output, pattern=None, stats=stats)


def sparse_materialised(query, key, value, table, scaling, want, key_bias, head_scale) -> AttentionOutput:
    """:func:`block_sparse_attention` through the materialised reference on the expanded table (exact)."""
    allowed = table.allowed_rows(0, table.q_len, query.shape[1]).to(query.device)
    out, ref = materialised_attention(
        query, key, value, allowed, scaling=scaling, key_bias=key_bias, head_scale=head_scale,
        q_offset=table.rule.q_offset, kv_offset=table.rule.kv_offset, block_size=want.block_size,
        dtype=torch.float32,
    )
    stats: dict[str, Tensor] = {}
    if want.any_stats:
        stats["lse"] = ref["lse"]
        for name in ("entropy", "distance"):
            if getattr(want, name):
                stats[name] = ref[name]
    if want.received or want.block_size:
        stats.update(_received(ref, want))
    return AttentionOutput(output=out.to(query.dtype), pattern=None, stats=stats)


def _received(cols: dict[str, Tensor], want: StatRequest) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    if want.received:
        count = cols["count"]
        out.update(
            received_sum=cols["received_sum"],
            received_max=cols["received_max"],
            visible_count=count,
            received_mean=torch.where(count > 0, cols["received_sum"] / count.clamp_min(1), 0.0),
        )
    if want.block_size is not None:
        out.update(block_sum=cols["block_sum"], block_max=cols["block_max"])
    return out


def ideal_speedup(table: BlockTable, dense: BlockTable) -> float:
    """FLOP-ideal speedup of ``table`` over ``dense``: ratio of visited tiles."""
    return 1.0 / max(table.visited_fraction(dense), 1e-9)
