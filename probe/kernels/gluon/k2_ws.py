"""K2 for Hopper in Gluon, warp-specialised: per-key statistics from the stored log-sum-exp.

Context:
    K2 (:func:`probe.kernels.launch.column_stats`) needs, for each key ``j``, the attention it
    receives, ``sum_i exp(s_ij - lse_i)``, its maximum over queries, how many queries see it,
    and optionally the sum and maximum over each 128 x 128 tile. One program owns a block of
    keys and walks the query tiles that see it (the block table's transposed lists),
    recomputing the logits in the transposed orientation ``S^T = K Q^T`` so that the per-key
    sums are row reductions.

    The layout is the warp-specialised K1's (:mod:`probe.kernels.gluon.k1_ws`): one producer
    warp loads the key block once (one half per consumer) and then every visited query tile by
    TMA into a ring; each consumer warpgroup owns ``KEYS`` keys (64 or 128), waits for a query
    tile, computes its product, releases the tile and reduces, while the other consumer's
    product runs. The producer brings each query tile's log-sum-exp into shared memory with the
    tile (one barrier for both), negated (-inf for unseen queries and past each head's last
    query), so a full tile costs one FMA, one exponential, one add and one max per logit and
    nothing else; full tiles' visible counts are summed once at the end from a per-tile count
    of seen queries.

    Why 128 keys per consumer (256 per program) where the table allows it: with 64, the
    column pass ran at 0.62-0.69x K1's time on the lent H100 and still at 0.51-0.55x with the
    exponentials and maxima removed (a diagnostic build), so the loop is bound by something other
    than the exponentials; the suspect was streaming the query tiles (32 KB per 128 x 128 tile,
    the bytes per cycle K1 moves for twice the products). Twice the keys per program halve the
    query bytes per product; it gained a few percent (0.58-0.69x at 16k-32k in the full run),
    so that was not the whole story either. 128 keys per
    consumer need a table whose tiles follow its token rule (dense, causal, sliding window,
    sinks): the program's 256-key block is then described by the same rule. Block-sparse
    tables with skipped tiles inside the rule keep 64 keys per consumer, and hold their key tile
    in registers (32 per thread), so the products read only the query tile from shared memory.
    Schedules measured and dropped (64 keys, H100): issuing the next tile's product before
    reducing the current one (0.64-0.84x), and FA3's ping-pong between the consumers
    (0.63-0.84x), against 0.62-0.83x for this plain loop. Later (128 keys, H100,
    ``benchmarks/kernels/runs/gluon_k2_h100.txt`` runs F, G and H): a quarter of the full tiles'
    exponentials on the FMA pipe (FlashAttention-4's polynomial) took 1.05-1.33x the time, so
    the exponential unit is not what binds the loop; each consumer's keys as two 64-key
    halves with one product always in flight took 0.97-0.99x without block statistics but
    1.07-1.18x with them, and 1.05-1.12x causal; four warpgroups of 64 keys (run H; 96
    registers, as the producer warp pads the CTA to 640 threads) took 0.97-0.98x non-causal
    with block statistics and 1.33-1.46x causal (spills in the masked path). The 128-key tile
    in registers as the products' register operand (run I; shared-memory reads per product down
    from 96 to 64 B per tensor cycle) took 1.00-1.01x non-causal and 1.18-1.20x causal, so
    shared-memory reads do not bind the products either. Nsight Compute (``runs/profile_pipes_h100.txt``)
    shows this loop keeping the tensor pipe and the exponential unit 55.5 % + 55.5 % busy, about
    cuDNN's forward's overlap (75 % + 39 %); handing the exponential unit over between the two
    consumers around each burst (run J) took 1.12-1.20x.

    Block statistics: each warp reduces its 16 keys of a 64-key half of a tile with shuffles
    and stores a partial; the host adds (or takes the max of) the partials of each 128 x 128
    tile. Reducing over the whole warpgroup instead put a shared-memory round trip and two
    partition barriers in every step.

    Worker partitions receive no compile-time arguments in Triton 3.6, so the consumers read
    their switches from the length of a tiny shared allocation (``cfg_smem``) and their key
    count from their key tile's shape, as in the K1. Units follow the Triton K2: base-2 logits,
    key bias already x log2(e).
"""

from __future__ import annotations

from typing import no_type_check

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait

from probe.kernels.gluon.k1 import block_start, table_row, token_allowed


@no_type_check
@gluon.jit
def _k2_producer(q_desc, k_desc, lse_desc, k_smem, q_smem, lse_smem, k_bar, q_full, q_empty, cfg_smem,
                 n_tot, n_full, full_base, part_base, key_row, k_col, q_row, q_col, lse_row):
    """One warp: both key halves once, then every visited query tile with its log-sum-exp into the
    ring once a stage is free."""
    STAGES: gl.constexpr = q_smem.shape[0]
    BLOCK_Q: gl.constexpr = q_smem.shape[1]
    KEYS: gl.constexpr = k_smem.shape[1]
    mbarrier.expect(k_bar, 2 * k_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(k_desc, [key_row, k_col], k_bar, k_smem.index(0))
    tma.async_copy_global_to_shared(k_desc, [key_row + KEYS, k_col], k_bar, k_smem.index(1))
    for t in range(n_tot):
        stage = t % STAGES
        mbarrier.wait(q_empty.index(stage), ((t // STAGES) & 1) ^ 1, pred=t >= STAGES)
        start = block_start(t, n_full, full_base, part_base, True, BLOCK_Q, 1)
        bar = q_full.index(stage)
        mbarrier.expect(bar, q_desc.block_type.nbytes + lse_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [q_row + start, q_col], bar, q_smem.index(stage))
        tma.async_copy_global_to_shared(lse_desc, [lse_row + start], bar, lse_smem.index(stage))


@no_type_check
@gluon.jit
def _column_step(s, neg_lse, bias, start_q, masked, offs_k, col_sum, col_max, count, bsum_ptr, bmax_ptr,
                 stride_bp_q, h, diag, kv_offset, n_kv, qk_scale, window_ptr, sink_ptr, s_layout: gl.constexpr,
                 BLOCK_Q: gl.constexpr, CAUSAL: gl.constexpr, LOCAL: gl.constexpr,
                 HAS_BIAS: gl.constexpr, BLOCK_STATS: gl.constexpr):
    """Fold one (KEYS, BLOCK_Q) tile of raw ``k.q`` into the per-key sums and maxima (and, in a
    masked tile, the counts; full tiles are counted once at the end, :func:`_seen_in_full_tiles`).
    Block partials of key rows ``64 * j + 16 * w ...`` go to ``bsum_ptr + stride_bp_q * query_tile + 4 * j + w``.

    ``neg_lse`` is minus the base-2 log-sum-exp, -inf for unseen queries: one FMA per logit, and
    unseen queries' terms are exactly 0 without a test.
    """
    if HAS_BIAS:
        st = s * qk_scale + (bias[:, None] + neg_lse[None, :])
    else:
        st = s * qk_scale + neg_lse[None, :]
    if masked:
        offs_q = start_q + gl.arange(0, BLOCK_Q, layout=gl.SliceLayout(0, s_layout))
        ok = token_allowed(offs_q[None, :], offs_k[:, None], h, diag, kv_offset, n_kv, window_ptr, sink_ptr,
                      CAUSAL, LOCAL) & (neg_lse > float("-inf"))[None, :]
        p = gl.where(ok, gl.exp2(st), 0.0)
        count += gl.sum(ok.to(gl.float32), 1)
    else:
        p = gl.exp2(st)
    row_sum = gl.sum(p, 1)
    row_max = gl.max(p, 1)
    if BLOCK_STATS:  # one partial per warp and 64-key half: shuffles only, no barrier between warps
        halves: gl.constexpr = s.shape[0] // 64  # rows r = 64 * half + 16 * warp + i
        warp_sum = gl.sum(gl.reshape(row_sum, [halves, 4, 16]), 2)
        warp_max = gl.max(gl.reshape(row_max, [halves, 4, 16]), 2)
        slot = (gl.arange(0, halves, layout=gl.SliceLayout(1, warp_sum.type.layout))[:, None] * 4
                + gl.arange(0, 4, layout=gl.SliceLayout(0, warp_sum.type.layout))[None, :])
        offs = (start_q // BLOCK_Q) * stride_bp_q + slot
        gl.store(bsum_ptr + offs, warp_sum)
        gl.store(bmax_ptr + offs, warp_max)
    return col_sum + row_sum, gl.maximum(col_max, row_max), count


@no_type_check
@gluon.jit
def _seen_in_full_tiles(seen_base, full_base, n_full):
    """Seen queries summed over the full tiles' list: every key of the block is visible to all of
    them. Gathered 128 entries at a time after the loop, so the steps themselves count nothing."""
    chunk: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[4],
                                           order=[0])
    total = 0.0
    for c in range(0, n_full, 128):
        idx = c + gl.arange(0, 128, layout=chunk)
        ok = idx < n_full
        qb = gl.load(full_base + idx, mask=ok, other=0)
        total += gl.sum(gl.load(seen_base + qb, mask=ok, other=0.0), 0)
    return total


@no_type_check
@gluon.jit
def _k2_consumer(k, q_smem, lse_smem, k_bar, q_full, q_empty, cfg_smem, COL_SUM, COL_MAX, COUNT, bsum_ptr, bmax_ptr,
                 stride_bp_q, seen_base, WINDOW, SINK, bias_base, h, bh, key0, n_tot, n_full, full_base, part_base,
                 n_kv, diag, kv_offset, qk_scale):
    """One warpgroup: the keys of its tile ``k`` (shared memory), from ``key0``."""
    STAGES: gl.constexpr = q_smem.shape[0]
    BLOCK_Q: gl.constexpr = q_smem.shape[1]
    KEYS: gl.constexpr = k.shape[0]
    CODE: gl.constexpr = cfg_smem.shape[0] - 1  # the switches, bit by bit (see k2_ws_kernel)
    CAUSAL: gl.constexpr = (CODE & 1) != 0
    LOCAL: gl.constexpr = (CODE & 2) != 0
    HAS_BIAS: gl.constexpr = (CODE & 4) != 0
    BLOCK_STATS: gl.constexpr = (CODE & 8) != 0
    K_IN_REGISTERS: gl.constexpr = (CODE & 16) != 0
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_Q, 16])
    row: gl.constexpr = gl.SliceLayout(1, s_layout)
    col: gl.constexpr = gl.SliceLayout(0, s_layout)
    offs_k = key0 + gl.arange(0, KEYS, layout=row)
    col_sum = gl.zeros([KEYS], gl.float32, layout=row)
    col_max = gl.zeros([KEYS], gl.float32, layout=row)
    count = gl.zeros([KEYS], gl.float32, layout=row)
    bias = 0.0
    if HAS_BIAS:
        bias = gl.load(bias_base + offs_k, mask=offs_k < n_kv, other=0.0)
    s = gl.zeros([KEYS, BLOCK_Q], gl.float32, layout=s_layout)
    if n_tot > 0:
        mbarrier.wait(k_bar, 0)
        if K_IN_REGISTERS:  # the products read only Q from shared memory
            a = k.load(gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2))
        else:
            a = k
        mbarrier.wait(q_full.index(0), 0)
        tok = warpgroup_mma(a, q_smem.index(0).permute((1, 0)), s, use_acc=False, is_async=True)
        neg_lse = lse_smem.index(0).load(col)
        s = warpgroup_mma_wait(num_outstanding=0, deps=(tok, ))
        mbarrier.arrive(q_empty.index(0))
        start_q = block_start(0, n_full, full_base, part_base, True, BLOCK_Q, 1)
        for t in range(1, n_tot):
            stage = t % STAGES
            col_sum, col_max, count = _column_step(
                s, neg_lse, bias, start_q, t - 1 >= n_full, offs_k, col_sum, col_max, count, bsum_ptr, bmax_ptr,
                stride_bp_q, h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_Q, CAUSAL, LOCAL,
                HAS_BIAS, BLOCK_STATS)
            mbarrier.wait(q_full.index(stage), (t // STAGES) & 1)
            # S_{t-1} is dead: its registers take S_t (use_acc=False ignores their values).
            tok = warpgroup_mma(a, q_smem.index(stage).permute((1, 0)), s, use_acc=False, is_async=True)
            neg_lse = lse_smem.index(stage).load(col)
            s = warpgroup_mma_wait(num_outstanding=0, deps=(tok, ))
            mbarrier.arrive(q_empty.index(stage))
            start_q = block_start(t, n_full, full_base, part_base, True, BLOCK_Q, 1)
        col_sum, col_max, count = _column_step(
            s, neg_lse, bias, start_q, n_tot - 1 >= n_full, offs_k, col_sum, col_max, count, bsum_ptr, bmax_ptr,
            stride_bp_q, h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_Q, CAUSAL, LOCAL,
            HAS_BIAS, BLOCK_STATS)
        count += _seen_in_full_tiles(seen_base, full_base, n_full)
    out = bh.to(gl.int64) * n_kv + offs_k
    key_ok = offs_k < n_kv
    gl.store(COL_SUM + out, col_sum, mask=key_ok)
    gl.store(COL_MAX + out, col_max, mask=key_ok)
    gl.store(COUNT + out, count, mask=key_ok)


@no_type_check
@gluon.jit
def k2_ws_kernel(
    q_desc, k_desc, lse_desc, SEEN, BIAS, COL_SUM, COL_MAX, COUNT, BSUM, BMAX, WINDOW, SINK,
    FULL_NUM, FULL_IDX, PART_NUM, PART_IDX,
    q_rb, q_rh, q_ch, k_rb, k_rh, k_ch,
    stride_bias_b, stride_bias_h,
    stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h, stride_fi_n,
    stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_n,
    stride_bp_bh, stride_bp_q,
    n_heads, group, n_q_pad, n_kv, diag, kv_offset, qk_scale,
    HEAD_DIM: gl.constexpr, KEYS: gl.constexpr, BLOCK_Q: gl.constexpr, STAGES: gl.constexpr,
    CAUSAL: gl.constexpr, LOCAL: gl.constexpr, HAS_BIAS: gl.constexpr, BLOCK_STATS: gl.constexpr,
    K_IN_REGISTERS: gl.constexpr, num_warps: gl.constexpr, HEADS_INNER: gl.constexpr = False,
):
    """Grid (key blocks of 2 x KEYS, batch x heads), or (batch x heads, key blocks) with
    ``HEADS_INNER``: CUDA starts programs in grid order, so under causality the heavy first key
    blocks of every head then start first and the light last ones fill the tail.

    ``lse_desc`` reads minus the base-2 log-sum-exp as ``[batch*head*n_q_pad]``, each (b, h)
    padded with -inf to a whole number of query tiles; ``SEEN`` ``[batch*head, q_blocks]``
    counts each query tile's seen queries (finite log-sum-exp). ``BSUM`` / ``BMAX`` are
    ``[batch, head, q_blocks, 128-key blocks, 8]`` (partials per warp and 64-key half) when
    ``BLOCK_STATS``; their strides per (b, h) and per query tile are ``stride_bp_bh``,
    ``stride_bp_q`` (8 per 128-key block).
    """
    dtype: gl.constexpr = q_desc.dtype
    if HEADS_INNER:  # grid (heads, key blocks): every head's first (heaviest under causality) blocks first
        bh = gl.program_id(0)
        pid_n = gl.program_id(1)
    else:
        pid_n = gl.program_id(0)
        bh = gl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    key0 = pid_n * (2 * KEYS)
    bias_base = BIAS + b.to(gl.int64) * stride_bias_b + h.to(gl.int64) * stride_bias_h

    k_smem = gl.allocate_shared_memory(dtype, [2, KEYS, HEAD_DIM], k_desc.layout)
    q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_Q, HEAD_DIM], q_desc.layout)
    lse_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_Q], lse_desc.layout)
    k_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    q_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(k_bar, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(q_full.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=2)  # one arrival per consumer warpgroup

    n_full, n_tot, full_base, part_base = table_row(
        FULL_NUM, FULL_IDX, PART_NUM, PART_IDX, b, h, pid_n, stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h,
        stride_fi_n, stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_n, 1)

    code: gl.constexpr = CAUSAL * 1 + LOCAL * 2 + HAS_BIAS * 4 + BLOCK_STATS * 8 + K_IN_REGISTERS * 16
    cfg_smem = gl.allocate_shared_memory(gl.int8, [code + 1], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    # Block partials: 64-key half j of consumer c lies in 128-key block (2 * KEYS * pid_n + KEYS * c
    # + 64 * j) // 128, at slot 4 * (half within that block) + warp.
    part = bh.to(gl.int64) * stride_bp_bh + (pid_n * (KEYS // 64)) * 8
    if KEYS == 64:
        part1 = part + 4
    else:
        part1 = part + 8
    rest = (COL_SUM, COL_MAX, COUNT)
    loop = (SEEN + bh * (n_q_pad // BLOCK_Q), WINDOW, SINK, bias_base, h, bh)
    tail = (n_tot, n_full, full_base, part_base, n_kv, diag, kv_offset, qk_scale)
    ring = (q_smem, lse_smem, k_bar, q_full, q_empty, cfg_smem)
    gl.warp_specialize([
        (_k2_consumer, (k_smem.index(0), ) + ring + rest + (BSUM + part, BMAX + part, stride_bp_q) + loop + (key0, ) + tail),
        (_k2_consumer, (k_smem.index(1), ) + ring + rest + (BSUM + part1, BMAX + part1, stride_bp_q) + loop
         + (key0 + KEYS, ) + tail),
        (_k2_producer, (q_desc, k_desc, lse_desc, k_smem, q_smem, lse_smem, k_bar, q_full, q_empty, cfg_smem,
                        n_tot, n_full, full_base, part_base, b * k_rb + kvh * k_rh + key0, kvh * k_ch,
                        b * q_rb + h * q_rh, h * q_ch, bh * n_q_pad)),
    ], [4, 1], [240, 24])
