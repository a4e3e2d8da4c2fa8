"""The fast CPU backend: the reference's results with fewer passes over memory.

Context:
    :func:`~probe.attention.reference.reference_attention` is the definition every backend is
    checked against; it is written for clarity, and on CPU most of its statistics time goes to
    separate memory-bound passes over each ``[heads, rows, keys]`` block: a log-sum-exp that
    repeats the softmax's exponential, ``p log p`` for the entropy, the mask built and applied
    to whole blocks in every layer, one pass per statistic. This backend computes the same
    numbers (to float rounding) from one softmax per block of query rows:

    * the logits of the keys the block may see go into a reusable buffer (keys no row of the
      block sees are never computed: half the work under a causal mask);
    * the mask is applied only to the columns some row of the block cannot see (the diagonal
      tile under a causal mask, padding columns, a sliding window's edge). What to mask is
      worked out once per mask and reused by every layer of the forward (:class:`MaskPlan`);
    * one fused softmax gives ``p``; everything is read from it: the output ``p @ v``, the
      pattern when asked, each row's log-sum-exp ``max(s) - log(max(p))`` (the largest ``p`` is
      ``exp(max s - lse)``), the entropy ``lse - sum p s`` (no logarithm per element), the
      distance as a matrix-vector product with the key positions, received sums and maxima;
    * the products go one matrix per key head (``mm``) for a prompt or a few: a batched product
      over SmolLM2's three key heads splits them 2:1 over two threads.

    Statistics other than those (``block_sum``, ``lookback``, the band, ``span_mass``) are folded
    from the same probabilities by the reference's :class:`~probe.attention.stats.StatAccumulator`.
    Calls this backend does not speed up go to the reference unchanged: edits other than
    ``head_scale``, soft-capping, dtypes other than float32/float64, tensors not on the CPU.

    Rows that may see nothing (left-padding queries) spread their attention evenly over every
    key, as HF's eager attention and the reference's pattern mode do; their output is never
    read and their statistics are NaN. Blocks are :func:`block_rows` query rows (at most the
    call's ``chunk_size``: 256 at 1k tokens, 128 at 2k, 64 at 4k, 32 at 8k on SmolLM2), so memory is
    ``O(rows x keys)`` per head as in the reference (two blocks alive, against about four of
    256 rows there).

    Why not PyTorch's fused CPU attention for the output (it returns each row's log-sum-exp
    too) and a statistics-only pass beside it: measured on SmolLM2's geometry, the fused call
    costs as much as the products it saves, and the pair was slower than this single pass at
    2k, 4k and 8k tokens (notes/capture_cpu.md).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probe.attention.mask import LazyMask
from probe.attention.reference import DEFAULT_CHUNK, reference_attention
from probe.attention.spec import AttentionOutput, LayerEdit, StatRequest, head_view
from probe.attention.stats import StatAccumulator

FAST_DTYPES = (torch.float32, torch.float64)
# Statistics mode: query rows per block of about BLOCK_ELEMENTS logits (heads x rows x keys),
# between MIN_ROWS and the call's chunk_size. Smaller blocks stay closer to the cache, larger
# ones cost fewer calls, each a synchronisation of the intra-op threads: on an oversubscribed
# machine that costs milliseconds per call (2 threads, load 4-5: one layer at 1k tokens took
# 2025 ms in 64-row blocks, 308 ms in 512-row blocks, 77 ms with 1 thread). Measured on
# SmolLM2's geometry (notes/capture_cpu.md): 1 thread, 32 rows were up to 20% faster than 128
# at 2k and 4k, and tied at 8k. Pattern mode, quadratic in memory anyway, uses chunk_size rows.
BLOCK_ELEMENTS = 9 * 128 * 2048
MIN_ROWS = 32
LOOP_PRODUCTS = 8  # prompts x key heads up to which grouped_matmul loops over mm (see there)
PLAN_CACHE_SIZE = 4  # masks whose plans are kept (a forward uses one or two: full and sliding)
PLAN_BYTES_LIMIT = 64 * 2**20  # plans whose partial-column masks exceed this are not kept


def fast_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    *,
    scaling: float | None = None,
    softcap: float | None = None,
    want: StatRequest = StatRequest(),
    edit: LayerEdit | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> AttentionOutput:
    """Same contract and results as :func:`reference_attention` (to float rounding), faster on CPU."""
    edit = edit if edit is not None and not edit.is_empty else None
    shapes_ok = (query.shape[1] % key.shape[1] == 0 and key.shape[2] == value.shape[2] == mask.kv_length
                 and query.shape[2] == mask.q_length > 0)
    if not (shapes_ok and fast_path_applies(query, softcap, edit)):
        return reference_attention(query, key, value, mask, scaling=scaling, softcap=softcap, want=want, edit=edit,
                                   chunk_size=chunk_size)  # which also names what is wrong with the shapes
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    # Rows per block depend on the heads and keys, not on the batch: a prompt alone and in a
    # padded batch are then computed in the same blocks (same numbers, to the last bit).
    rows = chunk_size if want.pattern else block_rows(query.shape[1], key.shape[2], chunk_size)
    output, pattern, stats = tile_pass(query, key, value, mask, scaling, want, rows)
    if edit is not None and edit.head_scale is not None:
        output = output * head_view(edit.head_scale.to(output))
    return AttentionOutput(output=output, pattern=pattern, stats=stats)


def block_rows(heads: int, k_len: int, chunk_size: int) -> int:
    """Query rows per block: a power of two near ``BLOCK_ELEMENTS / (heads x keys)``, at least
    ``MIN_ROWS``, at most ``chunk_size``."""
    target = max(BLOCK_ELEMENTS // max(heads * k_len, 1), 1)
    rows = max(MIN_ROWS, 1 << (target.bit_length() - 1))
    return min(rows, chunk_size)


def fast_path_applies(query: Tensor, softcap: float | None, edit: LayerEdit | None) -> bool:
    """True for the calls this backend computes itself (others go to the reference)."""
    plain_edit = edit is None or (edit.key_bias is None and not edit.key_scales and edit.last_row_boost is None)
    return query.device.type == "cpu" and query.dtype in FAST_DTYPES and softcap is None and plain_edit


@dataclass(frozen=True)
class BlockPlan:
    """What one block of query rows ``start:stop`` needs from the mask.

    Attributes:
        lo, hi: the keys computed: every key some row of the block may see (the same for a
            prompt alone and in a padded batch, so that both give the same numbers).
        partial: ``(a, b, allowed)`` runs of key columns ``a:b`` that some row of the block may
            not see, with ``allowed`` ``Bool[batch, 1, rows, b - a]`` (True = may attend).
        blind: ``Bool[batch, rows]``, rows that may see no key; None when there are none.
    """

    start: int
    stop: int
    lo: int
    hi: int
    partial: tuple[tuple[int, int, Tensor], ...]
    blind: Tensor | None


@dataclass(frozen=True)
class MaskPlan:
    """A mask worked out for blocks of ``chunk_size`` query rows: the blocks and the number of
    real queries that see each key (``visible_count``, ``Float[batch, k]``)."""

    blocks: tuple[BlockPlan, ...]
    visible_count: Tensor

    @property
    def nbytes(self) -> int:
        return sum(allowed.numel() for block in self.blocks for _, _, allowed in block.partial)


def plan_mask(mask: LazyMask, chunk_size: int, from_zero: bool = False) -> MaskPlan:
    """Build the :class:`MaskPlan` of ``mask`` (``from_zero``: every block's keys start at 0)."""
    valid = mask.query_padding()
    count = torch.zeros(mask.batch_size, mask.kv_length)
    blocks = []
    for start in range(0, mask.q_length, chunk_size):
        stop = min(start + chunk_size, mask.q_length)
        rows = mask.rows(start, stop)[:, 0]  # [batch, rows, k]
        count += (rows & valid[:, start:stop, None]).sum(1)
        sees = rows.any(-1)  # [batch, rows]
        blind = ~sees
        any_blind = bool(blind.any())
        lo, hi = visible_span(rows)
        lo = 0 if from_zero else lo
        hidden = ~rows[..., lo:hi] & sees[..., None]  # keys a row that sees something may not see
        runs = tuple((lo + a, lo + b, rows[:, None, :, lo + a:lo + b].clone())
                     for a, b in column_runs(hidden.any(1).any(0)))
        blocks.append(BlockPlan(start, stop, lo, hi, runs, blind if any_blind else None))
    return MaskPlan(tuple(blocks), count)


def visible_span(rows: Bool[Tensor, "batch rows k"]) -> tuple[int, int]:
    """First and one-past-last key any row may see (0, 1 when none may)."""
    seen = torch.nonzero(rows.any(dim=1).any(dim=0))
    if not seen.numel():
        return 0, 1
    return int(seen[0]), int(seen[-1]) + 1


def column_runs(flags: Bool[Tensor, " w"]) -> list[tuple[int, int]]:
    """The ``[start, stop)`` runs of True in ``flags``."""
    if not bool(flags.any()):
        return []
    padded = torch.cat([flags.new_zeros(1), flags, flags.new_zeros(1)]).to(torch.int8)
    edges = torch.nonzero(padded.diff()).flatten().tolist()
    return list(zip(edges[0::2], edges[1::2]))


_PLANS: OrderedDict[tuple, tuple[LazyMask, Tensor | None, MaskPlan]] = OrderedDict()
_PLANS_LOCK = threading.Lock()  # captures may run in threads (the dashboard's jobs)


def cached_plan(mask: LazyMask, chunk_size: int, from_zero: bool = False) -> MaskPlan:
    """:func:`plan_mask`, kept for the next calls with the same mask (every layer of a forward).

    A mask is the same when its geometry is equal and it holds the same mask function and
    padding objects (kept alive here, so their ids cannot be reused) with unchanged padding."""
    key = (mask.batch_size, mask.q_length, mask.kv_length, mask.q_offset, mask.kv_offset, id(mask.mask_function),
           id(mask.padding), mask.use_vmap, str(mask.device), chunk_size, from_zero)
    with _PLANS_LOCK:
        hit = _PLANS.get(key)
    if hit is not None:
        kept, padding, plan = hit
        same_padding = padding is None or torch.equal(padding, mask.padding)
        if kept.mask_function is mask.mask_function and kept.padding is mask.padding and same_padding:
            return plan
    plan = plan_mask(mask, chunk_size, from_zero)
    if plan.nbytes <= PLAN_BYTES_LIMIT:
        with _PLANS_LOCK:
            _PLANS[key] = (mask, None if mask.padding is None else mask.padding.clone(), plan)
            while len(_PLANS) > PLAN_CACHE_SIZE:
                _PLANS.popitem(last=False)
    return plan


def forget_plans() -> None:
    """Drop every kept mask plan (they are rebuilt on the next call)."""
    with _PLANS_LOCK:
        _PLANS.clear()


def kept_plans() -> int:
    """How many mask plans are kept."""
    return len(_PLANS)


class Workspace:
    """Two reusable blocks (logits, probabilities) for one call: a block written into fresh
    memory costs page faults that can double a matrix product's time, so each call allocates
    its largest block once and works in views of it."""

    def __init__(self, numel: int, dtype: torch.dtype):
        self.scores = torch.empty(numel, dtype=dtype)
        self.probs = torch.empty(numel, dtype=dtype)

    def view(self, which: str, *shape: int) -> Tensor:
        return getattr(self, which)[: math.prod(shape)].view(*shape)


class CoreStatistics:
    """The statistics this backend reduces itself (the reference's names, shapes and NaN
    conventions): received sums and maxima, entropy, distance, first-token attention."""

    def __init__(self, want: StatRequest, query: Tensor, key: Tensor, mask: LazyMask, visible_count: Tensor):
        batch, heads, q_len, _ = query.shape
        k_len = key.shape[2]
        self.want = want
        self.query_valid = mask.query_padding()
        self.first_key = mask.first_key()
        # Positions from each row's first real key, as the reference counts them (see StatAccumulator).
        origin = self.first_key.float() + mask.kv_offset
        self.key_pos = torch.arange(k_len, dtype=torch.float32)[None, :] + mask.kv_offset - origin[:, None]
        self.q_pos = torch.arange(q_len, dtype=torch.float32)[None, :] + mask.q_offset - origin[:, None]
        self.out: dict[str, Tensor] = {}
        if want.received:
            self.out.update(received_sum=torch.zeros(batch, heads, k_len), received_max=torch.zeros(batch, heads, k_len),
                            visible_count=visible_count.clone())
        for name in ("entropy", "distance", "first_token"):
            if getattr(want, name):
                self.out[name] = torch.full((batch, heads, q_len), math.nan)

    def update(self, p: Float[Tensor, "batch head rows w"], entropy: Float[Tensor, "batch head rows"] | None,
               lo: int, start: int, stop: int) -> None:
        """Fold probabilities ``p`` of rows ``start:stop`` and keys ``lo:lo + w`` (zero at padding
        rows) and the rows' entropies."""
        hi = lo + p.shape[-1]
        valid = self.query_valid[:, start:stop]
        if self.want.received:
            self.out["received_sum"][..., lo:hi] += p.sum(2)
            head = self.out["received_max"][..., lo:hi]
            torch.maximum(head, p.amax(2).to(head.dtype), out=head)
        if self.want.entropy:
            self._store("entropy", entropy, valid, start, stop)
        if self.want.distance:
            expected_key = expected_positions(p, self.key_pos[:, lo:hi])
            self._store("distance", self.q_pos[:, None, start:stop] - expected_key, valid, start, stop)
        if self.want.first_token:
            first = (self.first_key - lo).clamp(0, p.shape[-1] - 1)
            inside = (self.first_key >= lo) & (self.first_key < hi)
            index = first[:, None, None, None].expand(-1, *p.shape[1:3], 1)
            self._store("first_token", torch.where(inside[:, None, None], p.gather(-1, index)[..., 0], 0.0),
                        valid, start, stop)

    def _store(self, name: str, values: Tensor, valid: Tensor, start: int, stop: int) -> None:
        self.out[name][:, :, start:stop] = values.float().masked_fill(~valid[:, None, :], math.nan)

    def finish(self) -> dict[str, Tensor]:
        out = dict(self.out)
        if self.want.received:
            count = out["visible_count"][:, None, :]
            out["received_mean"] = torch.where(count > 0, out["received_sum"] / count.clamp_min(1), 0.0)
        return out


def expected_positions(p: Float[Tensor, "batch head rows w"], key_pos: Float[Tensor, "batch w"]
                       ) -> Float[Tensor, "batch head rows"]:
    """``sum_k p[..., k] key_pos[k]`` per row: one matrix-vector product per prompt (a batched
    product with a one-column matrix is several times slower on CPU)."""
    batch, heads, rows, width = p.shape
    return torch.stack([torch.mv(p[b].reshape(heads * rows, width), key_pos[b].to(p.dtype)) for b in range(batch)]
                       ).view(batch, heads, rows)


def extra_request(want: StatRequest) -> StatRequest | None:
    """The statistics of ``want`` that :class:`CoreStatistics` does not compute (for the
    reference's StatAccumulator)."""
    extra = StatRequest(block_size=want.block_size, lookback_window=want.lookback_window, band=want.band,
                        span=want.span)
    return extra if extra.any_stats else None


def tile_pass(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    scaling: float,
    want: StatRequest,
    chunk_size: int,
) -> tuple[Float[Tensor, "batch q head d"], Float[Tensor, "batch head q k"] | None, dict[str, Tensor]]:
    """Output, pattern (when asked) and statistics from one softmax per block of query rows."""
    batch, heads, q_len, _ = query.shape
    k_len = key.shape[2]
    extra = extra_request(want)
    plan = cached_plan(mask, chunk_size, from_zero=extra is not None)
    pattern = query.new_empty(batch, heads, q_len, k_len, dtype=torch.float32) if want.pattern else None
    output = query.new_empty(batch, q_len, heads, value.shape[-1])
    core = CoreStatistics(want, query, key, mask, plan.visible_count) if want.any_stats else None
    acc = StatAccumulator(extra, query, key, mask) if extra is not None else None
    width = max(block.hi - block.lo for block in plan.blocks)
    work = Workspace(batch * heads * min(chunk_size, q_len) * width, query.dtype)
    lse_parts = []
    q_scaled = query * scaling
    key_t = key.transpose(-1, -2).contiguous()  # [batch, kv_head, d, k]: each block's keys are a row-major slice
    for block in plan.blocks:
        start, stop, lo, hi = block.start, block.stop, block.lo, block.hi
        scores = work.view("scores", batch, heads, stop - start, hi - lo)
        grouped_scores_into(scores, q_scaled[:, :, start:stop], key_t[..., lo:hi])
        lowest = torch.finfo(scores.dtype).min
        for a, b, allowed in block.partial:
            scores[..., a - lo:b - lo].masked_fill_(~allowed, lowest)
        p = work.view("probs", *scores.shape)
        torch.ops.aten._softmax.out(scores, -1, False, out=p)
        if block.blind is not None:  # spread evenly over the computed keys, as the reference does
            p.masked_fill_(block.blind[:, None, :, None], 1.0 / (hi - lo))
            scores.masked_fill_(block.blind[:, None, :, None], 0.0)
        if pattern is not None:
            rows = pattern[:, :, start:stop]
            rows[..., :lo] = 0.0
            rows[..., hi:] = 0.0
            rows[..., lo:hi] = p
        output[:, start:stop] = output_rows(p, value[:, :, lo:hi])
        if pattern is not None and block.blind is not None:  # eager: a blind row spreads over every key
            blind = block.blind[:, None, :, None]
            pattern[:, :, start:stop].masked_fill_(blind, 1.0 / k_len)
            every_key = value.mean(dim=2).repeat_interleave(heads // key.shape[1], dim=1)  # [batch, head, d]
            output[:, start:stop] = torch.where(blind.transpose(1, 2), every_key[:, None], output[:, start:stop])
        if core is None:
            continue
        # p's largest entry is exp(max s - lse), so lse = max s - log max p (no second exponential).
        lse = scores.amax(-1) - p.amax(-1).log()
        lse_parts.append(lse.float())
        # -sum p log p = lse - sum p s, as p sums to one (masked logits are finite, their p exactly 0);
        # p s in place of the logits, which are not read again (no block-sized temporary).
        entropy = lse - scores.mul_(p).sum(-1) if want.entropy else None
        valid = core.query_valid[:, start:stop]
        if not bool(valid.all()):
            p.masked_fill_(~valid[:, None, :, None], 0.0)
        core.update(p, entropy, lo, start, stop)
        if acc is not None:
            acc.update(p, mask.rows(start, stop)[..., :hi], start, stop)
    if core is None:
        return output, pattern, {}
    stats = core.finish()
    if acc is not None:
        stats.update({name: value for name, value in acc.finish().items() if name not in stats})
    stats["lse"] = torch.cat(lse_parts, dim=2).masked_fill(~core.query_valid[:, None, :], math.nan)
    return output, pattern, stats


def grouped_scores_into(
    out: Float[Tensor, "batch head rows k"], q_block: Float[Tensor, "batch head rows d"],
    key_t: Float[Tensor, "batch kv_head d k"],
) -> None:
    """``q @ k^T`` into ``out`` (contiguous), each group of query heads sharing one key head:
    its group's rows stacked (no repeated keys)."""
    batch, heads, rows, d = q_block.shape
    kv_heads, width = key_t.shape[1], key_t.shape[3]
    grouped = q_block.reshape(batch, kv_heads, heads // kv_heads * rows, d)
    grouped_matmul(grouped, key_t, out.view(batch, kv_heads, heads // kv_heads * rows, width))


def output_rows(
    p: Float[Tensor, "batch head rows w"], value: Float[Tensor, "batch kv_head w d"]
) -> Float[Tensor, "batch rows head d"]:
    """``p @ v`` with each group of query heads sharing one value head, in HF's layout."""
    batch, heads, rows, width = p.shape
    kv_heads = value.shape[1]
    grouped = p.to(value.dtype).reshape(batch, kv_heads, heads // kv_heads * rows, width)
    out = grouped_matmul(grouped, value, grouped.new_empty(*grouped.shape[:3], value.shape[-1]))
    return out.reshape(batch, heads, rows, -1).transpose(1, 2)


def grouped_matmul(
    a: Float[Tensor, "batch kv_head m n"], b: Float[Tensor, "batch kv_head n p"], out: Float[Tensor, "batch kv_head m p"]
) -> Float[Tensor, "batch kv_head m p"]:
    """``a @ b`` into ``out``: one ``mm`` per prompt and key head for up to ``LOOP_PRODUCTS`` of them
    (a batched product over SmolLM2's 3 key heads splits them 2:1 over two threads; the loop was
    25% faster at 8k keys, notes/capture_cpu.md), one batched product beyond (even enough, and
    Python's overhead small)."""
    if a.shape[0] * a.shape[1] > LOOP_PRODUCTS:
        return torch.matmul(a, b, out=out)
    for i in range(a.shape[0]):
        for g in range(a.shape[1]):
            torch.mm(a[i, g], b[i, g], out=out[i, g])
    return out
