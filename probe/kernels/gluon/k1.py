"""K1 for Hopper written in Gluon: the flash forward with explicit asynchronous wgmma.

Context:
    Triton's own pipeliner keeps a ``tl.dot`` asynchronous only when its result feeds another
    dot as the accumulator (``dotCanBeProperlyAsync`` in Triton's WGMMA pipeliner), so in the
    Triton K1 (:mod:`probe.kernels.triton_kernels`) the softmax of a key block never overlaps
    a matrix product: the tensor cores idle while the exponentials run, which is why it sat at
    0.68-0.76x cuDNN. Gluon (``triton.experimental.gluon``, shipped with Triton 3.6) exposes the
    wgmma issue/wait pair directly, so this kernel schedules it as FlashAttention-3's
    "intra-warpgroup overlap" does:

        issue S_t = Q K_t^T            (async)
        issue O  += P_{t-1} V_{t-1}    (async, P in registers)
        wait for S_t only              (the PV product keeps running)
        softmax of S_t -> P_t, alpha_t (runs while PV_{t-1} is on the tensor cores)
        wait for PV_{t-1}; O *= alpha_t

    One program owns ``BLOCK_M`` query rows, 16 per warp: 128 rows with 8 warps (two
    warpgroups) or 64 rows with 4 warps (one warpgroup, two programs per SM that the warp
    schedulers interleave, a hardware stand-in for FA3's ping-pong). A table row of
    ``TABLE_BQ`` (128) queries may be shared by two 64-row programs. K and V tiles
    arrive by TMA into a ring of ``STAGES`` shared-memory buffers, each with its own mbarrier;
    a buffer is refilled once both warpgroups have finished the products that read it.

    It walks the same :class:`~probe.kernels.blocks.BlockTable` lists as the Triton K1 (full
    blocks unmasked, then partial blocks through the token predicate) and writes the same
    outputs: O, the log-sum-exp and, when asked, entropy and mean distance, with the key bias
    and per-head output scale (ACT runs as a pass after it, :mod:`probe.kernels.act.row_pass`).
    The kernel takes head dims 64 and 128; dispatch (:func:`probe.kernels.launch.flash_forward`)
    sends it hd128 only, because the Triton K1 measured as fast at hd64 (notes/kernels.md).

    Measured on the lent H100 (bf16, hd128, 4k-32k): 0.78-0.91x cuDNN's throughput, against
    0.64-0.84x for the Triton K1 in the same runs. On Hopper the warp-specialised version of
    this loop (:mod:`probe.kernels.gluon.k1_ws`, 0.95-1.11x) is the default; this kernel runs
    with ``HEADSCOPE_GLUON_WS=0`` or 64-row tiles, and its helpers serve both.

    Units and masking follow the Triton K1: base-2 logits, masked logits at ``NEG`` (finite).

    Operands are read through 2-D tensor descriptors over a row-major view of the
    ``[batch, head, token, d]`` tensors (``[B*H*N, d]`` when heads are contiguous blocks,
    ``[B*N, H*d]`` for HF's ``[batch, token, head, d]`` memory); rows past a head's end read
    the next head's rows, which only partial (masked) blocks and unstored query rows ever see.
"""

from __future__ import annotations

from typing import no_type_check

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

NEG = gl.constexpr(-1.0e30)
LN2 = gl.constexpr(0.6931471805599453)


@no_type_check
@gluon.jit
def token_allowed(q_idx, k_idx, h, diag, kv_offset, n_kv, window_ptr, sink_ptr,
             CAUSAL: gl.constexpr, LOCAL: gl.constexpr):
    """Token predicate (same as the Triton K1's): key bound, causal, window with sinks."""
    ok = k_idx < n_kv
    if CAUSAL:
        ok = ok & (q_idx + diag >= k_idx)
    if LOCAL:
        window = gl.load(window_ptr + h)
        sink = gl.load(sink_ptr + h)
        ok = ok & ((q_idx + diag - k_idx < window) | (k_idx + kv_offset < sink))
    return ok


@no_type_check
@gluon.jit
def block_start(u, n_full, full_base, part_base, live, BLOCK_N: gl.constexpr, SUB: gl.constexpr):
    """First key of the ``u``-th visited step: table entry ``u // SUB`` (full entries first, then
    partial ones), sub-block ``u % SUB`` of it; 0 if not live."""
    t = u // SUB
    ptr = gl.where(t < n_full, full_base + t, part_base + (t - n_full))
    return gl.load(ptr, mask=live, other=0) * (BLOCK_N * SUB) + (u % SUB) * BLOCK_N


@no_type_check
@gluon.jit
def issue_kv(desc, smem, bar, u, n_steps, n_full, full_base, part_base, row_base, col,
              BLOCK_N: gl.constexpr, SUB: gl.constexpr):
    """TMA of the ``u``-th key (or value) tile into ``smem`` (skipped past the list's end)."""
    live = u < n_steps
    start = block_start(u, n_full, full_base, part_base, live, BLOCK_N, SUB)
    mbarrier.expect(bar, desc.block_type.nbytes, pred=live)
    tma.async_copy_global_to_shared(desc, [row_base + start, col], bar, smem, pred=live)


@no_type_check
@gluon.jit
def _load_bias(base, start_n, n_kv, s_layout: gl.constexpr, BLOCK_N: gl.constexpr):
    """The base-2 key bias of the step starting at ``start_n``, 0 past the keys."""
    offs_n = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    return gl.load(base + offs_n, mask=offs_n < n_kv, other=0.0)


@no_type_check
@gluon.jit
def softmax_step(s, m_i, l_i, u_i, w_i, start_n, bias, cols_f, row0, masked, offs_m, h, diag,
                  kv_offset, n_kv, qk_scale, window_ptr, sink_ptr, s_layout: gl.constexpr,
                  BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr, LOCAL: gl.constexpr,
                  HAS_BIAS: gl.constexpr, ENTROPY: gl.constexpr, DISTANCE: gl.constexpr,
                  TC_DIST: gl.constexpr = False):
    """Online-softmax update for one (BLOCK_M, BLOCK_N) tile of raw ``q.k``; returns P unnormalised.

    ``bias`` (base-2 key bias of this step) and ``start_n`` were loaded a step ahead. ``cols_f``
    is ``0 .. BLOCK_N-1`` as float32, converted once before the loop: converting each key
    position every step put 32 int-to-float conversions per thread on the same slow pipe as
    the exponentials. With ``TC_DIST`` the caller's tensor cores add ``sum p c`` (P times a
    column-index tile, :mod:`probe.kernels.gluon.k1_ws`) and this step only the block offsets.
    """
    if HAS_BIAS:
        s = s * qk_scale + bias[None, :]
        if masked:
            offs_n = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            ok = token_allowed(offs_m[:, None], offs_n[None, :], h, diag, kv_offset, n_kv,
                          window_ptr, sink_ptr, CAUSAL, LOCAL)
            s = gl.where(ok, s, NEG)
        m_new = gl.maximum(m_i, gl.max(s, 1))
        s = s - m_new[:, None]
    else:
        if masked:
            offs_n = start_n + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
            ok = token_allowed(offs_m[:, None], offs_n[None, :], h, diag, kv_offset, n_kv,
                          window_ptr, sink_ptr, CAUSAL, LOCAL)
            s = gl.where(ok, s * qk_scale, NEG)
            m_new = gl.maximum(m_i, gl.max(s, 1))
            s = s - m_new[:, None]
        else:
            m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
            s = s * qk_scale - m_new[:, None]
    p = gl.exp2(s)
    alpha = gl.exp2(m_i - m_new)
    if ENTROPY:
        u_i = alpha * (u_i + l_i * (m_i - m_new)) + gl.sum(p * s, 1)
    p_sum = gl.sum(p, 1)
    if DISTANCE:
        # sum p (j - row0) = (start_n - row0) sum p + sum p c, c the column inside the step
        w_i = alpha * w_i + (start_n - row0).to(gl.float32) * p_sum
        if not TC_DIST:
            w_i += gl.sum(p * cols_f[None, :], 1)
    l_i = l_i * alpha + p_sum
    return p, alpha, m_new, l_i, u_i, w_i


@no_type_check
@gluon.jit
def k1_gluon_kernel(
    q_desc, k_desc, v_desc, O, LSE, ENT, DIST, BIAS, HSCALE, WINDOW, SINK,
    FULL_NUM, FULL_IDX, PART_NUM, PART_IDX,
    q_rb, q_rh, q_ch, k_rb, k_rh, k_ch, v_rb, v_rh, v_ch,
    stride_ob, stride_om, stride_oh,
    stride_bias_b, stride_bias_h,
    stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h, stride_fi_m,
    stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m,
    n_heads, group, v_group, n_q, n_kv, diag, kv_offset, qk_scale,
    HEAD_DIM: gl.constexpr, BLOCK_M: gl.constexpr, TABLE_BQ: gl.constexpr, BLOCK_N: gl.constexpr,
    SUB: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr, LOCAL: gl.constexpr,
    HAS_BIAS: gl.constexpr, ENTROPY: gl.constexpr, DISTANCE: gl.constexpr,
    HEAD_SCALE: gl.constexpr, V_MAP: gl.constexpr, num_warps: gl.constexpr,
):
    dtype: gl.constexpr = q_desc.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                       instr_shape=[16, HEAD_DIM, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)

    pid_m = gl.num_programs(0) - 1 - gl.program_id(0)  # heaviest causal blocks first
    bh = gl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    row0 = pid_m * BLOCK_M
    t_row = row0 // TABLE_BQ  # table row (query block of TABLE_BQ rows) holding these BLOCK_M rows
    offs_m = row0 + gl.arange(0, BLOCK_M, layout=row_s)
    bias_base = BIAS + b.to(gl.int64) * stride_bias_b + h.to(gl.int64) * stride_bias_h

    q_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_bar, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_bar.index(i), count=1)
        mbarrier.init(v_bar.index(i), count=1)

    n_full, n_tot, full_base, part_base = table_row(
        FULL_NUM, FULL_IDX, PART_NUM, PART_IDX, b, h, t_row, stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h,
        stride_fi_m, stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m, SUB)
    kv_row = b * k_rb + kvh * k_rh
    kv_col = kvh * k_ch
    if V_MAP:  # V has its own heads or memory layout (ACT's values are per query head)
        vh = h // v_group
        v_row = b * v_rb + vh * v_rh
        v_col = vh * v_ch
    else:  # V shares K's coordinates (one less live register pair in the loop)
        v_row = kv_row
        v_col = kv_col

    mbarrier.expect(q_bar, q_desc.block_type.nbytes)
    tma.async_copy_global_to_shared(q_desc, [b * q_rb + h * q_rh + row0, h * q_ch], q_bar, q_smem)
    for i in gl.static_range(STAGES):
        issue_kv(k_desc, k_smem.index(i), k_bar.index(i), i, n_tot, n_full, full_base, part_base,
                  kv_row, kv_col, BLOCK_N, SUB)
        issue_kv(v_desc, v_smem.index(i), v_bar.index(i), i, n_tot, n_full, full_base, part_base,
                  v_row, v_col, BLOCK_N, SUB)

    m_i = gl.full([BLOCK_M], NEG, gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    u_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    w_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)
    s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)

    if n_tot > 0:
        mbarrier.wait(q_bar, 0)
        acc, m_i, l_i, u_i, w_i = _loop_pv_behind(
            acc, m_i, l_i, u_i, w_i, s_zero, q_smem, k_smem, v_smem, k_desc, v_desc, k_bar, v_bar,
            n_tot, n_full, full_base, part_base, kv_row, kv_col, v_row, v_col, row0, offs_m, bias_base,
            h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout, o_layout, p_layout, dtype, BLOCK_N, SUB,
            STAGES, CAUSAL, LOCAL, HAS_BIAS, ENTROPY, DISTANCE)

    mbarrier.invalidate(q_bar)
    for i in gl.static_range(STAGES):
        mbarrier.invalidate(k_bar.index(i))
        mbarrier.invalidate(v_bar.index(i))

    finish_rows(acc, m_i, l_i, u_i, w_i, offs_m, row0, O, LSE, ENT, DIST, HSCALE, b, h, bh, n_q, diag,
                 stride_ob, stride_om, stride_oh, o_layout, BLOCK_M, HEAD_DIM, ENTROPY, DISTANCE, HEAD_SCALE,
                 num_warps)


@no_type_check
@gluon.jit
def _loop_pv_behind(acc, m_i, l_i, u_i, w_i, s_zero, q_smem, k_smem, v_smem, k_desc, v_desc, k_bar, v_bar,
                    n_tot, n_full, full_base, part_base, kv_row, kv_col, v_row, v_col, row0, offs_m, bias_base,
                    h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout: gl.constexpr,
                    o_layout: gl.constexpr, p_layout: gl.constexpr, dtype: gl.constexpr, BLOCK_N: gl.constexpr,
                    SUB: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr, LOCAL: gl.constexpr,
                    HAS_BIAS: gl.constexpr, ENTROPY: gl.constexpr, DISTANCE: gl.constexpr):
    """Issue S_t and P_{t-1}V_{t-1}, wait for S_t only; the softmax of S_t overlaps the P.V product.

    The next step's first key and its key bias are loaded while S_t is still on the tensor cores, so their memory latency stays off the softmax's path. (Loading them at the
    top of their own step instead measured no faster and spilled with every statistic on.)

    (Issuing S_{t+1} before the softmax of S_t instead, FA3's order, measured 0.46-0.67x cuDNN on
    the lent H100 against 0.79-0.87x for this order: benchmarks/kernels/runs/gluon_schedules_h100.txt.)
    """
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    cols_f = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout)).to(gl.float32)
    start_n = block_start(0, n_full, full_base, part_base, True, BLOCK_N, SUB)
    bias = 0.0
    if HAS_BIAS:
        bias = _load_bias(bias_base, start_n, n_kv, s_layout, BLOCK_N)
    mbarrier.wait(k_bar.index(0), 0)
    s_tok = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s_tok, ))
    p, alpha, m_i, l_i, u_i, w_i = softmax_step(
        s, m_i, l_i, u_i, w_i, start_n, bias, cols_f, row0, n_full == 0, offs_m, h, diag, kv_offset,
        n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_N, CAUSAL, LOCAL, HAS_BIAS, ENTROPY, DISTANCE)
    p_op = gl.convert_layout(p.to(dtype), p_layout)
    start_n = block_start(1, n_full, full_base, part_base, n_tot > 1, BLOCK_N, SUB)
    if HAS_BIAS:
        bias = _load_bias(bias_base, start_n, n_kv, s_layout, BLOCK_N)
    gl.thread_barrier()  # both warpgroups are done reading K[0]
    issue_kv(k_desc, k_smem.index(0), k_bar.index(0), STAGES, n_tot, n_full, full_base, part_base,
              kv_row, kv_col, BLOCK_N, SUB)
    for t in range(1, n_tot):
        stage = t % STAGES
        prev = (t - 1) % STAGES
        mbarrier.wait(k_bar.index(stage), (t // STAGES) & 1)
        s_tok = warpgroup_mma(q_smem, k_smem.index(stage).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        mbarrier.wait(v_bar.index(prev), ((t - 1) // STAGES) & 1)
        acc_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
        start_next = block_start(t + 1, n_full, full_base, part_base, t + 1 < n_tot, BLOCK_N, SUB)
        if HAS_BIAS:
            bias_next = _load_bias(bias_base, start_next, n_kv, s_layout, BLOCK_N)
        s = warpgroup_mma_wait(num_outstanding=1, deps=(s_tok, ))
        p, alpha, m_i, l_i, u_i, w_i = softmax_step(
            s, m_i, l_i, u_i, w_i, start_n, bias, cols_f, row0, t // SUB >= n_full, offs_m, h, diag,
            kv_offset, n_kv, qk_scale, WINDOW, SINK, s_layout, BLOCK_N, CAUSAL, LOCAL, HAS_BIAS, ENTROPY, DISTANCE)
        acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, p_op))
        acc = acc * gl.convert_layout(alpha, row_o)[:, None]
        p_op = gl.convert_layout(p.to(dtype), p_layout)
        start_n = start_next
        if HAS_BIAS:
            bias = bias_next
        gl.thread_barrier()  # K[stage] and V[prev] are free in both warpgroups
        issue_kv(k_desc, k_smem.index(stage), k_bar.index(stage), t + STAGES, n_tot, n_full, full_base,
                  part_base, kv_row, kv_col, BLOCK_N, SUB)
        issue_kv(v_desc, v_smem.index(prev), v_bar.index(prev), t - 1 + STAGES, n_tot, n_full, full_base,
                  part_base, v_row, v_col, BLOCK_N, SUB)
    last = (n_tot - 1) % STAGES
    mbarrier.wait(v_bar.index(last), ((n_tot - 1) // STAGES) & 1)
    acc_tok = warpgroup_mma(p_op, v_smem.index(last), acc, is_async=True)
    acc, p_op = warpgroup_mma_wait(num_outstanding=0, deps=(acc_tok, p_op))
    return acc, m_i, l_i, u_i, w_i


@no_type_check
@gluon.jit
def table_row(FULL_NUM, FULL_IDX, PART_NUM, PART_IDX, b, h, t_row, stride_fn_b, stride_fn_h, stride_fi_b,
               stride_fi_h, stride_fi_m, stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m,
               SUB: gl.constexpr):
    """Row ``t_row`` of (b, h)'s block table: full blocks, steps of BLOCK_N keys, both list bases."""
    n_full = gl.load(FULL_NUM + b * stride_fn_b + h * stride_fn_h + t_row)
    n_part = gl.load(PART_NUM + b * stride_pn_b + h * stride_pn_h + t_row)
    full_base = FULL_IDX + b * stride_fi_b + h * stride_fi_h + t_row * stride_fi_m
    part_base = PART_IDX + b * stride_pi_b + h * stride_pi_h + t_row * stride_pi_m
    return n_full, (n_full + n_part) * SUB, full_base, part_base


@no_type_check
@gluon.jit
def finish_rows(acc, m_i, l_i, u_i, w_i, offs_m, row0, O, LSE, ENT, DIST, HSCALE, b, h, bh, n_q, diag,
                 stride_ob, stride_om, stride_oh, o_layout: gl.constexpr, ROWS: gl.constexpr,
                 HEAD_DIM: gl.constexpr, ENTROPY: gl.constexpr, DISTANCE: gl.constexpr,
                 HEAD_SCALE: gl.constexpr, num_warps: gl.constexpr):
    """Normalise and store ``ROWS`` output rows (head scale last), their log-sum-exp and statistics."""
    l_safe = gl.where(l_i > 0.0, l_i, 1.0)
    out = acc / gl.convert_layout(l_safe, gl.SliceLayout(1, o_layout))[:, None]
    if HEAD_SCALE:
        out = out * gl.load(HSCALE + h)
    _store_rows(out.to(O.dtype.element_ty), O, b, h, row0, n_q, stride_ob, stride_om, stride_oh,
                ROWS, HEAD_DIM, num_warps)
    row_ok = offs_m < n_q
    stat_off = bh.to(gl.int64) * n_q + offs_m
    log2_l = gl.log2(l_safe)
    gl.store(LSE + stat_off, (m_i + log2_l) * LN2, mask=row_ok)
    if ENTROPY:
        gl.store(ENT + stat_off, LN2 * (log2_l - u_i / l_safe), mask=row_ok)
    if DISTANCE:
        gl.store(DIST + stat_off, (offs_m - row0 + diag).to(gl.float32) - w_i / l_safe, mask=row_ok)


@no_type_check
@gluon.jit
def _store_rows(out, O, b, h, row0, n_q, stride_ob, stride_om, stride_oh,
                BLOCK_M: gl.constexpr, HEAD_DIM: gl.constexpr, num_warps: gl.constexpr):
    """Coalesced, row-masked store of a (BLOCK_M, HEAD_DIM) tile into O ``[batch, q, head, d]``."""
    store_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 8], threads_per_warp=[32 * 8 // HEAD_DIM,
                                                  HEAD_DIM // 8], warps_per_cta=[num_warps, 1], order=[1, 0])
    tile = gl.convert_layout(out, store_layout)
    offs_m = row0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, store_layout))
    offs_d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, store_layout))
    base = O + b.to(gl.int64) * stride_ob + h.to(gl.int64) * stride_oh
    ptrs = base + offs_m.to(gl.int64)[:, None] * stride_om + offs_d[None, :]
    gl.store(ptrs, tile, mask=(offs_m < n_q)[:, None])
