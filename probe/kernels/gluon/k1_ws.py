"""The Gluon K1 with warp specialisation (FA3's producer / two-consumer layout): the default K1 on Hopper.

Context:
    The Gluon K1 (:mod:`probe.kernels.gluon.k1`) keeps both warpgroups of a 128-row tile in
    lockstep: Gluon's ``mbarrier.arrive`` and ``mbarrier.expect`` each bring a CTA-wide barrier
    outside ``gl.warp_specialize``. Inside partitions they are scoped to the partition, so here
    one warp loads Q, K and V by TMA (the producer) and each warpgroup is its own consumer
    partition owning 64 query rows: it waits for a K/V stage to be full, and releases it
    (an arrive on a count-2 "empty" barrier) as soon as its own products have read it. The
    two consumers drift apart freely, so one's softmax can overlap the other's products.

    Same block-table walk, outputs and statistics as the Gluon K1 (its helpers are reused).
    The key bias is added by the S product: one more k16 step whose A operand is a constant
    ``[1, 1, 0, ...]`` per row and whose B operand is the step's ``[keys, 16]`` tile of
    ``bias / qk_scale`` split into high and low parts in the input dtype, brought by TMA on K's
    barrier; the softmax then takes its unbiased path. Measured on the lent H100 at 16k: 1.02-1.05x
    the unbiased kernel, against 1.13-1.15x for adding the tile in the softmax and 1.22-1.32x for
    loading the bias from global memory in the consumers (the all-statistics variant spilled
    there; none spills now). ``HEADSCOPE_BIAS_IN_PRODUCT=0`` adds it in the softmax instead.

    Mean distance: its within-step part ``sum p c`` (``c`` the column inside the step) is one
    more small product per step, ``P @ [c, 0, ..., 0]`` (m64n8k16, issued just before P.V so
    that waiting for all but the last group still leaves P.V in flight), instead of an FMA per
    logit and 32 registers of column indices; the block offsets stay in float32. Its P is the
    bf16/fp16 one the output uses, so each term is rounded by up to 2^-8 (bf16; 2^-11 fp16)
    and the distance carries at most 127 x 2^-8 = 0.5 positions of absolute error (measured
    on the lent H100: 0.1 at most, 2.6e-6 to 5.2e-5 relative, against 2e-6 to 4e-7 before). It took 0.94-0.98x
    the time of the FMA path for entropy + distance, and the all-statistics call 0.96-0.99x
    (paired, 4k-32k: ``benchmarks/kernels/runs/k1_stats_h100.txt``).
    ``HEADSCOPE_K1_TC_DISTANCE=0`` turns it off. Measured there and dropped: FlashAttention-4's
    conditional rescaling (the accumulator rescaled only when some row's maximum grows past a
    factor 256): the decision is a warpgroup-wide reduction through shared memory with three
    partition barriers per step, and the kernel took 1.06-1.07x the time.

    Worker partitions receive no compile-time arguments in Triton 3.6 (they arrive as runtime
    values), so the consumers read their switches from types: tile sizes from the ring's
    shapes, flags from the length of a tiny shared allocation (``cfg_smem``).

    Measured on the lent H100 (bf16, hd128, interleaved rounds): 0.95-1.11x cuDNN's throughput
    at 4k-32k, against 0.78-0.89x for the single-partition Gluon K1 in the same run
    (notes/kernels.md; its "Dead ends" section has the two compared directly).
    ``HEADSCOPE_GLUON_WS=0`` turns it off.
"""

from __future__ import annotations

from typing import no_type_check

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                               warpgroup_mma_wait)

from probe.kernels.gluon.k1 import NEG, block_start, finish_rows, issue_kv, softmax_step, table_row

ROWS = gl.constexpr(64)  # query rows per consumer warpgroup


@no_type_check
@gluon.jit
def _producer(q_desc, k_desc, v_desc, bias_desc, q_smem, k_smem, v_smem, bias_smem, q_bar, k_full, v_full, k_empty,
              v_empty, cfg_smem, n_tot, n_full, full_base, part_base, q_row, q_col, kv_row, kv_col, v_row, v_col,
              bias_row):
    """One warp: Q once (both halves), then K (with its key-bias tile) and V of every step into the
    ring once a stage is free."""
    STAGES: gl.constexpr = k_smem.shape[0]
    BLOCK_N: gl.constexpr = k_smem.shape[1]
    CODE: gl.constexpr = cfg_smem.shape[0] - 1
    HAS_BIAS: gl.constexpr = (CODE & 4) != 0
    SUB: gl.constexpr = ((CODE >> 6) & 1) + 1
    IN_PRODUCT: gl.constexpr = (CODE & 128) != 0
    mbarrier.expect(q_bar, 2 * q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [q_row, q_col], q_bar, q_smem.index(0))
    tma.async_copy_global_to_shared(q_desc, [q_row + ROWS, q_col], q_bar, q_smem.index(1))
    for t in range(n_tot):
        stage = t % STAGES
        free_phase = ((t // STAGES) & 1) ^ 1  # the previous use of this stage was released
        mbarrier.wait(k_empty.index(stage), free_phase, pred=t >= STAGES)
        if HAS_BIAS:  # the step's key bias rides on K's barrier
            start = block_start(t, n_full, full_base, part_base, True, BLOCK_N, SUB)
            bar = k_full.index(stage)
            mbarrier.expect(bar, k_desc.block_type.nbytes + bias_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [kv_row + start, kv_col], bar, k_smem.index(stage))
            if IN_PRODUCT:  # [keys, 16] operand tile of the product
                tma.async_copy_global_to_shared(bias_desc, [bias_row + start, 0], bar, bias_smem.index(stage))
            else:
                tma.async_copy_global_to_shared(bias_desc, [bias_row + start], bar, bias_smem.index(stage))
        else:
            issue_kv(k_desc, k_smem.index(stage), k_full.index(stage), t, n_tot, n_full, full_base, part_base,
                      kv_row, kv_col, BLOCK_N, SUB)
        mbarrier.wait(v_empty.index(stage), free_phase, pred=t >= STAGES)
        issue_kv(v_desc, v_smem.index(stage), v_full.index(stage), t, n_tot, n_full, full_base, part_base,
                  v_row, v_col, BLOCK_N, SUB)


@no_type_check
@gluon.jit
def _consumer(q, k_smem, v_smem, bias_smem, cols_smem, q_bar, k_full, v_full, k_empty, v_empty, cfg_smem,
              O, LSE, ENT, DIST, HSCALE, WINDOW, SINK, b, h, bh, row0, n_tot, n_full, full_base,
              part_base, stride_ob, stride_om, stride_oh, n_q, n_kv, diag, kv_offset, qk_scale):
    """One warpgroup, ROWS query rows (from ``row0``, Q tile ``q``): the Gluon K1's loop with
    per-warpgroup stage releases. Compile-time switches come from shapes (worker partitions
    receive no constexpr arguments in Triton 3.6): the ring's and ``cfg_smem``'s."""
    dtype: gl.constexpr = q.dtype
    STAGES: gl.constexpr = k_smem.shape[0]
    BLOCK_N: gl.constexpr = k_smem.shape[1]
    HEAD_DIM: gl.constexpr = k_smem.shape[2]
    CODE: gl.constexpr = cfg_smem.shape[0] - 1  # the switches, bit by bit (see k1_ws_kernel)
    CAUSAL: gl.constexpr = (CODE & 1) != 0
    LOCAL: gl.constexpr = (CODE & 2) != 0
    HAS_BIAS: gl.constexpr = (CODE & 4) != 0
    ENTROPY: gl.constexpr = (CODE & 8) != 0
    DISTANCE: gl.constexpr = (CODE & 16) != 0
    HEAD_SCALE: gl.constexpr = (CODE & 32) != 0
    SUB: gl.constexpr = ((CODE >> 6) & 1) + 1
    IN_PRODUCT: gl.constexpr = (CODE & 128) != 0  # the bias is added by the S product itself
    TC_DIST: gl.constexpr = DISTANCE and (CODE & 256) != 0  # sum p c by the tensor cores (_column_tile)
    SOFTMAX_BIAS: gl.constexpr = HAS_BIAS and not IN_PRODUCT
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HEAD_DIM, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    offs_m = row0 + gl.arange(0, ROWS, layout=row_s)
    m_i = gl.full([ROWS], NEG, gl.float32, layout=row_s)
    l_i = gl.zeros([ROWS], gl.float32, layout=row_s)
    u_i = gl.zeros([ROWS], gl.float32, layout=row_s)
    w_i = gl.zeros([ROWS], gl.float32, layout=row_s)
    acc = gl.zeros([ROWS, HEAD_DIM], gl.float32, layout=o_layout)
    w_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, 8, 16])
    w_acc = gl.zeros([ROWS, 8], gl.float32, layout=w_layout)  # sum p~ c (TC_DIST): column 0, the rest 0
    s_zero = gl.zeros([ROWS, BLOCK_N], gl.float32, layout=s_layout)
    cols_f = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout)).to(gl.float32)
    if IN_PRODUCT:  # A operand [1, 1, 0, ...] per row: S += 1 * bias_hi + 1 * bias_lo
        ones_layout: gl.constexpr = gl.BlockedLayout([1, 16], [32, 1], [4, 1], [1, 0])
        first_two = gl.arange(0, 16, layout=gl.SliceLayout(0, ones_layout)) < 2
        ones = gl.where(first_two[None, :], gl.full([ROWS, 16], 1.0, dtype, ones_layout),
                        gl.zeros([ROWS, 16], dtype, ones_layout))
        ones = gl.convert_layout(ones, gl.DotOperandLayout(operand_index=0, parent=s_layout, k_width=2))
    if n_tot > 0:
        mbarrier.wait(q_bar, 0)
        start_n = block_start(0, n_full, full_base, part_base, True, BLOCK_N, SUB)
        bias = 0.0
        mbarrier.wait(k_full.index(0), 0)
        s_tok = warpgroup_mma(q, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        if IN_PRODUCT:
            s_tok = warpgroup_mma(ones, bias_smem.index(0).permute((1, 0)), s_tok, is_async=True)
        s = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
        if SOFTMAX_BIAS:
            bias = bias_smem.index(0).load(gl.SliceLayout(0, s_layout))
        mbarrier.arrive(k_empty.index(0))
        p, alpha, m_i, l_i, u_i, w_i = softmax_step(
            s, m_i, l_i, u_i, w_i, start_n, bias, cols_f, row0, n_full == 0, offs_m, h, diag, kv_offset,
            n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_N, CAUSAL, LOCAL, SOFTMAX_BIAS, ENTROPY, DISTANCE, TC_DIST)
        p_op = gl.convert_layout(p.to(dtype), p_layout)
        for t in range(1, n_tot):
            stage = t % STAGES
            prev = (t - 1) % STAGES
            start_n = block_start(t, n_full, full_base, part_base, True, BLOCK_N, SUB)
            mbarrier.wait(k_full.index(stage), (t // STAGES) & 1)
            s_tok = warpgroup_mma(q, k_smem.index(stage).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            if IN_PRODUCT:
                s_tok = warpgroup_mma(ones, bias_smem.index(stage).permute((1, 0)), s_tok, is_async=True)
            if TC_DIST:  # before P.V, so that waiting for all but the last group leaves P.V in flight
                w_tok = warpgroup_mma(p_op, cols_smem.permute((1, 0)), w_acc, is_async=True)
            mbarrier.wait(v_full.index(prev), ((t - 1) // STAGES) & 1)
            acc_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
            s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok, ))
            if SOFTMAX_BIAS:  # the step's bias tile, read before the stage is released
                bias = bias_smem.index(stage).load(gl.SliceLayout(0, s_layout))
            mbarrier.arrive(k_empty.index(stage))
            p, alpha, m_i, l_i, u_i, w_i = softmax_step(
                s, m_i, l_i, u_i, w_i, start_n, bias, cols_f, row0, t // SUB >= n_full, offs_m, h, diag,
                kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_N, CAUSAL, LOCAL, SOFTMAX_BIAS, ENTROPY,
                DISTANCE, TC_DIST)
            if TC_DIST:
                acc, w_acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, w_tok, p_op))
            else:
                acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, p_op))
            mbarrier.arrive(v_empty.index(prev))
            acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            if TC_DIST:
                w_acc = w_acc * gl.convert_layout(alpha, gl.SliceLayout(1, w_layout))[:, None]
            p_op = gl.convert_layout(p.to(dtype), p_layout)
        last = (n_tot - 1) % STAGES
        if TC_DIST:
            w_tok = warpgroup_mma(p_op, cols_smem.permute((1, 0)), w_acc, is_async=True)
        mbarrier.wait(v_full.index(last), ((n_tot - 1) // STAGES) & 1)
        acc_tok = warpgroup_mma(p_op, v_smem.index(last), acc, is_async=True)
        if TC_DIST:
            acc, w_acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, w_tok, p_op))
            w_i += gl.convert_layout(gl.sum(w_acc, 1), row_s)
        else:
            acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, p_op))
    finish_rows(acc, m_i, l_i, u_i, w_i, offs_m, row0, O, LSE, ENT, DIST, HSCALE, b, h, bh, n_q, diag,
                 stride_ob, stride_om, stride_oh, o_layout, ROWS, HEAD_DIM, ENTROPY, DISTANCE, HEAD_SCALE, 4)


@no_type_check
@gluon.jit
def _column_tile(dtype: gl.constexpr, BLOCK_N: gl.constexpr):
    """``[8, BLOCK_N]`` B operand (transposed) whose row 0 is the column index inside a step and
    the other rows 0: ``P @ tile^T`` is ``sum p c`` in column 0. Exact in bf16 up to 256."""
    fill: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [4, 1], [1, 0])
    r = gl.arange(0, 8, layout=gl.SliceLayout(1, fill))
    c = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, fill)).to(gl.float32)
    tile = gl.where((r == 0)[:, None], c[None, :], 0.0).to(dtype)
    smem = gl.allocate_shared_memory(dtype, [8, BLOCK_N], gl.NVMMASharedLayout(128, 16), tile)
    fence_async_shared()
    return smem


@no_type_check
@gluon.jit
def k1_ws_kernel(
    q_desc, k_desc, v_desc, bias_desc, O, LSE, ENT, DIST, BIAS, HSCALE, WINDOW, SINK,
    FULL_NUM, FULL_IDX, PART_NUM, PART_IDX,
    q_rb, q_rh, q_ch, k_rb, k_rh, k_ch, v_rb, v_rh, v_ch,
    stride_ob, stride_om, stride_oh,
    stride_bias_b, stride_bias_h,
    stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h, stride_fi_m,
    stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m,
    n_heads, group, v_group, n_q, n_kv, diag, kv_offset, qk_scale, bias_row_len,
    HEAD_DIM: gl.constexpr, BLOCK_N: gl.constexpr, SUB: gl.constexpr, STAGES: gl.constexpr,
    CAUSAL: gl.constexpr, LOCAL: gl.constexpr, HAS_BIAS: gl.constexpr, ENTROPY: gl.constexpr,
    DISTANCE: gl.constexpr, HEAD_SCALE: gl.constexpr, num_warps: gl.constexpr, BIAS_IN_PRODUCT: gl.constexpr = False,
    TC_DISTANCE: gl.constexpr = False,
):
    dtype: gl.constexpr = q_desc.dtype
    pid_m = gl.num_programs(0) - 1 - gl.program_id(0)  # heaviest causal blocks first
    bh = gl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    vh = h // v_group
    tile_row0 = pid_m * (2 * ROWS)

    q_smem = gl.allocate_shared_memory(dtype, [2, ROWS, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    if BIAS_IN_PRODUCT:  # [keys, 16] tiles: (bias hi, bias lo, 0, ...) / qk_scale in the input dtype
        bias_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, 16], bias_desc.layout)
    else:
        bias_smem = gl.allocate_shared_memory(gl.float32, [STAGES, BLOCK_N], bias_desc.layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_bar, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_full.index(i), count=1)
        mbarrier.init(v_full.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=2)  # one arrival per consumer warpgroup
        mbarrier.init(v_empty.index(i), count=2)

    n_full, n_tot, full_base, part_base = table_row(
        FULL_NUM, FULL_IDX, PART_NUM, PART_IDX, b, h, pid_m, stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h,
        stride_fi_m, stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m, SUB)

    code: gl.constexpr = (CAUSAL * 1 + LOCAL * 2 + HAS_BIAS * 4 + ENTROPY * 8 + DISTANCE * 16 + HEAD_SCALE * 32
                          + (SUB - 1) * 64 + BIAS_IN_PRODUCT * 128 + TC_DISTANCE * 256)
    cfg_smem = gl.allocate_shared_memory(gl.int8, [code + 1], gl.SwizzledSharedLayout(1, 1, 1, [0]))
    rest = (O, LSE, ENT, DIST, HSCALE, WINDOW, SINK, b, h, bh)
    loop = (n_tot, n_full, full_base, part_base, stride_ob, stride_om, stride_oh, n_q, n_kv, diag, kv_offset, qk_scale)
    if TC_DISTANCE:
        cols_smem = _column_tile(dtype, BLOCK_N)
    else:
        cols_smem = bias_smem  # not read
    ring = (k_smem, v_smem, bias_smem, cols_smem, q_bar, k_full, v_full, k_empty, v_empty, cfg_smem)
    gl.warp_specialize([
        (_consumer, (q_smem.index(0), ) + ring + rest + (tile_row0, ) + loop),
        (_consumer, (q_smem.index(1), ) + ring + rest + (tile_row0 + ROWS, ) + loop),
        (_producer, (q_desc, k_desc, v_desc, bias_desc, q_smem, k_smem, v_smem, bias_smem, q_bar, k_full, v_full,
                     k_empty, v_empty, cfg_smem, n_tot, n_full, full_base, part_base,
                     b * q_rb + h * q_rh + tile_row0, h * q_ch, b * k_rb + kvh * k_rh, kvh * k_ch,
                     b * v_rb + vh * v_rh, vh * v_ch, bh * bias_row_len)),
    ], [4, 1], [240, 24])
