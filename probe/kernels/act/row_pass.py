"""ACT's sink scaling as a pass after K1: exact, and the same for the Triton and the Gluon K1.

Context:
    ACT (kernels.md section 3.1) scales the attention each query pays to a selected key set S
    by ``beta`` and gives the freed mass to the other keys in proportion to their weight. With
    ``p_S`` the row's probability on S, the edited output is

        out = (1 - beta p_S) / (1 - p_S) * O_rest + beta * P_S V_S

    where ``O_rest = sum_{j not in S} p_j v_j`` (normalised by the full row sum). K1 produces
    the output over values whose rows in U are zeroed, U the union of the selections of the
    query heads sharing a KV head (:func:`rows_zeroed`, in place and restored when nothing
    else can see the values, else on a copy; no GQA expansion either way). Its log-sum-exp and
    row statistics are those of the unedited attention. This pass then, per block of query
    rows, walks U's keys (``SEL_BLOCK`` at a time), computes ``p_j = exp2(s_j - lse2)`` exactly
    from the log-sum-exp, and rewrites the output rows:

        out = w (O_U + sum_{j in U, not in S} p_j v_j) + beta sum_{j in S} p_j v_j,  w = (1 - beta p_S) / (1 - p_S)

    (a head of the group with no selection of its own gets back exactly what was zeroed).
    Rows with ``p_S`` within 1e-6 of 1 stay unedited, as in the reference. When asked, the
    same walk turns K1's entropy and distance rows into the edited attention's
    (:func:`_edit_row_stats`) and writes each row's two factors, which the column statistics
    of the edited attention need (:mod:`probe.kernels.act.columns`).

    Why not inside K1's epilogue: nothing is subtracted here, so bf16 rounding is never
    amplified (removing P_S V_S from a full accumulator multiplied it by
    (1 - beta p_S) / (1 - p_S), 25x at p_S = 0.97); and K1 keeps its registers for its main
    loop (an epilogue with the gathers made the Gluon K1's loop ~5 % slower even with no key
    selected). Cost: one read of Q, one read/write of O, the gathers, and the zeroing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probe.kernels.blocks import selected_lists
from probe.kernels.triton_kernels import LOG2E, token_allowed

SEL_BLOCK = 16  # selected keys gathered per step
# Query rows per program, warps: 74-76 us at 16k x 16 heads on the lent H100, against 84 for
# (128, 8), 101-103 for (32, 4), 109-114 for (64, 8) (bench_kernels.py --section profile-act).
ROWS_AND_WARPS = (64, 4)


def _rows_and_warps() -> tuple[int, int]:
    """The pass's tile; ``HEADSCOPE_ACT_TILE=rows,warps`` overrides (benchmarks)."""
    override = os.environ.get("HEADSCOPE_ACT_TILE")
    return tuple(int(x) for x in override.split(",")) if override else ROWS_AND_WARPS


@dataclass(frozen=True)
class ActLists:
    """ACT's selected keys as the kernels take them (:func:`act_lists`).

    Attributes:
        beta: ``[head]``, the scale of each head's own selection.
        count: ``[batch, head]``, entries in each head's list.
        keys: ``[batch, head, width]``, the keys selected by any head of the head's KV group,
            ascending, padded with -1 to a multiple of ``SEL_BLOCK``.
        mine: ``[batch, head, width]``, 1.0 where the entry is the head's own selection.
        zero_rows: ``(batch, kv_head, key)`` index tensors of the value rows to zero (the
            groups' selections).
    """

    beta: Float[Tensor, " head"]
    count: Int[Tensor, "batch head"]
    keys: Int[Tensor, "batch head width"]
    mine: Float[Tensor, "batch head width"]
    zero_rows: tuple[Tensor, Tensor, Tensor]


def act_lists(selected: Bool[Tensor, "_ _ key"], factor: Float[Tensor, " head"], batch: int, heads: int,
              kv_heads: int, device) -> ActLists:
    """The pass's key lists for ``selected`` keys scaled by ``factor`` (one device sync)."""
    n_kv = selected.shape[-1]
    group = heads // kv_heads
    sel = selected.to(device).expand(batch, heads, n_kv)
    union = sel.reshape(batch, kv_heads, group, n_kv).any(2)  # (B, KVH, K)
    count, idx = selected_lists(union.repeat_interleave(group, dim=1))
    width = triton.cdiv(idx.shape[-1], SEL_BLOCK) * SEL_BLOCK
    listed = torch.arange(idx.shape[-1], device=device) < count[..., None]
    keys = torch.nn.functional.pad(torch.where(listed, idx, -1), (0, width - idx.shape[-1]), value=-1)
    mine = sel.gather(-1, keys.clamp(min=0).long()) & (keys >= 0)
    return ActLists(beta=factor.to(device=device, dtype=torch.float32).contiguous(), count=count.contiguous(),
                    keys=keys.contiguous(), mine=mine.float().contiguous(), zero_rows=union.nonzero(as_tuple=True))


@contextlib.contextmanager
def rows_zeroed(value: Float[Tensor, "batch kv_head key d"], rows: tuple[Tensor, Tensor, Tensor],
                *others: Tensor) -> Iterator[Tensor]:
    """``value`` with ``rows`` zeroed while the block runs.

    In place, and restored on exit (exceptions included), when that is safe: nothing needs
    autograd's record of the tensor, its elements do not overlap (no broadcast views), and it
    shares no storage with ``others`` (the query and key: a fused projection's views would see
    the zeros). Otherwise a copy, which costs one read and write of the values. In place, a
    reader of ``value`` on another CUDA stream or thread during the call would see the zeros.
    """
    zero = torch.zeros((), dtype=value.dtype, device=value.device)  # a Python 0 is a blocking host copy
    if not _safe_to_edit_in_place(value, others):
        yield value.clone().index_put_(rows, zero)
        return
    saved = value[rows]
    value.index_put_(rows, zero)
    try:
        yield value
    finally:
        value.index_put_(rows, saved)


def _safe_to_edit_in_place(value: Tensor, others: tuple[Tensor, ...]) -> bool:
    if value.requires_grad or (value.is_inference() and not torch.is_inference_mode_enabled()):
        return False
    storage = value.untyped_storage().data_ptr()
    if any(o.untyped_storage().data_ptr() == storage for o in others):
        return False
    extent = 1  # no two elements alias: each dim's stride passes the span of the smaller ones
    for stride, size in sorted((st, sz) for st, sz in zip(value.stride(), value.shape) if sz > 1):
        if stride < extent:
            return False
        extent = stride * size
    return True


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _listed_probs(q, kp_base, bias_base, keys_base, mine_base, t, lse2, offs_m, offs_d, stride_kn,
                  h, diag, kv_offset, n_kv, qk_scale, window_ptr, sink_ptr,
                  HEAD_DIM: tl.constexpr, SEL_BLOCK: tl.constexpr, CAUSAL: tl.constexpr,
                  LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Probabilities of listed keys ``t .. t+SEL_BLOCK`` for each row, their indices and flags.

    The dot has K1's precision (same inputs, float32 accumulation), so ``p`` matches K1's own
    terms for these keys to ~1e-6.
    """
    offs_s = t + tl.arange(0, SEL_BLOCK)
    idx = tl.load(keys_base + offs_s)  # (S,), -1 = padding
    mine = tl.load(mine_base + offs_s)
    valid = idx >= 0
    kk = tl.load(kp_base + idx[:, None] * stride_kn + offs_d[None, :],
                 mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)  # (S, D)
    s = tl.dot(q, tl.trans(kk)) * qk_scale  # (BM, S), base 2
    if HAS_BIAS:
        s += tl.load(bias_base + idx, mask=valid, other=0.0)[None, :]
    ok = token_allowed(offs_m[:, None], idx[None, :], h, diag, kv_offset, n_kv,
                  window_ptr, sink_ptr, CAUSAL, LOCAL) & valid[None, :]
    return tl.where(ok, tl.math.exp2(s - lse2[:, None]), 0.0), idx, mine


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _edit_row_stats(ENT, DIST, bh, n_q, offs_m, row_ok, p_s, ent_s, dist_s, own_w, rest_w,
                    ENTROPY: tl.constexpr, DISTANCE: tl.constexpr):
    """Rewrite K1's entropy and distance rows (of the unedited attention) into the edited ones.

    The edit scales the row's probabilities on S by ``a = own_w`` and the rest by ``r = rest_w``,
    so with ``H = H_S + H_R`` (``H_S = -sum_S p ln p``) and ``D = D_S + D_R``:
    ``H' = a H_S - a p_S ln a + r (H - H_S) - r (1 - p_S) ln r`` and ``D' = a D_S + r (D - D_S)``.
    """
    a_ln_a = tl.where(own_w > 0, own_w * tl.log(tl.where(own_w > 0, own_w, 1.0)), 0.0)
    r_ln_r = tl.where(rest_w > 0, rest_w * tl.log(tl.where(rest_w > 0, rest_w, 1.0)), 0.0)
    if ENTROPY:
        rows = ENT + bh.to(tl.int64) * n_q + offs_m
        ent = tl.load(rows, mask=row_ok, other=0.0)
        tl.store(rows, own_w * ent_s - a_ln_a * p_s + rest_w * (ent - ent_s) - r_ln_r * (1.0 - p_s), mask=row_ok)
    if DISTANCE:
        rows = DIST + bh.to(tl.int64) * n_q + offs_m
        dist = tl.load(rows, mask=row_ok, other=0.0)
        tl.store(rows, own_w * dist_s + rest_w * (dist - dist_s), mask=row_ok)


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _act_pass_kernel(
    Q, K, V, O, LSE, BIAS, BETA, HSCALE, WINDOW, SINK, LIST_NUM, LIST_KEYS, LIST_MINE, ENT, DIST, WEIGHTS,
    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_ob, stride_om, stride_oh, stride_bias_b, stride_bias_h,
    stride_ln_b, stride_ln_h, stride_lk_b, stride_lk_h,
    n_heads, group, v_group, n_q, n_kv, diag, kv_offset, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, SEL_BLOCK: tl.constexpr,
    CAUSAL: tl.constexpr, LOCAL: tl.constexpr, HAS_BIAS: tl.constexpr, HEAD_SCALE: tl.constexpr,
    ENTROPY: tl.constexpr = False, DISTANCE: tl.constexpr = False, WEIGHTS_OUT: tl.constexpr = False,
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
    lse2 = tl.load(LSE + bh.to(tl.int64) * n_q + offs_m, mask=row_ok, other=float("inf")) * 1.4426950408889634
    kp_base = K + b64 * stride_kb + kvh.to(tl.int64) * stride_kh
    vp_base = V + b64 * stride_vb + (h // v_group).to(tl.int64) * stride_vh
    bias_base = BIAS + b64 * stride_bias_b + h.to(tl.int64) * stride_bias_h
    keys_base = LIST_KEYS + b * stride_lk_b + h * stride_lk_h
    mine_base = LIST_MINE + b * stride_lk_b + h * stride_lk_h
    n_list = tl.load(LIST_NUM + b * stride_ln_b + h * stride_ln_h)

    p_s = tl.zeros([BLOCK_M], dtype=tl.float32)
    ent_s = tl.zeros([BLOCK_M], dtype=tl.float32)  # -sum over S of p ln p
    dist_s = tl.zeros([BLOCK_M], dtype=tl.float32)  # sum over S of p (i - j)
    for t in range(0, n_list, SEL_BLOCK):  # the row's probability on its own selection
        p, idx, mine = _listed_probs(q, kp_base, bias_base, keys_base, mine_base, t, lse2, offs_m, offs_d,
                                     stride_kn, h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK,
                                     HEAD_DIM, SEL_BLOCK, CAUSAL, LOCAL, HAS_BIAS)
        p_own = p * mine[None, :]
        p_s += tl.sum(p_own, 1)
        if ENTROPY:
            ent_s -= tl.sum(tl.where(p_own > 0, p_own * tl.log(tl.where(p_own > 0, p_own, 1.0)), 0.0), 1)
        if DISTANCE:
            dist_s += tl.sum(p_own * (offs_m[:, None] + diag - idx[None, :]).to(tl.float32), 1)
    rest = 1.0 - p_s
    edit = rest > 1e-6
    rest_w = tl.where(edit, (1.0 - tl.load(BETA + h) * p_s) / tl.where(edit, rest, 1.0), 1.0)
    own_w = tl.where(edit, tl.load(BETA + h), 1.0)
    if WEIGHTS_OUT:  # [2, batch, head, q]: each row's factor on its own selection, then on the rest
        w_rows = WEIGHTS + bh.to(tl.int64) * n_q + offs_m
        tl.store(w_rows, own_w, mask=row_ok)
        tl.store(w_rows + tl.num_programs(1).to(tl.int64) * n_q, rest_w, mask=row_ok)
    if ENTROPY or DISTANCE:
        _edit_row_stats(ENT, DIST, bh, n_q, offs_m, row_ok, p_s, ent_s, dist_s, own_w, rest_w, ENTROPY, DISTANCE)
    listed = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)  # sum over U of (own_w or rest_w) p_j v_j
    for t in range(0, n_list, SEL_BLOCK):
        p, idx, mine = _listed_probs(q, kp_base, bias_base, keys_base, mine_base, t, lse2, offs_m, offs_d,
                                     stride_kn, h, diag, kv_offset, n_kv, qk_scale, WINDOW, SINK,
                                     HEAD_DIM, SEL_BLOCK, CAUSAL, LOCAL, HAS_BIAS)
        w = tl.where(mine[None, :] != 0, own_w[:, None], rest_w[:, None])
        vv = tl.load(vp_base + idx[:, None] * stride_vn + offs_d[None, :],
                     mask=(idx[:, None] >= 0) & (offs_d[None, :] < HEAD_DIM), other=0.0)  # (S, D)
        listed = tl.dot((p * w).to(vv.dtype), vv, listed)
    o_ptrs = O + b64 * stride_ob + h.to(tl.int64) * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    out = tl.load(o_ptrs, mask=tile_ok, other=0.0).to(tl.float32) * rest_w[:, None] + listed
    if HEAD_SCALE:
        out = out * tl.load(HSCALE + h)
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=tile_ok)


def act_pass(
    out: Float[Tensor, "batch q head d"],
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    lse: Float[Tensor, "batch head q"],
    lists: ActLists,
    rule,
    *,
    scaling: float,
    bias: Tensor,
    bias_strides: tuple[int, int],
    has_bias: bool,
    head_scale: Tensor | None,
    entropy: Tensor | None = None,
    distance: Tensor | None = None,
    weights: Tensor | None = None,
) -> None:
    """Rewrite ``out`` (K1's output over values with ``lists.zero_rows`` zeroed) into ACT's
    edited output, in place; ``value`` is the unzeroed values. ``entropy`` / ``distance``
    (K1's rows, ``[batch, head, q]`` contiguous), when given, are rewritten in place into the
    edited attention's; ``weights`` (``[2, batch, head, q]``), when given, receives each row's
    factor on its own selection and on the other keys.

    ``rule`` is the table's :class:`~probe.kernels.blocks.TokenRule`; ``bias`` the base-2 key
    bias K1 used.
    """
    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    dev = query.device
    hscale = head_scale.to(device=dev, dtype=torch.float32).contiguous() if head_scale is not None else lists.beta
    rows, warps = _rows_and_warps()
    grid = (triton.cdiv(n_q, rows), batch * heads)
    _act_pass_kernel[grid](
        query, key, value, out, lse, bias, lists.beta, hscale,
        rule.window_tensor(heads, dev), rule.sink_tensor(heads, dev), lists.count, lists.keys, lists.mine,
        entropy if entropy is not None else lists.beta, distance if distance is not None else lists.beta,
        weights if weights is not None else lists.beta,
        *query.stride()[:3], *key.stride()[:3], *value.stride()[:3],
        out.stride(0), out.stride(1), out.stride(2), *bias_strides,
        lists.count.stride(0), lists.count.stride(1), lists.keys.stride(0), lists.keys.stride(1),
        heads, heads // key.shape[1], heads // value.shape[1], n_q, n_kv, rule.q_offset - rule.kv_offset, rule.kv_offset, scaling * LOG2E,
        HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_M=rows, SEL_BLOCK=SEL_BLOCK,
        CAUSAL=rule.causal, LOCAL=rule.local, HAS_BIAS=has_bias, HEAD_SCALE=head_scale is not None,
        ENTROPY=entropy is not None, DISTANCE=distance is not None, WEIGHTS_OUT=weights is not None,
        num_warps=warps,
    )
