"""The ``"triton"`` attention backend: dispatch rules and the kernel path.

Context:
    Registered with :func:`probe.attention.backends.register_backend` under ``"triton"`` when
    this module is imported (``probe.attention.backends`` imports it on demand, by the module
    name in its ``OPTIONAL_BACKENDS`` table, so the registry never imports it back). It has the
    signature of :func:`~probe.attention.reference.reference_attention`, so callers can always
    pick it: whatever it cannot run goes to the reference.

Dispatch rules (the first route whose condition holds runs; see ``ROUTES``):

    1. ``reference``: tensors not on CUDA, Triton missing, dtype not bf16/fp16/fp32, head dim
       > 256 (or > 128 in float32), soft-capping, a pattern request, a fixed 4-D mask tensor (an arbitrary mask, not
       causal / sliding window / padding), more than one ACT key scaling, an edit limited to some
       prompts (per-row factors), block statistics
       with a block size that is not 16/32/64/128, or the reasoning-rhythm statistics
       (``lookback_window`` or ``band``) together with an ACT key scaling: the kernels compute
       them for unedited attention and under key bias and head scaling, but ACT's exact pass
       (:mod:`probe.kernels.act.row_pass`, :mod:`probe.kernels.act.columns`) does not rewrite them
       into the edited attention's, so the reference does, exactly. Also ``span_mass`` (the
       attention each query pays to a key span, a VLM's image tokens): the kernels do not compute
       it, and a call asking for it runs the reference whole (exact; no kernel speed for it).
       Likewise an edit with a ``last_row_boost`` (PAINT's ``z + c|z|`` at each row's last query,
       :class:`~probe.edits.spec.BoostKeys`): the kernels do not implement it.
    2. ``sdpa``: no statistics and no edits, i.e. plain dense attention; PyTorch's fused kernel
       (cuDNN on H100) is the fastest there is.
    3. ``triton``: K1 (output + log-sum-exp, entropy, distance in the same pass; key bias and
       head scaling inside the kernel; ACT scaling with redistribution as an exact pass after
       it, :mod:`probe.kernels.act.row_pass`, which also turns entropy and distance into the
       edited attention's), then K2 for attention received and block statistics (with ACT,
       of the edited attention: :mod:`probe.kernels.act.columns`). ACT with a
       :class:`SinkRule` first runs K1 (log-sum-exp) + K2 (received mean) to detect the sinks.
       On Hopper at head dims 64 and 128, K1 and K2 are the warp-specialised Gluon kernels
       (:mod:`probe.kernels.gluon.k1_ws`, :mod:`probe.kernels.gluon.k2_ws`); otherwise the
       Triton kernels (:func:`probe.kernels.launch.flash_forward` and
       :func:`~probe.kernels.launch.column_stats` decide).

       Reasoning-rhythm statistics: ``lookback`` is one more accumulator of the Triton K1
       (``sum_s p min(t - s, W)``, online like the distance), and ``band_sum`` one more of the
       Triton K2 (the column sum restricted to each key's band of queries); calls asking for
       them run those Triton kernels, not the Gluon ones, which compute neither. K2 then
       gives the attention received and block statistics in the same pass. ``band_count``
       depends on positions only and comes from the mask in torch (:func:`band_count`).

    Masks: the LazyMask's structure hints (``causal``, ``sliding_window``, offsets) become the
    kernels' token rule, and its padding becomes a key bias of -1e30 plus NaN statistics at
    padding queries. The mask function itself is trusted to match those hints, except for a
    fixed mask tensor, which goes to the reference. Outputs at padding queries are finite but
    unspecified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probe.attention.backends import register_backend, sdpa_attention
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention, select_sinks
from probe.attention.spec import AttentionOutput, Band, LayerEdit, SinkRule, StatRequest
from probe.attention.stats import band_first_positions
from probe.kernels.blocks import NEG_BIAS, TokenRule, rule_table

try:
    from probe.kernels.act.columns import add_selected_columns, k2_inputs
    from probe.kernels.gluon.k2_launch import gluon_k2_operands
    from probe.kernels.launch import ActScale, BandRows, column_stats, flash_forward, head_dim_problem

    HAVE_TRITON = True
except ImportError:  # CPU-only installs without Triton still get the backend (as the reference)
    HAVE_TRITON = False

K1_BLOCK = 128
K2_BLOCK = (64, 128)  # (queries per step, keys per program) of the Triton K2
STAT_BLOCKS = (16, 32, 64, 128)
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclass(frozen=True)
class Call:
    """One backend call's arguments."""

    query: Tensor
    key: Tensor
    value: Tensor
    mask: LazyMask
    scaling: float
    softcap: float | None
    want: StatRequest
    edit: LayerEdit | None
    chunk_size: int | None = None


@dataclass(frozen=True)
class Route:
    name: str
    applies: Callable[[Call], bool]
    run: Callable[[Call], AttentionOutput]


def _unsupported(c: Call) -> bool:
    edit = c.edit
    scales = edit.key_scales if edit is not None else ()
    return (
        not c.query.is_cuda
        or not HAVE_TRITON
        or c.query.dtype not in DTYPES
        or head_dim_problem(c.query.shape[-1], c.query.dtype, on_gpu=True) is not None
        or c.softcap is not None
        or c.want.pattern
        or c.mask.is_fixed
        or len(scales) > 1
        or (edit is not None and edit.per_prompt)
        or (c.want.block_size is not None and c.want.block_size not in STAT_BLOCKS)
        or (bool(scales) and (c.want.lookback_window is not None or c.want.band is not None))
        or c.want.span is not None  # span_mass (image-token mass): the reference computes it
        or (edit is not None and edit.last_row_boost is not None)  # PAINT's boost: the reference does it
    )


def _plain(c: Call) -> bool:
    return not c.want.any_stats and (c.edit is None or c.edit.is_empty)


def _run_reference(c: Call) -> AttentionOutput:
    options = {"chunk_size": c.chunk_size} if c.chunk_size is not None else {}
    return reference_attention(c.query, c.key, c.value, c.mask, scaling=c.scaling, softcap=c.softcap,
                               want=c.want, edit=c.edit, **options)


def _run_sdpa(c: Call) -> AttentionOutput:
    return sdpa_attention(c.query, c.key, c.value, c.mask, scaling=c.scaling, want=c.want, edit=c.edit)


def run_kernels(c: Call) -> AttentionOutput:
    """The ``"triton"`` route: K1 (and ACT's pass), then the statistics; runs whatever the route
    rules say (tests call it directly to hold the kernels to the reference)."""
    rule = token_rule(c.mask)
    dev = c.query.device
    band = band_rows(c.mask, c.want.band, dev) if c.want.band is not None else None  # checks first_rows first
    n_q, n_kv = c.query.shape[2], c.key.shape[2]
    table = rule_table(rule, n_q, n_kv, K1_BLOCK, K1_BLOCK, dev)
    bias = _key_bias(c)
    edit = c.edit if c.edit is not None and not c.edit.is_empty else None
    act, sinks = _resolve_act(c, rule, bias)
    k1 = flash_forward(
        c.query, c.key, c.value, table, scaling=c.scaling, key_bias=bias,
        entropy=c.want.entropy, distance=c.want.distance, act=act,
        head_scale=edit.head_scale if edit is not None else None, act_row_stats=True,
        lookback_window=c.want.lookback_window,
    )
    stats = _statistics(c, rule, bias, k1, act, band) if c.want.any_stats else {}
    return AttentionOutput(output=k1.output, pattern=None, stats=stats, sinks=sinks)


ROUTES: tuple[Route, ...] = (
    Route("reference", _unsupported, _run_reference),
    Route("sdpa", _plain, _run_sdpa),
    Route("triton", lambda c: True, run_kernels),
)


def route_for(call: Call) -> Route:
    """The route a call takes (first match in ``ROUTES``)."""
    return next(route for route in ROUTES if route.applies(call))


def triton_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    *,
    scaling: float | None = None,
    softcap: float | None = None,
    want: StatRequest = StatRequest(),
    edit: LayerEdit | None = None,
    chunk_size: int | None = None,
) -> AttentionOutput:
    """Attention through the Triton kernels where they apply (module docstring), else fallbacks.

    ``chunk_size`` reaches the reference fallback; the kernels choose their own tiles."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    call = Call(query, key, value, mask, scaling, softcap, want, edit, chunk_size)
    return route_for(call).run(call)


def token_rule(mask: LazyMask) -> TokenRule:
    """The kernels' token predicate for a LazyMask's structure hints."""
    window = mask.sliding_window
    return TokenRule(
        causal=mask.causal,
        window=(int(window),) if window is not None else None,
        sink=(0,) if window is not None else None,
        q_offset=mask.q_offset,
        kv_offset=mask.kv_offset,
    )


def _key_bias(c: Call) -> Float[Tensor, "_ _ k"] | None:
    """Edit bias plus key padding (as -1e30), float32, or None when neither is present."""
    bias = c.edit.key_bias if c.edit is not None else None
    if c.mask.padding is None:
        return bias.float() if bias is not None else None
    pad = torch.where(c.mask.key_padding().to(c.query.device), 0.0, NEG_BIAS)[:, None, :]
    return pad if bias is None else bias.float() + pad


def _resolve_act(c: Call, rule: TokenRule, bias: Tensor | None) -> tuple["ActScale | None", tuple[Tensor, ...]]:
    """The single ACT key scaling as kernel arguments; SinkRule sets are detected with K1 + K2."""
    if c.edit is None or not c.edit.key_scales:
        return None, ()
    scale = c.edit.key_scales[0]
    keys = scale.keys
    sinks = ()
    if isinstance(keys, SinkRule):
        keys = detect_sinks_gpu(c, rule, bias, keys)
        sinks = (keys,)
    return ActScale(selected=keys.to(c.query.device), factor=scale.factor), sinks


def detect_sinks_gpu(c: Call, rule: TokenRule, bias: Tensor | None, sink_rule: SinkRule) -> Bool[Tensor, "batch head k"]:
    """ACT's sink set from the unedited attention: K1 for the log-sum-exp, K2 for the means."""
    n_q, n_kv = c.query.shape[2], c.key.shape[2]
    table = rule_table(rule, n_q, n_kv, K1_BLOCK, K1_BLOCK, c.query.device)
    lse = flash_forward(c.query, c.key, c.value, table, scaling=c.scaling, key_bias=bias).lse
    received = _received(c, rule, bias, _mask_rows(lse, c.mask), None)
    return select_sinks(received["received_mean"], received["visible_count"], sink_rule)


def _statistics(c: Call, rule: TokenRule, bias: Tensor | None, k1, act=None,
                band: "BandRows | None" = None) -> dict[str, Tensor]:
    """Row statistics from K1 (edited by ACT's pass when there is one), column statistics from
    K2; the log-sum-exp is the unedited attention's, as in the reference."""
    stats = {"lse": _mask_rows(k1.lse, c.mask)}
    if c.want.entropy:
        stats["entropy"] = _mask_rows(k1.entropy, c.mask)
    if c.want.distance:
        stats["distance"] = _mask_rows(k1.distance, c.mask)
    if c.want.first_token:
        first = _first_token(c, rule, bias, k1.lse)
        if act is not None:
            first = first * _first_token_factor(c, act, k1.act_weights)
        stats["first_token"] = _mask_rows(first, c.mask)
    if c.want.lookback_window is not None:
        stats["lookback"] = _mask_rows(k1.lookback, c.mask)
    if c.want.received or c.want.block_size is not None or c.want.band is not None:
        if act is None:
            received = _received(c, rule, bias, stats["lse"], c.want.block_size, band)
        else:  # no band here: the route sends ACT with rhythm statistics to the reference
            received = _received_with_act(c, rule, bias, stats["lse"], act, k1.act_weights)
        names = ((RECEIVED if c.want.received else ()) + (BLOCKS if c.want.block_size is not None else ())
                 + (BAND_STATS if c.want.band is not None else ()))
        stats.update({name: received[name] for name in names})
    return stats


RECEIVED = ("received_sum", "received_max", "visible_count", "received_mean")
BLOCKS = ("block_sum", "block_max")
BAND_STATS = ("band_sum", "band_count", "band_mean")


def _received(c: Call, rule: TokenRule, bias: Tensor | None, lse: Tensor, block_size: int | None,
              band: "BandRows | None" = None) -> dict[str, Tensor]:
    """K2 over the column table; ``lse`` must be NaN at padding queries. With a band, the
    Triton K2 (the Gluon one has no band accumulator) gives every column statistic in one pass."""
    n_q, n_kv = c.query.shape[2], c.key.shape[2]
    if block_size is not None:
        block_q = block_kv = block_size
    else:  # the Gluon K2 takes 128-query tiles; the Triton K2 was tuned on 64
        block_q, block_kv = (128, 128) if band is None and gluon_k2_operands(c.query, c.key) else K2_BLOCK
    table = rule_table(rule, n_q, n_kv, block_q, block_kv, c.query.device)
    cols = column_stats(c.query, c.key, lse, table, scaling=c.scaling, key_bias=bias,
                        block_stats=block_size is not None, band=band)
    key_valid = c.mask.key_padding().to(c.query.device)
    count = cols["count"][:, 0] * key_valid
    total = cols["received_sum"]
    out = {
        "received_sum": total,
        "received_max": cols["received_max"],
        "visible_count": count,
        "received_mean": _received_mean(total, count),
    }
    if block_size is not None:
        out.update(block_sum=cols["block_sum"], block_max=cols["block_max"])
    if band is not None:
        band_total, band_n = cols["band_sum"], band_count(c.mask, band)
        out.update(band_sum=band_total, band_count=band_n,
                   band_mean=torch.where(band_n[:, None] > 0, band_total / band_n[:, None].clamp_min(1), math.nan))
    return out


def band_rows(mask: LazyMask, band: Band, device) -> "BandRows":
    """The band as K2 takes it: look-aheads and each batch row's first counted query index
    (a ValueError, as from the reference, when ``first_rows`` does not match the batch)."""
    first = band_first_positions(band.first_rows, mask.first_key().to(device), mask.kv_offset) - mask.q_offset
    return BandRows(lo=band.lo, hi=band.hi, first_query=first)


def band_count(mask: LazyMask, band: "BandRows") -> Float[Tensor, "batch k"]:
    """``band_count`` as the reference defines it, from positions alone: for each real key ``s``,
    the number of real queries ``t`` with ``lo <= t - s <= hi`` at or after the batch row's first
    band row (whether the mask lets ``t`` see ``s`` or not). One cumulative sum over the queries,
    then a difference per key: ``O(batch x (q + k))``."""
    batch, n_q, n_kv = mask.batch_size, mask.q_length, mask.kv_length
    device = band.first_query.device
    counted = mask.query_padding().to(device) & (torch.arange(n_q, device=device) >= band.first_query[:, None])
    before = torch.nn.functional.pad(counted.long().cumsum(1), (1, 0))  # [batch, q + 1]: counted queries < i
    # Key j's band holds the queries i with lo <= (q_offset + i) - (kv_offset + j) <= hi.
    lo_i = torch.arange(n_kv, device=device) + mask.kv_offset - mask.q_offset + band.lo
    start = lo_i.clamp(0, n_q)
    stop = start.new_full((n_kv,), n_q) if band.hi is None else (lo_i - band.lo + band.hi + 1).clamp(0, n_q)
    stop = torch.maximum(stop, start)
    count = before.gather(1, stop.expand(batch, -1)) - before.gather(1, start.expand(batch, -1))
    return (count * mask.key_padding().to(device)).float()


def _received_with_act(c: Call, rule: TokenRule, bias: Tensor | None, lse: Tensor, act: "ActScale",
                       weights: Float[Tensor, "2 batch head q"]) -> dict[str, Tensor]:
    """Column statistics of the ACT-edited attention (:mod:`probe.kernels.act.columns`)."""
    batch, heads = c.query.shape[:2]
    shifted, k2_bias = k2_inputs(lse, bias, act.selected, weights[1])
    out = _received(c, rule, k2_bias, shifted, c.want.block_size)
    lists = act.kernel_lists(batch, heads, c.value.shape[1], c.key.shape[2], c.query.device)
    add_selected_columns(out, c.query, c.key, lse, bias, lists, weights[0], rule, c.scaling,
                                     c.want.block_size)
    out["received_mean"] = _received_mean(out["received_sum"], out["visible_count"])
    return out


def _received_mean(total: Float[Tensor, "batch head k"], count: Float[Tensor, "batch k"]) -> Float[Tensor, "batch head k"]:
    """ACT's per-key mean: attention received over the queries that see the key (0 for none)."""
    return torch.where(count[:, None] > 0, total / count[:, None].clamp_min(1), 0.0)


def _first_token_factor(c: Call, act: "ActScale", weights: Float[Tensor, "2 batch head q"]) -> Float[Tensor, "batch head q"]:
    """ACT's factor on each row's first-key term: the own-selection one if the head selected it."""
    batch, heads = c.query.shape[:2]
    first = c.mask.first_key().to(c.query.device)
    sel = act.selected.to(c.query.device).expand(batch, heads, -1).gather(-1, first[:, None, None].expand(batch, heads, 1))
    return torch.where(sel, weights[0], weights[1])


def _first_token(c: Call, rule: TokenRule, bias: Tensor | None, lse: Tensor) -> Float[Tensor, "batch head q"]:
    """Attention to the first real key: ``exp(s_i,first - lse_i)`` where that key is visible."""
    batch, heads, n_q, _ = c.query.shape
    first = c.mask.first_key().to(c.query.device)  # (B,)
    group = heads // c.key.shape[1]
    k_first = c.key[torch.arange(batch, device=first.device), :, first]  # (B, KVH, D)
    k_first = k_first.repeat_interleave(group, 1).float()
    logit = torch.einsum("bhqd,bhd->bhq", c.query.float(), k_first) * c.scaling
    if bias is not None:
        logit = logit + bias.expand(batch, heads, -1).gather(-1, first[:, None, None].expand(batch, heads, 1))
    q_idx = torch.arange(n_q, device=first.device)
    seen = rule.allowed(torch.zeros((), dtype=torch.long, device=first.device), q_idx[None, :], first[:, None], 1, c.key.shape[2])
    return torch.where(seen[:, None, :], torch.exp(logit - lse), 0.0)


def _mask_rows(values: Float[Tensor, "batch head q"], mask: LazyMask) -> Float[Tensor, "batch head q"]:
    if mask.padding is None:
        return values
    valid = mask.query_padding().to(values.device)[:, None, :]
    return values.masked_fill(~valid, math.nan)


register_backend("triton", triton_attention, overwrite=True)
