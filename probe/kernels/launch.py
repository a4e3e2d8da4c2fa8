"""Python entry points of the Triton kernels: shapes in, tensors out.

Context:
    :func:`flash_forward` (K1) returns the attention output in HF's ``[batch, q, head, d]``
    layout with the per-query log-sum-exp and, when asked, entropy, mean distance and the
    clipped look-back distance. :func:`column_stats` (K2) turns that log-sum-exp into per-key
    statistics (received sum, max, visible count, banded sum) and per-tile block sum / max.
    Both take a :class:`~probe.kernels.blocks.BlockTable` saying which tiles to visit, so dense,
    causal, sliding-window and block-sparse attention are the same call.

    Inputs may be bf16, fp16 or fp32 (fp32 dots use TF32 on GPUs); statistics are fp32. Head
    dimensions up to 256 are supported (Gemma-2/3 use 256). Those that are not a power of two
    run as two column parts where that saves work (:func:`head_dim_parts`: 80 = 64 + 16,
    96 = 64 + 32), else padded with zero columns to the next power of two.
    ``key_bias`` is an additive float32 logit bias ``[batch|1, head|1, key]`` (natural log
    units); it also carries key padding as a large negative value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probe.kernels.act.row_pass import ActLists, act_lists, act_pass, rows_zeroed
from probe.kernels.blocks import BlockTable
from probe.kernels.gluon.k1_launch import bias_as_the_product_adds_it, bias_in_product, flash_forward_gluon, gluon_eligible
from probe.kernels.gluon.k2_launch import column_stats_gluon, gluon_k2_eligible
from probe.kernels.operands import K1Result, expand_table, k1_outputs, key_bias_args
from probe.kernels.triton_kernels import LOG2E, k1_kernel, k2_kernel

MAX_HEAD_DIM = 256
NO_BAND_HI = 2**30  # K2's upper look-ahead for a band without one (past any t - s)


@dataclass(frozen=True)
class KernelConfig:
    """Tile shape and pipelining of one launch (``block_m`` must equal the table's block_q)."""

    block_n: int
    num_warps: int
    num_stages: int


def head_dim_problem(head_dim: int, dtype: torch.dtype, on_gpu: bool) -> str | None:
    """Why the kernels cannot take this head dim (and dtype), or None. float32 past 128 runs in
    the CPU interpreter but its tiles do not fit in a GPU's shared memory."""
    if head_dim > MAX_HEAD_DIM:
        return f"head dim {head_dim} > {MAX_HEAD_DIM} is not supported by the kernels"
    if head_dim > 128 and dtype == torch.float32 and on_gpu:
        return (f"float32 at head dim {head_dim}: the tiles do not fit in shared memory; "
                "pass bf16/fp16 tensors, or use the reference backend")
    return None


def head_dim_parts(head_dim: int) -> tuple[int, int]:
    """The kernels' column parts ``(first, second)`` for a head dim; ``second`` is 0 for one part.

    Triton tiles are powers of two (at least 16 wide for the products). A head dim that is not
    one runs as the largest power of two below it plus a second part for the rest (rounded up,
    its extra columns read as zero) when the two are narrower than the next power of two:
    80 -> (64, 16), 96 -> (64, 32), 72 -> (64, 16), 160 -> (128, 32). Otherwise one part,
    padded: 24 -> (32, 0), 112 -> (128, 0).
    """
    whole = max(16, triton.next_power_of_2(head_dim))
    first = whole // 2
    if head_dim == whole or first < 16:
        return whole, 0
    second = max(16, triton.next_power_of_2(head_dim - first))
    return (first, second) if first + second < whole else (whole, 0)


def dim_class(head_dim: int) -> str:
    """The head-dim range a tuned config covers: ``small`` (<= 64), ``mid`` (<= 128), ``large``
    (<= 256; :func:`head_dim_problem` refuses wider ones before any config is looked up)."""
    return "small" if head_dim <= 64 else "mid" if head_dim <= 128 else "large"


# Tiles per (head-dim range, causal); measured on a lent H100 (notes/kernels.md). At head dim 256
# (Gemma-2/3) only one stage fits in shared memory (two asked for 320 KB of the 227 KB; Q alone
# is 64 KB), measured on a lent H200 (benchmarks/kernels/runs/head_dim_256.txt).
K1_CONFIGS: dict[tuple[str, bool], KernelConfig] = {
    ("small", False): KernelConfig(block_n=64, num_warps=8, num_stages=3),
    ("small", True): KernelConfig(block_n=64, num_warps=8, num_stages=3),
    ("mid", False): KernelConfig(block_n=128, num_warps=8, num_stages=2),
    ("mid", True): KernelConfig(block_n=128, num_warps=8, num_stages=2),
    ("large", False): KernelConfig(block_n=128, num_warps=8, num_stages=1),
    ("large", True): KernelConfig(block_n=128, num_warps=8, num_stages=1),
}
K2_CONFIGS: dict[str, KernelConfig] = {  # the K2's tiles are the table's; best sum of 16k causal + not, H100
    "small": KernelConfig(block_n=0, num_warps=4, num_stages=3),
    "mid": KernelConfig(block_n=0, num_warps=4, num_stages=3),
    "large": KernelConfig(block_n=0, num_warps=4, num_stages=2),  # H200, 16k: 0.92-0.97x the time of (8 warps, 1 stage)
}
# Head dims run as two column parts (head_dim_parts) where they differ. 96 = 64 + 32 with three
# stages took 1.27x the time of two, non-causal at 16k with 64-query tiles (paired, lent H200; 80
# and causal: within 1 %; the all-statistics call, 128-query tiles, did not change measurably;
# benchmarks/kernels/runs/head_dim_split.txt).
K2_TWO_PART_CONFIGS: dict[str, KernelConfig] = {"mid": KernelConfig(block_n=0, num_warps=4, num_stages=2)}


def k1_config(head_dim: int, causal: bool = False) -> KernelConfig:
    """K1 tiles for (head dim, causal); ``HEADSCOPE_K1_CONFIG=block_n,warps,stages`` overrides."""
    override = os.environ.get("HEADSCOPE_K1_CONFIG")
    if override:
        return KernelConfig(*(int(x) for x in override.split(",")))
    return K1_CONFIGS[(dim_class(head_dim), causal)]


def k2_config(head_dim: int) -> KernelConfig:
    """K2 warps/stages (its tiles are the table's); ``HEADSCOPE_K2_CONFIG=0,warps,stages`` overrides."""
    override = os.environ.get("HEADSCOPE_K2_CONFIG")
    if override:
        return KernelConfig(*(int(x) for x in override.split(",")))
    if head_dim_parts(head_dim)[1] and dim_class(head_dim) in K2_TWO_PART_CONFIGS:
        return K2_TWO_PART_CONFIGS[dim_class(head_dim)]
    return K2_CONFIGS[dim_class(head_dim)]


def use_tma(*tensors: Tensor) -> bool:
    """Tensor-descriptor (TMA) loads: Hopper or newer, 16-bit inputs, 16-byte aligned strides.

    ``HEADSCOPE_TMA=0`` forces pointer loads, ``=1`` forces descriptors (the CPU interpreter
    tests use this to cover the descriptor path).
    """
    forced = os.environ.get("HEADSCOPE_TMA")
    if forced is not None:
        return forced == "1"
    t0 = tensors[0]
    if not t0.is_cuda or torch.cuda.get_device_capability(t0.device)[0] < 9:
        return False
    return all(
        t.dtype in (torch.bfloat16, torch.float16) and t.data_ptr() % 16 == 0 and t.stride(-1) == 1
        and all(s > 0 and (s * t.element_size()) % 16 == 0 for s in t.stride()[:-1])
        for t in tensors
    )


def _desc(t: Tensor, rows: int, block_d: int) -> TensorDescriptor:
    """4-D ``[batch, head, token, d]`` descriptor loading (1, 1, rows, block_d) boxes."""
    return TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 1, rows, block_d])


def _sources(tensors: tuple[Tensor, ...], rows: tuple[int, ...], block_d: int, block_d2: int,
             tma: bool) -> tuple:
    """The kernels' first-part sources, then their second-part ones: descriptors of (rows, part
    width) boxes with TMA, else the tensors themselves (twice; pointer loads offset the columns)."""
    if not tma:
        return tensors + tensors
    first = tuple(_desc(t, r, block_d) for t, r in zip(tensors, rows))
    second = tuple(_desc(t, r, block_d2) for t, r in zip(tensors, rows)) if block_d2 else first
    return first + second


@dataclass(frozen=True)
class ActScale:
    """One ACT-style key scaling resolved for the kernel.

    Attributes:
        selected: ``[batch, head, key]``, the keys whose attention is scaled.
        factor: ``[head]``, the scale (beta); the freed mass goes to the other keys.

    The kernels take the selected keys as per-(batch, head) index lists. They are built on
    first use and kept on the object (one device sync), so build an ActScale once and reuse it
    across calls, e.g. every generation step of an edited model. Do not change ``selected`` in
    place afterwards.
    """

    selected: Bool[Tensor, "batch head key"]
    factor: Float[Tensor, " head"]

    def kernel_lists(self, batch: int, heads: int, kv_heads: int, n_kv: int, device) -> ActLists:
        """The lists ACT's pass walks (:func:`probe.kernels.act.row_pass.act_lists`), cached per shape."""
        cache = self.__dict__.setdefault("_lists", {})  # frozen: cache through __dict__
        key = (batch, heads, kv_heads, n_kv, str(device))
        if key not in cache:
            if self.selected.shape[-1] != n_kv:
                raise ValueError(f"ActScale selects among {self.selected.shape[-1]} keys, the call has {n_kv}")
            cache[key] = act_lists(self.selected, self.factor, batch, heads, kv_heads, device)
        return cache[key]


@dataclass(frozen=True)
class BandRows:
    """A :class:`~probe.attention.spec.Band` resolved for K2.

    Attributes:
        lo, hi: the look-ahead ``t - s`` a query needs to count for a key (hi None: no bound).
        first_query: ``[batch]``, per batch row the first query index (into this call's
            queries) that counts; may be negative (every query counts) or past the queries.
    """

    lo: int
    hi: int | None
    first_query: Int[Tensor, " batch"]


def flash_forward(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch v_head k d"],
    table: BlockTable,
    *,
    scaling: float,
    key_bias: Float[Tensor, "_ _ k"] | None = None,
    entropy: bool = False,
    distance: bool = False,
    act: ActScale | None = None,
    head_scale: Float[Tensor, " head"] | None = None,
    config: KernelConfig | None = None,
    act_row_stats: bool = False,
    lookback_window: int | None = None,
) -> K1Result:
    """K1: flash-attention forward over ``table`` with fused row statistics and edits.

    On Hopper, eligible calls (bf16/fp16, head dim 64 or 128, 128x128 tiles, no explicit ``config``)
    run the warp-specialised Gluon kernel of :mod:`probe.kernels.gluon.k1_ws`; the rest run the
    Triton kernel of
    :mod:`probe.kernels.triton_kernels`. Both give the same outputs. ACT runs K1 on values with
    the selected keys' rows zeroed (in ``value`` itself, restored before returning, when no
    autograd record or aliasing forbids it; else on a copy), then
    :func:`probe.kernels.act.row_pass.act_pass`; the log-sum-exp is the unedited attention's, and
    so are entropy and distance unless ``act_row_stats`` asks for the edited attention's (the
    result then also holds each row's ACT factors, ``act_weights``).

    ``lookback_window`` (an integer W >= 1) adds ``lookback``, each row's ``sum_s p min(t - s, W)``;
    only the Triton kernel computes it (such calls skip the Gluon one), and not with ``act``.
    """
    query, key, value = (_last_dim_contiguous(t) for t in (query, key, value))
    _check(query, key, table)
    if lookback_window is not None and (act is not None or lookback_window < 1):
        raise ValueError("lookback needs an integer window >= 1 and no ACT scaling (the backend sends ACT-edited "
                         f"calls with it to the reference); got window {lookback_window!r}, act {act is not None}")
    if act is not None:
        return _with_act(query, key, value, table, scaling, key_bias, entropy, distance, act, head_scale, config,
                         act_row_stats)
    if config is None and lookback_window is None and gluon_eligible(query, key, value, table):
        return flash_forward_gluon(query, key, value, table, scaling=scaling, key_bias=key_bias,
                                   entropy=entropy, distance=distance, head_scale=head_scale)
    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    cfg = config or k1_config(head_dim, table.rule.causal)
    block_n = min(cfg.block_n, table.block_kv)
    block_d, block_d2 = head_dim_parts(head_dim)
    tma = use_tma(query, key, value)
    srcs = _sources((query, key, value), (table.block_q, block_n, block_n), block_d, block_d2, tma)
    dev = query.device
    out, lse, ent, dist, hscale = k1_outputs(query, entropy, distance, head_scale)
    look = torch.empty_like(lse) if lookback_window is not None else lse
    bias, bias_strides = key_bias_args(key_bias, batch, heads, n_kv, dev)
    window = table.rule.window_tensor(heads, dev)
    sink = table.rule.sink_tensor(heads, dev)
    full_n, full_i = expand_table(table.full_kv_num_blocks, table.full_kv_indices, batch, heads)
    part_n, part_i = expand_table(table.kv_num_blocks, table.kv_indices, batch, heads)
    grid = (triton.cdiv(n_q, table.block_q), batch * heads)
    k1_kernel[grid](
        *srcs, key, out, lse, ent, dist, look, bias, hscale, window, sink,
        full_n, full_i, part_n, part_i,
        *query.stride()[:3], *key.stride()[:3], *value.stride()[:3],
        out.stride(0), out.stride(1), out.stride(2),
        *bias_strides,
        full_n.stride(0), full_n.stride(1), full_i.stride(0), full_i.stride(1), full_i.stride(2),
        part_n.stride(0), part_n.stride(1), part_i.stride(0), part_i.stride(1), part_i.stride(2),
        heads, heads // key.shape[1], heads // value.shape[1], n_q, n_kv,
        table.rule.q_offset - table.rule.kv_offset, table.rule.kv_offset, scaling * LOG2E, lookback_window or 0,
        HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_D2=block_d2, BLOCK_M=table.block_q,
        BLOCK_N=block_n, SUB=table.block_kv // block_n, CAUSAL=table.rule.causal,
        LOCAL=table.rule.local, HAS_BIAS=key_bias is not None, ENTROPY=entropy, DISTANCE=distance,
        HEAD_SCALE=head_scale is not None, TMA=tma,
        WS=tma and os.environ.get("HEADSCOPE_K1_WS") == "1",  # experimental: warp-specialised full-block loop
        LOOKBACK=lookback_window is not None,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return K1Result(out, lse, ent if entropy else None, dist if distance else None,
                    lookback=look if lookback_window is not None else None)


def _with_act(query, key, value, table, scaling, key_bias, entropy, distance, act, head_scale, config,
              act_row_stats: bool) -> K1Result:
    """K1 over values with the selected rows zeroed, then ACT's pass rewrites the output (and head scale)."""
    batch, heads = query.shape[:2]
    lists = act.kernel_lists(batch, heads, value.shape[1], key.shape[2], query.device)
    with rows_zeroed(value, lists.zero_rows, query, key) as rest:
        r = flash_forward(query, key, rest, table, scaling=scaling, key_bias=key_bias, entropy=entropy,
                          distance=distance, config=config)
        in_product = key_bias is not None and config is None and bias_in_product(query, key, rest, table)
    bias, bias_strides = key_bias_args(key_bias, batch, heads, key.shape[2], query.device)
    weights = torch.empty(2, batch, heads, query.shape[2], device=query.device) if act_row_stats else None
    if in_product:
        # Rows whose selected keys hold all of the attention are told apart to 1e-6: the pass
        # must see the bias exactly as K1's product added it.
        bias = bias_as_the_product_adds_it(bias, scaling * LOG2E, query.dtype)
        bias_strides = (bias.stride(0), bias.stride(1))
    act_pass(r.output, query, key, value, r.lse, lists, table.rule, scaling=scaling, bias=bias,
             bias_strides=bias_strides, has_bias=key_bias is not None, head_scale=head_scale,
             entropy=r.entropy if act_row_stats else None, distance=r.distance if act_row_stats else None,
             weights=weights)
    return K1Result(r.output, r.lse, r.entropy, r.distance, weights)


def column_stats(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    lse: Float[Tensor, "batch head q"],
    table: BlockTable,
    *,
    scaling: float,
    key_bias: Float[Tensor, "_ _ k"] | None = None,
    block_stats: bool = False,
    config: KernelConfig | None = None,
    band: BandRows | None = None,
) -> dict[str, Tensor]:
    """K2: per-key statistics from the stored log-sum-exp (non-finite ``lse`` = no query).

    Returns ``received_sum``, ``received_max``, ``count`` (queries that see each key,
    ``[batch, head, key]``), with ``block_stats`` ``block_sum`` / ``block_max`` over the
    table's ``block_q x block_kv`` tiles and, with ``band``, ``band_sum``: the attention each
    key receives from the queries of its band (:class:`BandRows`). On Hopper, eligible calls
    (bf16/fp16, head dim 64 or 128, 128-key blocks, no explicit ``config``, no band) run the
    warp-specialised Gluon K2 of :mod:`probe.kernels.gluon.k2_ws`; the rest run the Triton kernel.
    """
    query, key = _last_dim_contiguous(query), _last_dim_contiguous(key)
    batch, heads, n_q, head_dim = query.shape
    n_kv = key.shape[2]
    _check(query, key, table)
    cfg = config or k2_config(head_dim)
    dev = query.device
    col = lambda: torch.empty(batch, heads, n_kv, device=dev, dtype=torch.float32)  # noqa: E731
    col_sum, col_max, count = col(), col(), col()
    bias, bias_strides = key_bias_args(key_bias, batch, heads, n_kv, dev)
    if config is None and band is None and gluon_k2_eligible(query, key, table):
        return column_stats_gluon(query, key, lse.float(), table, qk_scale=scaling * LOG2E, bias=bias,
                                  bias_strides=bias_strides, has_bias=key_bias is not None,
                                  block_stats=block_stats, outputs=(col_sum, col_max, count))
    lse2 = torch.where(torch.isfinite(lse), lse * LOG2E, torch.inf).float().contiguous()
    tiles = (batch, heads, triton.cdiv(n_q, table.block_q), triton.cdiv(n_kv, table.block_kv))
    bsum = torch.zeros(tiles, device=dev) if block_stats else col_sum
    bmax = torch.zeros(tiles, device=dev) if block_stats else col_sum
    band_sum = col() if band is not None else col_sum
    band_row = band.first_query.to(device=dev, dtype=torch.int32).contiguous() if band is not None else count
    band_lo, band_hi = (band.lo, NO_BAND_HI if band.hi is None else band.hi) if band is not None else (0, 0)
    block_d, block_d2 = head_dim_parts(head_dim)
    tma = use_tma(query, key)
    srcs = _sources((query, key), (table.block_q, table.block_kv), block_d, block_d2, tma)
    full_n, full_i = expand_table(table.full_q_num_blocks, table.full_q_indices, batch, heads)
    part_n, part_i = expand_table(table.q_num_blocks, table.q_indices, batch, heads)
    grid = (triton.cdiv(n_kv, table.block_kv), batch * heads)
    k2_kernel[grid](
        *srcs, lse2, bias, col_sum, col_max, count, bsum, bmax, band_sum, band_row,
        table.rule.window_tensor(heads, dev), table.rule.sink_tensor(heads, dev),
        full_n, full_i, part_n, part_i,
        *query.stride()[:3], *key.stride()[:3], *bias_strides,
        full_n.stride(0), full_n.stride(1), full_i.stride(0), full_i.stride(1), full_i.stride(2),
        part_n.stride(0), part_n.stride(1), part_i.stride(0), part_i.stride(1), part_i.stride(2),
        tiles[2] * tiles[3], tiles[3],
        heads, heads // key.shape[1], n_q, n_kv, table.rule.q_offset - table.rule.kv_offset,
        table.rule.kv_offset, scaling * LOG2E, band_lo, band_hi,
        HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_D2=block_d2, BLOCK_M=table.block_q,
        BLOCK_N=table.block_kv, CAUSAL=table.rule.causal, LOCAL=table.rule.local,
        HAS_BIAS=key_bias is not None, BLOCK_STATS=block_stats, TMA=tma, BAND=band is not None,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    stats = {"received_sum": col_sum, "received_max": col_max, "count": count}
    if block_stats:
        stats.update(block_sum=bsum, block_max=bmax)
    if band is not None:
        stats["band_sum"] = band_sum
    return stats


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _check(query: Tensor, key: Tensor, table: BlockTable) -> None:
    problem = head_dim_problem(query.shape[-1], query.dtype, query.is_cuda)
    if problem is not None:
        raise ValueError(problem)
    if query.shape[1] % key.shape[1]:
        raise ValueError(f"{query.shape[1]} query heads are not a multiple of {key.shape[1]} kv heads")
    if (table.q_len, table.kv_len) != (query.shape[2], key.shape[2]):
        raise ValueError(f"table is for {table.q_len}x{table.kv_len}, inputs are {query.shape[2]}x{key.shape[2]}")
