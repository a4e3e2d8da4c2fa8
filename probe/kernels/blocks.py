"""Block tables: one sparse-attention layout for every pattern, compatible with FlexAttention.

Context:
    Attention over N queries and N keys is cut into tiles of ``block_q x block_kv``. A
    :class:`BlockTable` lists, for each (batch, head, query block), the key blocks to visit,
    split as FlexAttention's ``BlockMask`` splits them:

    * ``full_kv_num_blocks`` / ``full_kv_indices``: blocks where every token pair is allowed,
      visited with no mask;
    * ``kv_num_blocks`` / ``kv_indices``: "partial" blocks, where the token predicate
      (:class:`TokenRule`: key bound, causal, sliding window, sink tokens) is applied.

    Blocks in neither list are skipped, which is where block sparsity saves time. The same
    information transposed (query blocks per key block, Flex's ``q_num_blocks`` etc.) drives the
    column pass K2. Leading batch/head dimensions may be 1 and are broadcast (dense, causal and
    sliding-window tables are the same for every batch row and head).

    Builders: :func:`dense_table` (full or causal), :func:`sliding_window_table`,
    :func:`sink_local_table` (StreamingLLM / MoA per-head sink + window spans),
    :func:`block_list_table` (explicit block selections) and :func:`topk_table` (the
    SeerAttention-style oracle: top blocks of K2's ``block_sum``). :meth:`BlockTable.to_flex`
    converts to a ``torch.nn.attention.flex_attention.BlockMask``; :meth:`BlockTable.allowed_rows`
    expands rows of the table to a dense boolean mask, which is how the CPU reference reproduces
    the sparse result exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

SKIP, PARTIAL, FULL = 0, 1, 2
NEG_BIAS = -1.0e30  # the key bias that removes a key (padding, ACT's selected columns in K2)


@dataclass(frozen=True)
class TokenRule:
    """The token-level predicate applied inside partial blocks.

    Query ``i`` may see key ``j`` (absolute positions ``qi = i + q_offset``,
    ``kj = j + kv_offset``) when ``j < kv_len`` and

        (not causal or qi >= kj) and (window is None or qi - kj < window[h] or kj < sink[h])

    Attributes:
        causal: apply the causal condition.
        window: per-head window length (keys with ``qi - kj < window``), or None for no window.
        sink: per-head number of leading sink tokens always visible (only used with ``window``).
        q_offset, kv_offset: absolute positions of the first query and key.
    """

    causal: bool = True
    window: tuple[int, ...] | None = None
    sink: tuple[int, ...] | None = None
    q_offset: int = 0
    kv_offset: int = 0

    @property
    def local(self) -> bool:
        return self.window is not None

    def window_tensor(self, heads: int, device: torch.device | str) -> Int[Tensor, " head"]:
        return self._per_head_cached("window", heads, 2**30, device)

    def sink_tensor(self, heads: int, device: torch.device | str) -> Int[Tensor, " head"]:
        return self._per_head_cached("sink", heads, 0, device)

    def _per_head_cached(self, name: str, heads: int, default: int, device) -> Int[Tensor, " head"]:
        """Built once per (heads, device) and kept on the rule: every kernel launch reads them,
        and building them took two small launches (a host-to-device copy with windows) per call."""
        cache = self.__dict__.setdefault("_per_head", {})  # frozen: cache through __dict__
        key = (name, heads, str(torch.device(device)))
        if key not in cache:
            cache[key] = _per_head(getattr(self, name), heads, default, device)
        return cache[key]

    def allowed(self, h: Tensor, q_idx: Tensor, kv_idx: Tensor, heads: int, kv_len: int) -> Tensor:
        """Broadcasting evaluation of the predicate on index tensors (any device)."""
        qi, kj = q_idx + self.q_offset, kv_idx + self.kv_offset
        ok = kv_idx < kv_len
        if self.causal:
            ok = ok & (qi >= kj)
        if self.local:
            window = self.window_tensor(heads, q_idx.device)[h]
            sink = self.sink_tensor(heads, q_idx.device)[h]
            ok = ok & ((qi - kj < window) | (kj < sink))
        return ok


def _per_head(values: tuple[int, ...] | None, heads: int, default: int, device) -> Int[Tensor, " head"]:
    if values is None:
        return torch.full((heads,), default, dtype=torch.int32, device=device)
    if len(values) == 1:
        values = values * heads
    if len(values) != heads:
        raise ValueError(f"per-head values have {len(values)} entries for {heads} heads")
    return torch.tensor(values, dtype=torch.int32, device=device)


@dataclass(frozen=True)
class BlockTable:
    """Which key blocks each query block visits (and the transpose), FlexAttention-style.

    Attributes:
        kv_num_blocks, kv_indices: partial (masked) key blocks per query block,
            ``[batch|1, head|1, q_blocks]`` and ``[batch|1, head|1, q_blocks, width]``.
        full_kv_num_blocks, full_kv_indices: full (unmasked) key blocks, same layout.
        q_num_blocks, q_indices, full_q_num_blocks, full_q_indices: the transpose, per key block.
        block_q, block_kv: tile sizes in tokens.
        q_len, kv_len: sequence lengths.
        rule: the token predicate inside partial blocks.
        kinds: ``Int8[batch|1, head|1, q_blocks, kv_blocks]``, SKIP/PARTIAL/FULL per tile.
    """

    kv_num_blocks: Int[Tensor, "tb th qb"]
    kv_indices: Int[Tensor, "tb th qb w1"]
    full_kv_num_blocks: Int[Tensor, "tb th qb"]
    full_kv_indices: Int[Tensor, "tb th qb w2"]
    q_num_blocks: Int[Tensor, "tb th kb"]
    q_indices: Int[Tensor, "tb th kb w3"]
    full_q_num_blocks: Int[Tensor, "tb th kb"]
    full_q_indices: Int[Tensor, "tb th kb w4"]
    block_q: int
    block_kv: int
    q_len: int
    kv_len: int
    rule: TokenRule = field(default_factory=TokenRule)
    kinds: Int[Tensor, "tb th qb kb"] | None = None

    @property
    def device(self) -> torch.device:
        return self.kv_num_blocks.device

    def visited_fraction(self, reference: "BlockTable | None" = None) -> float:
        """Blocks visited over the blocks of ``reference`` (default: all tiles)."""
        visited = float((self.kinds > 0).float().mean())
        if reference is None:
            return visited
        return visited / float((reference.kinds > 0).float().mean())

    def allowed_rows(self, start: int, stop: int, heads: int) -> Bool[Tensor, "tb h rows kv"]:
        """Dense expansion of query rows ``start:stop`` (True = may attend); for CPU reference."""
        rows = torch.arange(start, stop, device=self.device)
        cols = torch.arange(self.kv_len, device=self.device)
        kinds = self.kinds.expand(-1, heads, -1, -1)
        tile = kinds[:, :, rows // self.block_q][..., cols // self.block_kv]  # (B, H, rows, kv)
        h = torch.arange(heads, device=self.device)[:, None, None]
        token_ok = self.rule.allowed(h, rows[None, :, None], cols[None, None, :], heads, self.kv_len)
        return (tile == FULL) | ((tile == PARTIAL) & token_ok[None])

    def to_flex(self):
        """The same layout as a FlexAttention ``BlockMask`` (mask_mod = the token rule)."""
        from torch.nn.attention.flex_attention import BlockMask

        heads = self.kinds.shape[1]
        rule, kv_len = self.rule, self.kv_len

        def mask_mod(b, h, q_idx, kv_idx):
            return rule.allowed(h, q_idx, kv_idx, heads, kv_len)

        return BlockMask.from_kv_blocks(
            self.kv_num_blocks,
            _pad_width(self.kv_indices, self.kinds.shape[-1]),
            self.full_kv_num_blocks,
            _pad_width(self.full_kv_indices, self.kinds.shape[-1]),
            BLOCK_SIZE=(self.block_q, self.block_kv),
            mask_mod=mask_mod,
            seq_lengths=(self.q_len, self.kv_len),
        )


def _pad_width(indices: Tensor, width: int) -> Tensor:
    pad = width - indices.shape[-1]
    return torch.nn.functional.pad(indices, (0, pad)) if pad > 0 else indices


def table_from_kinds(
    kinds: Int[Tensor, "tb th qb kb"], block_q: int, block_kv: int, q_len: int, kv_len: int, rule: TokenRule
) -> BlockTable:
    """Build the index lists (both orientations) from a per-tile SKIP/PARTIAL/FULL map."""
    kinds = kinds.to(torch.int8)
    part_n, part_i = selected_lists(kinds == PARTIAL)
    full_n, full_i = selected_lists(kinds == FULL)
    t_kinds = kinds.transpose(-1, -2)
    tpart_n, tpart_i = selected_lists(t_kinds == PARTIAL)
    tfull_n, tfull_i = selected_lists(t_kinds == FULL)
    return BlockTable(
        part_n, part_i, full_n, full_i, tpart_n, tpart_i, tfull_n, tfull_i,
        block_q, block_kv, q_len, kv_len, rule, kinds,
    )


def selected_lists(selected: Bool[Tensor, "*lead c"]) -> tuple[Int[Tensor, "*lead"], Int[Tensor, "*lead w"]]:
    """Per row: how many columns are selected and their indices, ascending (int32); entries past
    a row's count are 0. One device sync (the width)."""
    cols = selected.shape[-1]
    num = selected.sum(-1, dtype=torch.int32)
    width = max(1, int(num.max())) if num.numel() else 1
    order = torch.arange(cols, device=selected.device, dtype=torch.int32)
    key = torch.where(selected, order, order + cols)
    idx = key.sort(dim=-1).values[..., :width]
    idx = torch.where(idx < cols, idx, torch.zeros_like(idx))
    return num.contiguous(), idx.contiguous()


def rule_kinds(
    rule: TokenRule, q_len: int, kv_len: int, block_q: int, block_kv: int, heads: int = 1, device="cpu"
) -> Int[Tensor, "1 th qb kb"]:
    """Classify every tile under ``rule`` (conservatively: PARTIAL when unsure, never wrong)."""
    qb = torch.arange(math.ceil(q_len / block_q), device=device)[:, None]
    kb = torch.arange(math.ceil(kv_len / block_kv), device=device)[None, :]
    q_first = qb * block_q + rule.q_offset
    q_last = torch.clamp((qb + 1) * block_q, max=q_len) - 1 + rule.q_offset
    k_first = kb * block_kv + rule.kv_offset
    k_last = torch.clamp((kb + 1) * block_kv, max=kv_len) - 1 + rule.kv_offset
    complete = ((kb + 1) * block_kv <= kv_len) & (qb >= 0)  # (qb, kb)
    every = complete & (q_first >= k_last) if rule.causal else complete
    none = q_last < k_first if rule.causal else torch.zeros_like(complete)
    every, none = every[None].expand(heads, -1, -1), none[None].expand(heads, -1, -1)
    if rule.local:
        window = rule.window_tensor(heads, device)[:, None, None]
        sink = rule.sink_tensor(heads, device)[:, None, None]
        every = every & ((q_last - k_first < window) | (k_last < sink))
        none = none | ((q_first - k_last >= window) & (k_first >= sink))
    kinds = torch.where(none, SKIP, torch.where(every, FULL, PARTIAL))
    return kinds[None].to(torch.int8)


@lru_cache(maxsize=64)
def _cached_rule_table(rule: TokenRule, q_len: int, kv_len: int, block_q: int, block_kv: int, heads: int, device: str):
    kinds = rule_kinds(rule, q_len, kv_len, block_q, block_kv, heads, device)
    return table_from_kinds(kinds, block_q, block_kv, q_len, kv_len, rule)


def rule_table(rule: TokenRule, q_len: int, kv_len: int, block_q: int = 128, block_kv: int = 128, device="cpu") -> BlockTable:
    """The (cached) table of a pure token rule: dense, causal, window, sink + local."""
    per_head = [len(v) for v in (rule.window, rule.sink) if v is not None and len(v) > 1]
    heads = max(per_head, default=1)
    return _cached_rule_table(rule, q_len, kv_len, block_q, block_kv, heads, str(torch.device(device)))


def dense_table(q_len: int, kv_len: int | None = None, *, causal: bool = True, block_q: int = 128,
                block_kv: int = 128, q_offset: int | None = None, kv_offset: int = 0, device="cpu") -> BlockTable:
    """Every allowed tile of dense (optionally causal) attention; queries are the last ``q_len``
    of ``kv_len`` keys by default, as in prefill with a cache."""
    kv_len = q_len if kv_len is None else kv_len
    q_offset = kv_len - q_len + kv_offset if q_offset is None else q_offset
    rule = TokenRule(causal=causal, q_offset=q_offset, kv_offset=kv_offset)
    return rule_table(rule, q_len, kv_len, block_q, block_kv, device)


def sliding_window_table(q_len: int, window: int, *, block_q: int = 128, block_kv: int = 128, device="cpu") -> BlockTable:
    """Causal sliding window (keys with ``i - j < window``), as transformers' sliding layers."""
    return rule_table(TokenRule(causal=True, window=(window,), sink=(0,)), q_len, q_len, block_q, block_kv, device)


def sink_local_table(q_len: int, windows: list[int], sinks: list[int], *, block_q: int = 128,
                     block_kv: int = 128, device="cpu") -> BlockTable:
    """StreamingLLM / MoA spans: per head, ``sinks[h]`` leading tokens plus a causal window."""
    rule = TokenRule(causal=True, window=tuple(windows), sink=tuple(sinks))
    return rule_table(rule, q_len, q_len, block_q, block_kv, device)


def block_list_table(keep: Bool[Tensor, "tb th qb kb"], q_len: int, kv_len: int | None = None, *,
                     causal: bool = True, block_q: int = 128, block_kv: int = 128) -> BlockTable:
    """An explicit selection of tiles (True = visit), intersected with the (causal) rule."""
    kv_len = q_len if kv_len is None else kv_len
    rule = TokenRule(causal=causal, q_offset=kv_len - q_len)
    base = rule_kinds(rule, q_len, kv_len, block_q, block_kv, 1, keep.device)
    kinds = torch.where(keep.to(torch.bool), base, torch.zeros_like(base))
    return table_from_kinds(kinds, block_q, block_kv, q_len, kv_len, rule)


def topk_table(block_scores: Float[Tensor, "batch head qb kb"], keep: float, q_len: int,
               kv_len: int | None = None, *, causal: bool = True, block_q: int = 128,
               block_kv: int = 128, keep_diagonal: bool = True) -> BlockTable:
    """SeerAttention-style oracle: per query block keep the top ``ceil(keep * allowed)`` tiles
    by score (e.g. K2's ``block_sum`` at the same block size), plus the diagonal tile so every
    query sees at least its own block."""
    kv_len = q_len if kv_len is None else kv_len
    rule = TokenRule(causal=causal, q_offset=kv_len - q_len)
    base = rule_kinds(rule, q_len, kv_len, block_q, block_kv, 1, block_scores.device)
    allowed = base > 0
    scores = block_scores.float().masked_fill(~allowed, -math.inf)
    k_row = torch.ceil(keep * allowed.sum(-1, keepdim=True).float()).clamp_min(1).long()  # (1,1,qb,1)
    ranks = scores.argsort(dim=-1, descending=True).argsort(dim=-1)
    chosen = (ranks < k_row) & allowed
    if keep_diagonal:
        last = (allowed.long() * torch.arange(allowed.shape[-1], device=allowed.device)).argmax(-1, keepdim=True)
        chosen = chosen | torch.zeros_like(chosen).scatter(-1, last.expand_as(chosen[..., :1]), True)
    return table_from_kinds(torch.where(chosen, base, torch.zeros_like(base)), block_q, block_kv, q_len, kv_len, rule)


def random_block_table(density: float, q_len: int, heads: int, *, causal: bool = True, block: int = 128,
                       seed: int = 0, device="cpu") -> BlockTable:
    """Random per-head tiles keeping about ``density`` of the causal tiles (plus the diagonal):
    the benchmark's stand-in for a learned gate."""
    nb = math.ceil(q_len / block)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    scores = torch.rand(1, heads, nb, nb, generator=gen).to(device)
    return topk_table(scores, density, q_len, causal=causal, block_q=block, block_kv=block)
