"""ACT's sink scaling as a pass after K1: exact, and the same for the Triton and the Gluon K1.

Context:
    ACT (kernels.md section 3.1) scales the attention each query pays to a selected key set S
    by ``beta`` and gives the freed mass to the other keys in proportion to their weight. With
    ``p_S`` the row's probability on S, the edited output is

        out = (1 - beta p_S) / (1 - p_S) * O_rest + beta * P_S V_S

    where ``O_rest = sum_{j not in S} p_j v_j`` (normalised by the full row sum). K1 produces
    ``O_rest`` by reading values whose S rows are zeroed (:func:`values_without`), and its
    log-sum-exp and row statistics stay those of the unedited attention. This pass then, per
    block of query rows, gathers S's keys and values only (``SEL_BLOCK`` at a time), computes
    ``p_j = exp2(s_j - lse2)`` exactly from the log-sum-exp, and rewrites the output rows. Rows
    with ``p_S`` within 1e-6 of 1 stay unedited, as in the reference.

    Why not inside K1's epilogue: nothing is subtracted here, so bf16 rounding is never
    amplified (removing P_S V_S from a full accumulator multiplied it by
    (1 - beta p_S) / (1 - p_S), 25x at p_S = 0.97); and K1 keeps its registers for its main
    loop (an epilogue with the gathers made the Gluon K1's loop ~5 % slower even with no key
    selected). Cost: one copy of V and one read/write of O, plus the gathers.
"""

from __future__ import annotations

from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Float
from torch import Tensor

from probe.kernels.triton_kernels import LOG2E, _allowed

SEL_BLOCK = 16  # selected keys gathered per step
BLOCK_M = 64  # query rows per program


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _sel_probs(q, kp_base, bias_base, sel_base, t, n_sel, lse2, offs_m, offs_d, stride_kn,
               h, diag, kv_offset, n_kv, qk_scale, window_ptr, sink_ptr,
               HEAD_DIM: tl.constexpr, SEL_BLOCK: tl.constexpr, CAUSAL: tl.constexpr,
               LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Probabilities of selected keys ``t .. t+SEL_BLOCK`` for each row, and their indices.

    The dot has K1's precision (same inputs, float32 accumulation), so ``p`` matches K1's own
    terms for these keys to ~1e-6.
    """
    offs_s = t + tl.arange(0, SEL_BLOCK)
    idx = tl.load(sel_base + offs_s, mask=offs_s < n_sel, other=-1)  # (S,)
    valid = idx >= 0
    kk = tl.load(kp_base + idx[:, None] * stride_kn + offs_d[None, :],
                 mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)  # (S, D)
    s = tl.dot(q, tl.trans(kk)) * qk_scale  # (BM, S), base 2
    if HAS_BIAS:
        s += tl.load(bias_base + idx, mask=valid, other=0.0)[None, :]
    ok = _allowed(offs_m[:, None], idx[None, :], h, diag, kv_offset, n_kv,
                  window_ptr, sink_ptr, CAUSAL, LOCAL) & valid[None, :]
    return tl.where(ok, tl.math.exp2(s - lse2[:, None]), 0.0), idx


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _act_pass_kernel(
    Q, K, V, O, LSE2, BIAS, BETA, HSCALE, WINDOW, SINK, SEL_NUM, SEL_IDX,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_om, stride_oh, stride_bias_b, stride_bias_h,
    stride_sn_b, stride_sn_h, stride_si_b, stride_si_h,
    n_heads, group, n_q, n_kv, diag, kv_offset, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, SEL_BLOCK: tl.constexpr,
    CAUSAL: tl.constexpr, LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr, HEAD_SCALE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // n_heads
    h = bh % n_heads
    kvh = h // group
    b64 = b.to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < n_q
    tile_ok = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(Q + b64 * stride_qb + h.to(tl.int64) * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
                mask=tile_ok, other=0.0)
    lse2 = tl.load(LSE2 + bh.to(tl.int64) * n_q + offs_m, mask=row_ok, other=float("inf"))
    kp_base = K + b64 * stride_kb + kvh.to(tl.int64) * stride_kh
    vp_base = V + b64 * stride_vb + kvh.to(tl.int64) * stride_vh
    bias_base = BIAS + b64 * stride_bias_b + h.to(tl.int64) * stride_bias_h
    sel_base = SEL_IDX + b * stride_si_b + h * stride_si_h
    n_sel = tl.load(SEL_NUM + b * stride_sn_b + h * stride_sn_h)
    beta = tl.load(BETA + h)

    p_s = tl.zeros([BLOCK_M], dtype=tl.float32)
    for t in range(0, n_sel, SEL_BLOCK):
        p, idx = _sel_probs(q, kp_base, bias_base, sel_base, t, n_sel, lse2, offs_m, offs_d, stride_kn, h, diag,
                            kv_offset, n_kv, qk_scale, WINDOW, SINK, HEAD_DIM, SEL_BLOCK, CAUSAL, LOCAL, HAS_BIAS)
        p_s += tl.sum(p, 1)
    rest = 1.0 - p_s
    edit = rest > 1e-6
    rest_w = tl.where(edit, (1.0 - beta * p_s) / tl.where(edit, rest, 1.0), 1.0)
    sel_w = tl.where(edit, beta, 1.0)
    sel_out = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for t in range(0, n_sel, SEL_BLOCK):
        p, idx = _sel_probs(q, kp_base, bias_base, sel_base, t, n_sel, lse2, offs_m, offs_d, stride_kn, h, diag,
                            kv_offset, n_kv, qk_scale, WINDOW, SINK, HEAD_DIM, SEL_BLOCK, CAUSAL, LOCAL, HAS_BIAS)
        vv = tl.load(vp_base + idx[:, None] * stride_vn + offs_d[None, :],
                     mask=(idx[:, None] >= 0) & (offs_d[None, :] < HEAD_DIM), other=0.0)  # (S, D)
        sel_out = tl.dot((p * sel_w[:, None]).to(vv.dtype), vv, sel_out)

    o_ptrs = O + b64 * stride_ob + h.to(tl.int64) * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    out = tl.load(o_ptrs, mask=tile_ok, other=0.0).to(tl.float32) * rest_w[:, None] + sel_out
    if HEAD_SCALE:
        out = out * tl.load(HSCALE + h)
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=tile_ok)


def values_without(value: Float[Tensor, "batch kv_head k d"], act, batch: int,
                   heads: int) -> Float[Tensor, "batch head k d"]:
    """The values per query head (GQA groups expanded) with ACT's selected keys' rows zeroed.

    A copy (a plain memory copy without GQA), then only the selected rows are zeroed, from the
    ActScale's cached key lists (padding entries go to a scratch row past the end). Masking every
    element instead ran at a third of the copy bandwidth (0.14 ms at 16k x 16 heads, H200).
    """
    kv_heads, n_kv, d = value.shape[1:]
    group = heads // kv_heads
    flat = torch.empty(batch * heads * n_kv + 1, d, device=value.device, dtype=value.dtype)
    out = flat[:-1].view(batch, kv_heads, group, n_kv, d)
    out.copy_(value[:, :, None].expand(batch, kv_heads, group, n_kv, d))
    _, _, idx = act.kernel_lists(batch, heads, n_kv, value.device)  # (B, H, width), -1 padded
    row0 = torch.arange(batch * heads, device=value.device).view(batch, heads, 1) * n_kv
    rows = torch.where(idx >= 0, row0 + idx, batch * heads * n_kv)
    flat.index_fill_(0, rows.flatten(), 0)
    return out.view(batch, heads, n_kv, d)


def act_pass(
    out: Float[Tensor, "batch q head d"],
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    lse: Float[Tensor, "batch head q"],
    act,
    rule,
    *,
    scaling: float,
    bias: Tensor,
    bias_strides: tuple[int, int],
    has_bias: bool,
    head_scale: Tensor | None,
) -> None:
    """Rewrite ``out`` (K1's output over the unselected keys) into ACT's edited output, in place.

    ``act`` is a :class:`probe.kernels.launch.ActScale`; ``rule`` the table's
    :class:`~probe.kernels.blocks.TokenRule`; ``bias`` the base-2 key bias K1 used.
    """
    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    dev = query.device
    beta, sel_num, sel_idx = act.kernel_lists(batch, heads, n_kv, dev)
    lse2 = (lse * LOG2E).contiguous()
    hscale = head_scale.to(device=dev, dtype=torch.float32).contiguous() if head_scale is not None else lse2
    grid = (triton.cdiv(n_q, BLOCK_M), batch * heads)
    _act_pass_kernel[grid](
        query, key, value, out, lse2, bias, beta, hscale,
        rule.window_tensor(heads, dev), rule.sink_tensor(heads, dev), sel_num, sel_idx,
        *query.stride()[:3], *key.stride()[:3], *value.stride()[:3],
        out.stride(0), out.stride(1), out.stride(2), *bias_strides,
        sel_num.stride(0), sel_num.stride(1), sel_idx.stride(0), sel_idx.stride(1),
        heads, heads // key.shape[1], n_q, n_kv, rule.q_offset - rule.kv_offset, rule.kv_offset, scaling * LOG2E,
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_M=BLOCK_M, SEL_BLOCK=SEL_BLOCK,
        CAUSAL=rule.causal, LOCAL=rule.local, HAS_BIAS=has_bias, HEAD_SCALE=head_scale is not None,
        num_warps=8,  # 4 spilled (sm_90a build: benchmarks/kernels/compile_report.py)
    )
