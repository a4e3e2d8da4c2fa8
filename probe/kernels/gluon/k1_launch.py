"""Host side of the Gluon K1 (:mod:`probe.kernels.gluon.k1_ws`, :mod:`probe.kernels.gluon.k1`):
eligibility, descriptors, launch.

:func:`gluon_eligible` says whether a call can take the Hopper kernels (CUDA sm_90, bf16/fp16,
head dim 64 or 128, 128x128 tiles); :func:`flash_forward_gluon` has the same outputs as
:func:`probe.kernels.launch.flash_forward`, which dispatches to it. It runs the
warp-specialised kernel (:mod:`probe.kernels.gluon.k1_ws`); ``HEADSCOPE_GLUON_WS=0`` runs the
single-partition one (:mod:`probe.kernels.gluon.k1`) instead, and ``HEADSCOPE_GLUON=0`` turns
the Gluon path off (benchmarks use both to time the kernels it replaced).

:mod:`probe.kernels.gluon.k2_launch` does the same for the column pass.

The K1 also compiles and is correct at head dim 64, but there the Triton K1 measured as
fast or faster on the lent H100 (0.90-0.93x cuDNN against 0.85-0.92x; notes/kernels.md), so
dispatch keeps 64 on Triton.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Float
from torch import Tensor

from probe.kernels.blocks import BlockTable
from probe.kernels.gluon.views import WS_ROWS, descriptor, row_view, shared_layout, views_fit
from probe.kernels.operands import K1Result, expand_table, k1_outputs, key_bias_args
from probe.kernels.triton_kernels import LOG2E

# Dispatched head dims. At 64 (SmolLM2, GPT-2, Pythia) the warp-specialised K1 took 0.92-0.98x the
# Triton K1's time plain and 0.71-0.76x with entropy + distance, paired, on the lent H100 (4k x 4
# and 16k, 32 query / 8 KV heads; benchmarks/kernels/runs/head_dim_64.txt).
GLUON_HEAD_DIMS = (64, 128)
BLOCK_M = 128


@dataclass(frozen=True)
class GluonConfig:
    """Tiles of one launch: ``block_m`` query rows per program (16 per warp), ``block_n`` keys
    per step (dividing the table's block_kv), ``stages`` K/V buffers."""

    block_n: int
    stages: int
    block_m: int = BLOCK_M

    @property
    def num_warps(self) -> int:
        return self.block_m // 16


def gluon_config(head_dim: int) -> GluonConfig:
    """Tiles per head dim; ``HEADSCOPE_GLUON_CONFIG=block_n,stages[,block_m]`` overrides (benchmarks)."""
    override = os.environ.get("HEADSCOPE_GLUON_CONFIG")
    if override:
        return GluonConfig(*(int(x) for x in override.split(",")))
    return GluonConfig(block_n=128, stages=2) if head_dim == 128 else GluonConfig(block_n=128, stages=3)


def gluon_eligible(query: Tensor, key: Tensor, value: Tensor, table: BlockTable,
                   head_dims: tuple[int, ...] = GLUON_HEAD_DIMS) -> bool:
    """True when :func:`flash_forward_gluon` can run this call (and ``HEADSCOPE_GLUON`` is not 0)."""
    if os.environ.get("HEADSCOPE_GLUON", "1") == "0" or not query.is_cuda:
        return False
    if torch.cuda.get_device_capability(query.device)[0] != 9:
        return False
    head_dim = query.shape[-1]
    cfg = gluon_config(head_dim)
    return (
        query.dtype in (torch.bfloat16, torch.float16)
        and key.dtype == query.dtype and value.dtype == query.dtype
        and head_dim in head_dims
        and table.block_q == BLOCK_M and table.block_kv % cfg.block_n == 0
        and views_fit(query, key, value)
    )


def _bias_rows(bias: Tensor | None, batch: int, heads: int, n_kv: int, block_n: int, dev):
    """A 1-D descriptor over the base-2 key bias as ``[batch*head, n_kv padded to block_n]`` rows
    (zero padding), for the variant that adds each step's bias tile in the softmax
    (``HEADSCOPE_BIAS_IN_PRODUCT=0``); a one-tile dummy when there is no bias. Returns
    ``(descriptor, row length)``."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    row_len = triton.cdiv(n_kv, block_n) * block_n
    if bias is None:  # the unbiased kernel never reads it: one cached tile per device
        key = (str(dev), block_n)
        if key not in _NO_BIAS_ROWS:
            rows = torch.zeros(block_n, device=dev)
            _NO_BIAS_ROWS[key] = (rows, TensorDescriptor.from_tensor(rows, [block_n], shared_layout((block_n,))))
        return _NO_BIAS_ROWS[key][1], row_len
    rows = torch.zeros(batch * heads, row_len, device=dev)
    rows[:, :n_kv] = bias.expand(batch, heads, n_kv).reshape(batch * heads, n_kv)
    return TensorDescriptor.from_tensor(rows.view(-1), [block_n], shared_layout((block_n,))), row_len


_NO_BIAS_ROWS: dict = {}


def _bias_columns(bias: Tensor, batch: int, heads: int, n_kv: int, block_n: int, qk_scale: float, dtype):
    """The key bias as a second operand of the S product: per key, ``bias / qk_scale`` split into
    a high and a low part in the input dtype (columns 0 and 1 of 16; the consumer's A operand is
    1 there), so ``Q K^T + 1 (hi + lo)`` carries the bias to ~2^-16 of its size without an add
    per logit. Rows ``[batch*head*keys padded to block_n, 16]``; returns ``(descriptor, keys per row group)``."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    cols = bias_columns(bias, batch, heads, n_kv, triton.cdiv(n_kv, block_n) * block_n, qk_scale, dtype)
    return TensorDescriptor.from_tensor(cols.view(-1, 16), [block_n, 16], shared_layout((block_n, 16), dtype)), cols.shape[1]


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _round_to(x, dtype: tl.constexpr):
    """``x`` (float32) rounded to nearest-even in ``dtype``, as a float32. bf16 by its bits: the
    CPU interpreter's bf16 cast truncates, and the tests hold this kernel to PyTorch's rounding."""
    if dtype == tl.bfloat16:
        u = x.to(tl.uint32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        return u.to(tl.float32, bitcast=True)
    return x.to(dtype).to(tl.float32)


@no_type_check  # keep jaxtyping's import hook from wrapping the JIT function
@triton.jit
def _bias_columns_kernel(BIAS, COLS, n_heads, stride_b, stride_h, n_kv, row_len, qk_scale, limit,
                         BLOCK: tl.constexpr):
    """One launch for what took ten PyTorch operations (their host time showed in 16k calls)."""
    bh = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(BIAS + (bh // n_heads).to(tl.int64) * stride_b + (bh % n_heads).to(tl.int64) * stride_h + offs,
                mask=offs < n_kv, other=0.0)
    x = tl.minimum(tl.maximum(tl.math.div_rn(x, qk_scale), -limit), limit)
    hi = _round_to(x, COLS.dtype.element_ty)
    lo = _round_to(x - hi, COLS.dtype.element_ty)
    col = tl.arange(0, 16)[None, :]
    tile = tl.where(col == 0, hi[:, None], tl.where(col == 1, lo[:, None], 0.0))
    tile = tl.where(offs[:, None] < n_kv, tile, 0.0).to(COLS.dtype.element_ty)
    tl.store(COLS + (bh.to(tl.int64) * row_len + offs[:, None]) * 16 + col, tile, mask=offs[:, None] < row_len)


def bias_columns(bias: Float[Tensor, "_ _ k"], batch: int, heads: int, n_kv: int, row_len: int, qk_scale: float,
                 dtype) -> Tensor:
    """``[batch*head, row_len, 16]`` in ``dtype``: columns 0 and 1 hold :func:`bias_split` of the
    base-2 ``bias`` (zero elsewhere and past ``n_kv``), written by one small kernel."""
    bias = bias.expand(batch, heads, n_kv)
    cols = torch.empty(batch * heads, row_len, 16, device=bias.device, dtype=dtype)
    block = 256
    _bias_columns_kernel[(triton.cdiv(row_len, block), batch * heads)](
        bias, cols, heads, bias.stride(0), bias.stride(1), n_kv, row_len, qk_scale,
        torch.finfo(dtype).max / 2, BLOCK=block)
    return cols


def bias_split(bias: Tensor, qk_scale: float, dtype) -> tuple[Tensor, Tensor]:
    """``bias / qk_scale`` (base-2 bias) as ``hi + lo`` in ``dtype``, clamped to half its range
    (the backend's -1e30 padding stays far below any real logit, as a finite value). The
    PyTorch statement of what :func:`bias_columns` writes (the tests hold them equal)."""
    limit = torch.finfo(dtype).max / 2
    scaled = (bias / qk_scale).clamp(-limit, limit)
    hi = scaled.to(dtype)
    return hi, (scaled - hi.float()).to(dtype)


def bias_in_product(query: Tensor, key: Tensor, value: Tensor, table: BlockTable) -> bool:
    """Whether :func:`flash_forward_gluon` adds the key bias inside the S product (the
    warp-specialised kernel's default; ``HEADSCOPE_BIAS_IN_PRODUCT=0`` adds it in the softmax)."""
    return gluon_eligible(query, key, value, table) and _ws_adds_bias_in_product(gluon_config(query.shape[-1]))


def _ws_adds_bias_in_product(cfg: GluonConfig) -> bool:
    return (cfg.block_m == BLOCK_M and os.environ.get("HEADSCOPE_GLUON_WS", "1") != "0"
            and os.environ.get("HEADSCOPE_BIAS_IN_PRODUCT", "1") == "1")


def bias_as_the_product_adds_it(bias: Tensor, qk_scale: float, dtype) -> Tensor:
    """The base-2 bias the S product actually adds (``(hi + lo) * qk_scale``): passes that
    recompute probabilities from K1's log-sum-exp (ACT's) use it to stay consistent with K1."""
    batch, heads, n_kv = bias.shape
    cols = bias_columns(bias, batch, heads, n_kv, n_kv, qk_scale, dtype)  # what K1 was given, bit for bit
    return ((cols[..., 0].float() + cols[..., 1].float()) * qk_scale).view(batch, heads, n_kv)


def tc_distance() -> bool:
    """Whether the warp-specialised K1 sums ``p x column`` for the mean distance on the tensor
    cores, from the bf16/fp16 P that the output uses (the default; ``HEADSCOPE_K1_TC_DISTANCE=0``
    sums it in float32 on the FMA pipe). The distance then carries up to 127 x 2^-8 = 0.5
    positions of absolute error with bf16 inputs, 127 x 2^-11 = 0.06 with fp16 (a rounded P
    times a column index below 128; measured: 0.1 at most, 5e-5 relative).
    :mod:`probe.kernels.gluon.k1_ws` says why and what it saves."""
    return os.environ.get("HEADSCOPE_K1_TC_DISTANCE", "1") != "0"


def flash_forward_gluon(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch v_head k d"],
    table: BlockTable,
    *,
    scaling: float,
    key_bias: Float[Tensor, "_ _ k"] | None = None,
    entropy: bool = False,
    distance: bool = False,
    head_scale: Float[Tensor, " head"] | None = None,
):
    """K1 through the Gluon kernel; returns :class:`probe.kernels.operands.K1Result`.

    ``value`` may have its own head count and memory layout.
    """
    from probe.kernels.gluon.k1 import k1_gluon_kernel

    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    cfg = gluon_config(head_dim)
    (qv, q_rb, q_rh, q_ch), (kv, k_rb, k_rh, k_ch), (vv, v_rb, v_rh, v_ch) = (
        row_view(t) for t in (query, key, value))
    v_map = (v_rb, v_rh, v_ch) != (k_rb, k_rh, k_ch) or value.shape[1] != key.shape[1]
    dev = query.device
    out, lse, ent, dist, hscale = k1_outputs(query, entropy, distance, head_scale)
    bias, bias_strides = key_bias_args(key_bias, batch, heads, n_kv, dev)
    full_n, full_i = expand_table(table.full_kv_num_blocks, table.full_kv_indices, batch, heads)
    part_n, part_i = expand_table(table.kv_num_blocks, table.kv_indices, batch, heads)
    # Warp-specialised kernel (probe/kernels/gluon/k1_ws.py) for 128-row tiles; HEADSCOPE_GLUON_WS=0 turns it off.
    ws = os.environ.get("HEADSCOPE_GLUON_WS", "1") != "0" and cfg.block_m == BLOCK_M
    q_rows = WS_ROWS if ws else cfg.block_m
    args = (
        descriptor(qv, q_rows, head_dim), descriptor(kv, cfg.block_n, head_dim),
        descriptor(vv, cfg.block_n, head_dim),
        out, lse, ent, dist, bias, hscale,
        table.rule.window_tensor(heads, dev), table.rule.sink_tensor(heads, dev),
        full_n, full_i, part_n, part_i,
        q_rb, q_rh, q_ch, k_rb, k_rh, k_ch, v_rb, v_rh, v_ch,
        out.stride(0), out.stride(1), out.stride(2),
        *bias_strides,
        full_n.stride(0), full_n.stride(1), full_i.stride(0), full_i.stride(1), full_i.stride(2),
        part_n.stride(0), part_n.stride(1), part_i.stride(0), part_i.stride(1), part_i.stride(2),
        heads, heads // key.shape[1], heads // value.shape[1], n_q, n_kv, table.rule.q_offset - table.rule.kv_offset,
        table.rule.kv_offset, scaling * LOG2E,
    )
    consts = dict(HEAD_DIM=head_dim, BLOCK_N=cfg.block_n, SUB=table.block_kv // cfg.block_n, STAGES=cfg.stages,
                  CAUSAL=table.rule.causal, LOCAL=table.rule.local, HAS_BIAS=key_bias is not None,
                  ENTROPY=entropy, DISTANCE=distance, HEAD_SCALE=head_scale is not None)
    if ws:
        from probe.kernels.gluon.k1_ws import k1_ws_kernel

        in_product = key_bias is not None and _ws_adds_bias_in_product(cfg)
        if in_product:
            bias_desc, bias_row_len = _bias_columns(bias, batch, heads, n_kv, cfg.block_n, scaling * LOG2E, query.dtype)
        else:
            bias_desc, bias_row_len = _bias_rows(bias if key_bias is not None else None, batch, heads, n_kv,
                                                 cfg.block_n, dev)
        k1_ws_kernel[(triton.cdiv(n_q, BLOCK_M), batch * heads)](*args[:3], bias_desc, *args[3:], bias_row_len,
                                                                  **consts, BIAS_IN_PRODUCT=in_product, num_warps=4,
                                                                  TC_DISTANCE=distance and tc_distance())
    else:
        k1_gluon_kernel[(triton.cdiv(n_q, cfg.block_m), batch * heads)](
            *args, **consts, BLOCK_M=cfg.block_m, TABLE_BQ=BLOCK_M, V_MAP=v_map, num_warps=cfg.num_warps)
    return K1Result(out, lse, ent if entropy else None, dist if distance else None)
