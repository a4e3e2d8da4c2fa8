"""The Triton kernels themselves: K1 (flash forward with row statistics) and K2 (column pass).

Context:
    Both kernels walk a :class:`~probe.kernels.blocks.BlockTable`, the FlexAttention-style list
    of key blocks per query block (and, for K2, of query blocks per key block). "Full" blocks
    need no mask; "partial" blocks apply the token predicate :func:`token_allowed` (key bound,
    causal, sliding window with per-head sink tokens). Dense, causal, sliding-window and every
    block-sparse pattern therefore run through the same loops.

    Units: logits are kept in base 2 (``s2 = q.k * scale * log2(e) + bias * log2(e)``) so the
    softmax uses ``exp2``; the stored log-sum-exp is converted back to natural log.

    K1 (``k1_kernel``), one program per (query block, batch x head):
        online softmax over the listed key blocks, accumulating O, l, m and, when asked,
        ``u = sum p (s2 - m)`` (entropy), ``w = sum p (j - j0)`` (distance, converted to
        ``i - j`` in the epilogue) and ``c = sum p min(t - s, W)`` (``lookback``, the
        reasoning-rhythm statistic; ``t - s`` in token positions). Each is a ``tl.constexpr``
        flag, so a call that asks for none compiles to the plain flash forward. A per-head
        output scale comes last. V may have its own head count (``v_group``), for callers whose
        values carry their own heads.

    K2 (``k2_kernel``), one program per (key block, batch x head):
        the transposed orientation ``S^T = K Q^T`` (keys on the accumulator's rows), so the
        per-key reductions are row reductions. ``p = exp2(s2 - lse2)`` is exact, no rescaling.
        Produces column sum, column max, the count of queries that see each key,
        per-tile block sum / max and, with ``BAND``, the banded column sum (``band_sum``: only
        queries ``t`` with ``lo <= t - s <= hi`` at or after their batch row's first band row).

    Loads: with ``TMA`` the Q/K/V tiles come through host-built 4-D tensor descriptors
    ``[batch, head, token, d]`` (Hopper's bulk tensor copy; out-of-range rows and the padded
    head-dim columns read as zero), which frees the per-element address registers that made
    the pointer version spill at 128x128 tiles; without it (CPU interpreter, fp32, unaligned
    strides) plain pointer loads are used. Both orders of the softmax arithmetic keep one
    fused multiply-add per logit on the unmasked, unbiased path (scale applied after the
    row max, as in the Triton tutorial).

    Head dims that are not a power of two run as two column parts when that saves work
    (``BLOCK_D`` + ``BLOCK_D2``, e.g. 80 = 64 + 16, 96 = 64 + 32, 160 = 128 + 32; see
    :func:`probe.kernels.launch.head_dim_parts`): each product is two dots accumulating into one
    S, and O keeps one accumulator per part. Other head dims pad their one part with zero
    columns (24 as 32, 112 as 128).

    Masked logits use a large finite negative (``NEG``) rather than ``-inf`` in K1 so that
    ``p * (s2 - m)`` never evaluates ``0 * inf``.
"""

from __future__ import annotations

from typing import no_type_check

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
NEG = -1.0e30


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def token_allowed(q_idx, k_idx, h, diag, kv_offset, n_kv, window_ptr, sink_ptr,
             CAUSAL: tl.constexpr, LOCAL: tl.constexpr):
    """Token predicate; ``q_idx``/``k_idx`` are broadcastable query / key index tensors."""
    ok = k_idx < n_kv
    if CAUSAL:
        ok = ok & (q_idx + diag >= k_idx)
    if LOCAL:
        window = tl.load(window_ptr + h)
        sink = tl.load(sink_ptr + h)
        ok = ok & ((q_idx + diag - k_idx < window) | (k_idx + kv_offset < sink))
    return ok


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _load_tile(base, offs_row, stride_row, n_rows,
               HEAD_DIM: tl.constexpr, COL0: tl.constexpr, WIDTH: tl.constexpr, MASK_ROWS: tl.constexpr):
    """A (rows, WIDTH) tile of columns ``COL0 ..`` of a [rows, head_dim] matrix; columns past
    the head dim and rows past ``n_rows`` (when masked) read as 0."""
    offs_d = COL0 + tl.arange(0, WIDTH)
    ptrs = base + offs_row[:, None] * stride_row + offs_d[None, :]
    if MASK_ROWS:
        if COL0 + WIDTH <= HEAD_DIM:
            tile = tl.load(ptrs, mask=offs_row[:, None] < n_rows, other=0.0)
        else:
            tile = tl.load(ptrs, mask=(offs_row[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if COL0 + WIDTH <= HEAD_DIM:
            tile = tl.load(ptrs)
        else:
            tile = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return tile


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _rows(src, b, hh, row0, stride_row, n_rows,
          ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, COL0: tl.constexpr, WIDTH: tl.constexpr,
          MASKED: tl.constexpr, TMA: tl.constexpr):
    """Rows ``row0 .. row0+ROWS``, columns ``COL0 .. COL0+WIDTH`` of one head as a (ROWS, WIDTH)
    tile, zero outside.

    ``src`` is a 4-D tensor descriptor whose box is (1, 1, ROWS, WIDTH) (TMA; the hardware
    zero-fills out-of-range rows and columns, so no masks) or a pointer already offset to (b, hh).
    """
    if TMA:
        tile = src.load([b, hh, row0, COL0]).reshape([ROWS, WIDTH])
    else:
        offs_row = row0 + tl.arange(0, ROWS)
        tile = _load_tile(src, offs_row, stride_row, n_rows, HEAD_DIM, COL0, WIDTH, MASKED)
    return tile


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _k1_block(acc, acc2, l_i, m_i, u_i, w_i, c_i, q, q2, k_src, k_src2, v_src, v_src2, bias_base, b, kvh, vh,
              start_n, row0, offs_m, stride_kn, stride_vn, h, diag, kv_offset, n_kv, qk_scale, lookback,
              window_ptr, sink_ptr,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_D2: tl.constexpr, BLOCK_N: tl.constexpr,
              MASKED: tl.constexpr, CAUSAL: tl.constexpr, LOCAL: tl.constexpr,
              HAS_BIAS: tl.constexpr, ENTROPY: tl.constexpr, DISTANCE: tl.constexpr,
              LOOKBACK: tl.constexpr, TMA: tl.constexpr):
    """One key block of the online softmax (base-2 logits). Returns the updated running state.

    Unmasked, unbiased blocks take the row max of the raw ``q.k`` and apply the scale inside
    one multiply-add (``qk * scale - m``); masked or biased blocks need the scaled logits
    before the max. ``bias_base`` holds the key bias already multiplied by log2(e). With a
    second column part (``BLOCK_D2 > 0``), ``q2``/``acc2`` and the ``*_src2`` sources hold
    columns ``BLOCK_D ..``; otherwise they are unused.
    """
    offs_n = start_n + tl.arange(0, BLOCK_N)
    k = _rows(k_src, b, kvh, start_n, stride_kn, n_kv, BLOCK_N, HEAD_DIM, 0, BLOCK_D, MASKED, TMA)  # (BN, D)
    qk = tl.dot(q, tl.trans(k))  # (BM, BN), raw q.k
    if BLOCK_D2 > 0:
        k2 = _rows(k_src2, b, kvh, start_n, stride_kn, n_kv, BLOCK_N, HEAD_DIM, BLOCK_D, BLOCK_D2, MASKED, TMA)
        qk = tl.dot(q2, tl.trans(k2), qk)
    if HAS_BIAS or MASKED:
        s = qk * qk_scale
        if HAS_BIAS:
            if MASKED:
                s += tl.load(bias_base + offs_n, mask=offs_n < n_kv, other=0.0)[None, :]
            else:
                s += tl.load(bias_base + offs_n)[None, :]
        if MASKED:
            ok = token_allowed(offs_m[:, None], offs_n[None, :], h, diag, kv_offset, n_kv,
                          window_ptr, sink_ptr, CAUSAL, LOCAL)
            s = tl.where(ok, s, -1.0e30)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        s = s - m_new[:, None]
    else:
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        s = qk * qk_scale - m_new[:, None]
    p = tl.math.exp2(s)  # (BM, BN)
    alpha = tl.math.exp2(m_i - m_new)
    if ENTROPY:
        u_i = alpha * (u_i + l_i * (m_i - m_new)) + tl.sum(p * s, 1)
    if DISTANCE:
        rel_j = (offs_n - row0).to(tl.float32)  # (BN,) key position relative to the block
        w_i = alpha * w_i + tl.sum(p * rel_j[None, :], 1)
    if LOOKBACK:
        # t - s in token positions (row i sits at i + diag in the keys' positions), clipped at W.
        clipped = tl.minimum(offs_m[:, None] + diag - offs_n[None, :], lookback)  # (BM, BN)
        c_i = alpha * c_i + tl.sum(p * clipped.to(tl.float32), 1)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _rows(v_src, b, vh, start_n, stride_vn, n_kv, BLOCK_N, HEAD_DIM, 0, BLOCK_D, MASKED, TMA)  # (BN, D)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    if BLOCK_D2 > 0:
        v2 = _rows(v_src2, b, vh, start_n, stride_vn, n_kv, BLOCK_N, HEAD_DIM, BLOCK_D, BLOCK_D2, MASKED, TMA)
        acc2 = tl.dot(p.to(v2.dtype), v2, acc2 * alpha[:, None])
    return acc, acc2, l_i, m_new, u_i, w_i, c_i


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def k1_kernel(
    Q, K, V, Q2, K2, V2, KP, O, LSE, ENT, DIST, LOOK, BIAS, HSCALE, WINDOW, SINK,
    FULL_NUM, FULL_IDX, PART_NUM, PART_IDX,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_om, stride_oh,
    stride_bias_b, stride_bias_h,
    stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h, stride_fi_m,
    stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_m,
    n_heads, group, v_group, n_q, n_kv, diag, kv_offset, qk_scale, lookback,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_D2: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, SUB: tl.constexpr, CAUSAL: tl.constexpr, LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr,
    ENTROPY: tl.constexpr, DISTANCE: tl.constexpr, HEAD_SCALE: tl.constexpr, TMA: tl.constexpr,
    WS: tl.constexpr = False, LOOKBACK: tl.constexpr = False,
):
    # Heaviest (last, under causal) query blocks first for a better tail.
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    row0 = pid_m * BLOCK_M
    offs_m = row0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    b64 = b.to(tl.int64)
    vh = h // v_group  # V may have its own heads
    kp_base = KP + b64 * stride_kb + kvh.to(tl.int64) * stride_kh
    if TMA:  # one descriptor per column part (Q2/K2/V2: the second part's boxes)
        q_src, k_src, v_src = Q, K, V
        q_src2, k_src2, v_src2 = Q2, K2, V2
    else:
        q_src = Q + b64 * stride_qb + h.to(tl.int64) * stride_qh
        k_src = kp_base
        v_src = V + b64 * stride_vb + vh.to(tl.int64) * stride_vh
        q_src2, k_src2, v_src2 = q_src, k_src, v_src
    bias_base = BIAS + b64 * stride_bias_b + h.to(tl.int64) * stride_bias_h
    q = _rows(q_src, b, h, row0, stride_qm, n_q, BLOCK_M, HEAD_DIM, 0, BLOCK_D, True, TMA)  # (BM, D)
    q2 = q
    if BLOCK_D2 > 0:
        q2 = _rows(q_src2, b, h, row0, stride_qm, n_q, BLOCK_M, HEAD_DIM, BLOCK_D, BLOCK_D2, True, TMA)

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    u_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    w_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    c_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    acc2 = 0.0  # the second column part's accumulator, when there is one
    if BLOCK_D2 > 0:
        acc2 = tl.zeros([BLOCK_M, BLOCK_D2], dtype=tl.float32)

    # Unmasked ("full") key blocks first, then the masked ("partial") ones, e.g. the diagonal.
    n_full = tl.load(FULL_NUM + b * stride_fn_b + h * stride_fn_h + pid_m)
    full_base = FULL_IDX + b * stride_fi_b + h * stride_fi_h + pid_m * stride_fi_m
    for t in tl.range(0, n_full, warp_specialize=WS):
        blk = tl.load(full_base + t)
        for sub in tl.static_range(SUB):
            acc, acc2, l_i, m_i, u_i, w_i, c_i = _k1_block(
                acc, acc2, l_i, m_i, u_i, w_i, c_i, q, q2, k_src, k_src2, v_src, v_src2, bias_base, b, kvh, vh,
                (blk * SUB + sub) * BLOCK_N, row0, offs_m, stride_kn, stride_vn, h, diag, kv_offset, n_kv,
                qk_scale, lookback, WINDOW, SINK, HEAD_DIM, BLOCK_D, BLOCK_D2, BLOCK_N, False, CAUSAL, LOCAL,
                HAS_BIAS, ENTROPY, DISTANCE, LOOKBACK, TMA)
    n_part = tl.load(PART_NUM + b * stride_pn_b + h * stride_pn_h + pid_m)
    part_base = PART_IDX + b * stride_pi_b + h * stride_pi_h + pid_m * stride_pi_m
    for t in range(0, n_part):
        blk = tl.load(part_base + t)
        for sub in tl.static_range(SUB):
            acc, acc2, l_i, m_i, u_i, w_i, c_i = _k1_block(
                acc, acc2, l_i, m_i, u_i, w_i, c_i, q, q2, k_src, k_src2, v_src, v_src2, bias_base, b, kvh, vh,
                (blk * SUB + sub) * BLOCK_N, row0, offs_m, stride_kn, stride_vn, h, diag, kv_offset, n_kv,
                qk_scale, lookback, WINDOW, SINK, HEAD_DIM, BLOCK_D, BLOCK_D2, BLOCK_N, True, CAUSAL, LOCAL,
                HAS_BIAS, ENTROPY, DISTANCE, LOOKBACK, TMA)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    if HEAD_SCALE:
        out = out * tl.load(HSCALE + h)

    row_ok = offs_m < n_q
    o_rows = O + b64 * stride_ob + h.to(tl.int64) * stride_oh + offs_m[:, None] * stride_om
    tl.store(o_rows + offs_d[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))
    if BLOCK_D2 > 0:
        offs_d2 = BLOCK_D + tl.arange(0, BLOCK_D2)
        out2 = acc2 / l_safe[:, None]
        if HEAD_SCALE:
            out2 = out2 * tl.load(HSCALE + h)
        tl.store(o_rows + offs_d2[None, :], out2.to(O.dtype.element_ty),
                 mask=row_ok[:, None] & (offs_d2[None, :] < HEAD_DIM))
    stat_off = bh.to(tl.int64) * n_q + offs_m
    log2_l = tl.math.log2(l_safe)
    tl.store(LSE + stat_off, (m_i + log2_l) * 0.6931471805599453, mask=row_ok)
    if ENTROPY:
        tl.store(ENT + stat_off, 0.6931471805599453 * (log2_l - u_i / l_safe), mask=row_ok)
    if DISTANCE:
        # w / l is the mean of (j - row0); the distance is i + diag - j.
        tl.store(DIST + stat_off, (offs_m - row0 + diag).to(tl.float32) - w_i / l_safe, mask=row_ok)
    if LOOKBACK:
        tl.store(LOOK + stat_off, c_i / l_safe, mask=row_ok)


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _k2_block(col_sum, col_max, count, band_sum, k, k2, q_src, q_src2, lse_base, bias2, b, h, start_m, offs_n,
              stride_qm, diag, kv_offset, n_q, n_kv, qk_scale, band_lo, band_hi, band_row, window_ptr, sink_ptr,
              bsum_ptr, bmax_ptr,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_D2: tl.constexpr, BLOCK_M: tl.constexpr,
              MASKED: tl.constexpr, CAUSAL: tl.constexpr, LOCAL: tl.constexpr,
              HAS_BIAS: tl.constexpr, BLOCK_STATS: tl.constexpr, BAND: tl.constexpr, TMA: tl.constexpr):
    """One query block of the column pass, in the transposed orientation (keys on rows)."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    q = _rows(q_src, b, h, start_m, stride_qm, n_q, BLOCK_M, HEAD_DIM, 0, BLOCK_D, True, TMA)  # (BM, D)
    lse2 = tl.load(lse_base + offs_m, mask=offs_m < n_q, other=float("inf"))  # +inf: no query
    kq = tl.dot(k, tl.trans(q))  # (BN, BM) = K Q^T, raw
    if BLOCK_D2 > 0:  # the second column part (see _k1_block)
        q2 = _rows(q_src2, b, h, start_m, stride_qm, n_q, BLOCK_M, HEAD_DIM, BLOCK_D, BLOCK_D2, True, TMA)
        kq = tl.dot(k2, tl.trans(q2), kq)
    if HAS_BIAS:
        st = kq * qk_scale + (bias2[:, None] - lse2[None, :])
    else:
        st = kq * qk_scale - lse2[None, :]
    valid_q = lse2 < float("inf")
    if MASKED:
        ok = token_allowed(offs_m[None, :], offs_n[:, None], h, diag, kv_offset, n_kv,
                      window_ptr, sink_ptr, CAUSAL, LOCAL) & valid_q[None, :]
        p = tl.where(ok, tl.math.exp2(st), 0.0)
        count += tl.sum(ok.to(tl.float32), 1)
    else:
        p = tl.math.exp2(st)
        count += tl.sum(valid_q.to(tl.float32), 0)
    row_sum = tl.sum(p, 1)  # (BN,)
    row_max = tl.max(p, 1)
    col_sum += row_sum
    col_max = tl.maximum(col_max, row_max)
    if BAND:
        # Queries t of key s's band: band_lo <= t - s <= band_hi, and t at or after the batch
        # row's first band query. Padding queries have p = 0 already (their lse2 is +inf).
        ahead = offs_m[None, :] + diag - offs_n[:, None]  # (BN, BM), t - s in token positions
        in_band = (ahead >= band_lo) & (ahead <= band_hi) & (offs_m[None, :] >= band_row)
        band_sum += tl.sum(tl.where(in_band, p, 0.0), 1)
    if BLOCK_STATS:
        # Tile statistics from the per-key partials: no second pass over the (BN, BM) tile.
        tl.store(bsum_ptr, tl.sum(row_sum, 0))
        tl.store(bmax_ptr, tl.max(row_max, 0))
    return col_sum, col_max, count, band_sum


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def k2_kernel(
    Q, K, Q2, K2, LSE2, BIAS, COL_SUM, COL_MAX, COUNT, BSUM, BMAX, BAND_SUM, BAND_ROW, WINDOW, SINK,
    FULL_NUM, FULL_IDX, PART_NUM, PART_IDX,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_bias_b, stride_bias_h,
    stride_fn_b, stride_fn_h, stride_fi_b, stride_fi_h, stride_fi_n,
    stride_pn_b, stride_pn_h, stride_pi_b, stride_pi_h, stride_pi_n,
    stride_bs_bh, stride_bs_q,
    n_heads, group, n_q, n_kv, diag, kv_offset, qk_scale, band_lo, band_hi,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_D2: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_STATS: tl.constexpr, TMA: tl.constexpr, BAND: tl.constexpr = False,
):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    b64 = b.to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if TMA:
        q_src, k_src, q_src2, k_src2 = Q, K, Q2, K2
    else:
        q_src = Q + b64 * stride_qb + h.to(tl.int64) * stride_qh
        k_src = K + b64 * stride_kb + kvh.to(tl.int64) * stride_kh
        q_src2, k_src2 = q_src, k_src
    lse_base = LSE2 + bh.to(tl.int64) * n_q
    k = _rows(k_src, b, kvh, pid_n * BLOCK_N, stride_kn, n_kv, BLOCK_N, HEAD_DIM, 0, BLOCK_D, True, TMA)  # (BN, D)
    k2 = k
    if BLOCK_D2 > 0:
        k2 = _rows(k_src2, b, kvh, pid_n * BLOCK_N, stride_kn, n_kv, BLOCK_N, HEAD_DIM, BLOCK_D, BLOCK_D2, True, TMA)
    bias2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    if HAS_BIAS:
        bias_base = BIAS + b64 * stride_bias_b + h.to(tl.int64) * stride_bias_h
        bias2 = tl.load(bias_base + offs_n, mask=offs_n < n_kv, other=0.0)  # already x log2(e)
    col_sum = tl.zeros([BLOCK_N], dtype=tl.float32)
    col_max = tl.zeros([BLOCK_N], dtype=tl.float32)
    count = tl.zeros([BLOCK_N], dtype=tl.float32)
    band_sum = tl.zeros([BLOCK_N], dtype=tl.float32)
    band_row = 0
    if BAND:
        band_row = tl.load(BAND_ROW + b)  # this batch row's first query index that counts
    tile_base = bh.to(tl.int64) * stride_bs_bh + pid_n

    n_full = tl.load(FULL_NUM + b * stride_fn_b + h * stride_fn_h + pid_n)
    full_base = FULL_IDX + b * stride_fi_b + h * stride_fi_h + pid_n * stride_fi_n
    for t in range(0, n_full):
        qb = tl.load(full_base + t)
        col_sum, col_max, count, band_sum = _k2_block(
            col_sum, col_max, count, band_sum, k, k2, q_src, q_src2, lse_base, bias2, b, h, qb * BLOCK_M, offs_n,
            stride_qm, diag, kv_offset, n_q, n_kv, qk_scale, band_lo, band_hi, band_row, WINDOW, SINK,
            BSUM + tile_base + qb * stride_bs_q, BMAX + tile_base + qb * stride_bs_q,
            HEAD_DIM, BLOCK_D, BLOCK_D2, BLOCK_M, False, CAUSAL, LOCAL, HAS_BIAS, BLOCK_STATS, BAND, TMA)
    n_part = tl.load(PART_NUM + b * stride_pn_b + h * stride_pn_h + pid_n)
    part_base = PART_IDX + b * stride_pi_b + h * stride_pi_h + pid_n * stride_pi_n
    for t in range(0, n_part):
        qb = tl.load(part_base + t)
        col_sum, col_max, count, band_sum = _k2_block(
            col_sum, col_max, count, band_sum, k, k2, q_src, q_src2, lse_base, bias2, b, h, qb * BLOCK_M, offs_n,
            stride_qm, diag, kv_offset, n_q, n_kv, qk_scale, band_lo, band_hi, band_row, WINDOW, SINK,
            BSUM + tile_base + qb * stride_bs_q, BMAX + tile_base + qb * stride_bs_q,
            HEAD_DIM, BLOCK_D, BLOCK_D2, BLOCK_M, True, CAUSAL, LOCAL, HAS_BIAS, BLOCK_STATS, BAND, TMA)

    out_off = bh.to(tl.int64) * n_kv + offs_n
    key_ok = offs_n < n_kv
    tl.store(COL_SUM + out_off, col_sum, mask=key_ok)
    tl.store(COL_MAX + out_off, col_max, mask=key_ok)
    tl.store(COUNT + out_off, count, mask=key_ok)
    if BAND:
        tl.store(BAND_SUM + out_off, band_sum, mask=key_ok)
