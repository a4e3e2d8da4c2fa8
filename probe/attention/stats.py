"""Reduce blocks of attention rows into per-key, per-query and per-tile statistics.

Context:
    :class:`StatAccumulator` receives the post-softmax probabilities of one block of query rows
    at a time (``[batch, head, rows, keys]``) and folds them into fixed-size accumulators, so the
    caller never keeps more than one block. Statistic names and shapes are listed in
    :mod:`probe.attention.spec`.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest


class StatAccumulator:
    """Running reductions over blocks of attention rows.

    Args:
        want: which statistics to keep.
        query: ``[batch, head, q, d]``, used for sizes and device only.
        key: ``[batch, kv_head, k, d]``, likewise.
        mask: the call's mask (padding and positions).
    """

    def __init__(self, want: StatRequest, query: Tensor, key: Tensor, mask: LazyMask):
        batch, heads, q_len, _ = query.shape
        k_len = key.shape[2]
        self.want, self.mask = want, mask
        dev = query.device
        self.query_valid = mask.query_padding().to(dev)
        self.first_key = mask.first_key().to(dev)
        # Positions counted from each row's first real key: the distance is a difference of
        # positions, and under long left padding absolute columns would cost float32 digits.
        self.origin = self.first_key.float() + mask.kv_offset  # [batch], absolute position
        self.key_pos = torch.arange(k_len, device=dev, dtype=torch.float32)[None, :] + mask.kv_offset - self.origin[:, None]
        self.k_len = k_len
        zeros = lambda *shape: torch.zeros(*shape, device=dev, dtype=torch.float32)  # noqa: E731
        self.out: dict[str, Tensor] = {}
        if want.received:
            self.out.update(
                received_sum=zeros(batch, heads, k_len),
                received_max=zeros(batch, heads, k_len),
                visible_count=zeros(batch, k_len),
            )
        for name in ("entropy", "distance", "first_token"):
            if getattr(want, name):
                self.out[name] = torch.full((batch, heads, q_len), math.nan, device=dev)
        if want.block_size is not None:
            b = want.block_size
            tiles = (batch, heads, math.ceil(q_len / b), math.ceil(k_len / b))
            self.out.update(block_sum=zeros(*tiles), block_max=zeros(*tiles))
        if want.lookback_window is not None:
            self.out["lookback"] = torch.full((batch, heads, q_len), math.nan, device=dev)
        if want.span is not None:
            self._check_span_rows(want.span, batch)
            self.span_keys = want.span.columns(mask.kv_offset, k_len, dev)
            self.out["span_mass"] = torch.full((batch, heads, q_len), math.nan, device=dev)
        if want.band is not None:
            self.band_rows = band_first_positions(want.band.first_rows, self.first_key, mask.kv_offset)
            self.key_real = mask.key_padding().to(dev)
            self.out.update(band_sum=zeros(batch, heads, k_len), band_count=zeros(batch, k_len))

    def update(
        self,
        probs: Float[Tensor, "batch head rows kk"],
        rows: Bool[Tensor, "batch 1 rows k"],
        start: int,
        stop: int,
    ) -> None:
        """Fold the probabilities of query rows ``start:stop`` into the accumulators.

        ``probs`` may cover only the first ``kk <= k`` keys (the rest receive nothing).
        """
        width = probs.shape[-1]
        valid = self.query_valid[:, start:stop]
        p = probs * valid[:, None, :, None]
        if self.want.received:
            self._update_received(p, rows, valid, width)
        if self.want.entropy:
            ent = -torch.special.xlogy(probs, probs).sum(-1)
            self._store_rows("entropy", ent, valid, start, stop)
        if self.want.distance:
            q_pos = torch.arange(start, stop, device=p.device, dtype=torch.float32) + self.mask.q_offset
            q_pos = q_pos[None, None, :] - self.origin[:, None, None]  # [batch, 1, rows]
            expected_key = (probs * self.key_pos[:, None, None, :width]).sum(-1)
            self._store_rows("distance", q_pos - expected_key, valid, start, stop)
        if self.want.first_token:
            self._store_rows("first_token", self._first_token(probs), valid, start, stop)
        if self.want.block_size is not None:
            self._update_blocks(p, start)
        if self.want.lookback_window is not None:
            self._store_rows("lookback", self._lookback(probs, start, stop), valid, start, stop)
        if self.want.band is not None:
            self._update_band(probs, valid, start, stop)
        if self.want.span is not None:
            span = self.span_keys[:, None, None, :width].to(probs.dtype)
            self._store_rows("span_mass", (probs * span).sum(-1), valid, start, stop)

    def finish(self) -> dict[str, Tensor]:
        """The statistics, with ``received_mean`` and ``band_mean`` derived from the sums."""
        out = dict(self.out)
        if self.want.received:
            count = out["visible_count"][:, None, :]
            out["received_mean"] = torch.where(count > 0, out["received_sum"] / count.clamp_min(1), 0.0)
        if self.want.band is not None:
            count = out["band_count"][:, None, :]
            out["band_mean"] = torch.where(count > 0, out["band_sum"] / count.clamp_min(1), math.nan)
        return out

    @staticmethod
    def _check_span_rows(span, batch: int) -> None:
        if span.keys.shape[0] != batch:
            raise ValueError(f"the key span (KeySpan.keys, a capture's image mask) has {span.keys.shape[0]} rows but "
                             f"the attention call has {batch} batch rows; give one row per prompt")

    def _offsets(self, start: int, stop: int, width: int) -> Int[Tensor, "rows kk"]:
        """``t - s`` in token positions for query rows ``start:stop`` and the first ``width`` keys.

        A difference of positions does not depend on where they are counted from, so it is the
        difference of absolute positions (row ``i`` at ``q_offset + i``, key ``j`` at
        ``kv_offset + j``), exact in integers whatever the padding."""
        dev = self.query_valid.device
        q_pos = torch.arange(start, stop, device=dev) + self.mask.q_offset
        k_pos = torch.arange(width, device=dev) + self.mask.kv_offset
        return q_pos[:, None] - k_pos[None, :]

    def _lookback(
        self, probs: Float[Tensor, "batch head rows kk"], start: int, stop: int
    ) -> Float[Tensor, "batch head rows"]:
        """``sum_s p(t, s) min(t - s, W)`` for each row of the block (WAAD's per-head term)."""
        clipped = self._offsets(start, stop, probs.shape[-1]).clamp_max(self.want.lookback_window)
        return (probs * clipped.to(probs.dtype)).sum(-1)

    def _update_band(self, probs: Float[Tensor, "batch head rows kk"], valid: Bool[Tensor, "batch rows"],
                     start: int, stop: int) -> None:
        """Fold the block's rows into the band sums and counts of every key.

        Counts are taken over all keys, not only the block's first ``kk``: a key past them may
        still have this block's rows in its band (it then receives 0 from them)."""
        band, width = self.want.band, probs.shape[-1]
        offsets = self._offsets(start, stop, self.k_len)
        in_band = offsets >= band.lo
        if band.hi is not None:
            in_band &= offsets <= band.hi
        q_pos = torch.arange(start, stop, device=offsets.device) + self.mask.q_offset
        rows_ok = valid & (q_pos[None, :] >= self.band_rows[:, None])  # [batch, rows]
        counted = in_band[None] & rows_ok[:, :, None] & self.key_real[:, None, :]  # [batch, rows, k]
        self.out["band_count"] += counted.sum(1).float()
        self.out["band_sum"][..., :width] += (probs * counted[:, None, :, :width]).sum(2)

    def _first_token(self, probs: Float[Tensor, "batch head rows kk"]) -> Float[Tensor, "batch head rows"]:
        """Attention to each row's first real key; 0 where that key lies past the block's keys.

        A block's keys may be trimmed to what its rows can see, and under long left padding a
        prompt's first key can lie beyond them (its rows in this block are all padding)."""
        width = probs.shape[-1]
        inside = self.first_key < width
        first = self.first_key.clamp_max(width - 1)[:, None, None, None].expand(-1, *probs.shape[1:3], 1)
        return torch.where(inside[:, None, None], probs.gather(-1, first)[..., 0], 0.0)

    def _update_received(self, p: Tensor, rows: Tensor, valid: Tensor, width: int) -> None:
        self.out["received_sum"][..., :width] += p.sum(2)
        head = self.out["received_max"][..., :width]
        self.out["received_max"][..., :width] = torch.maximum(head, p.amax(2))
        seen = rows[:, 0] & valid[:, :, None]
        self.out["visible_count"] += seen.sum(1).float()

    def _store_rows(self, name: str, values: Tensor, valid: Tensor, start: int, stop: int) -> None:
        self.out[name][:, :, start:stop] = values.masked_fill(~valid[:, None, :], math.nan)

    def _update_blocks(self, p: Float[Tensor, "batch head rows kk"], start: int) -> None:
        """Fold rows ``start:start + rows`` into the tiles they touch (any alignment, any tile size).

        Sums and maxima are taken by tile index, never by padding the block to whole tiles, so a
        tile larger than the input costs no more than the input itself."""
        b = self.want.block_size
        batch, heads, rows, width = p.shape
        k_tiles = self.out["block_sum"].shape[-1]
        key_tile = torch.arange(width, device=p.device) // b
        row_tile = (torch.arange(rows, device=p.device) + start) // b
        first, n_tiles = int(row_tile[0]), int(row_tile[-1] - row_tile[0]) + 1
        local = row_tile - first
        # Probabilities are >= 0, so zero-initialised maxima are exact.
        key_sum = p.new_zeros(batch, heads, rows, k_tiles).index_add_(-1, key_tile, p)
        key_max = p.new_zeros(batch, heads, rows, k_tiles).scatter_reduce_(
            -1, key_tile.expand_as(p), p, "amax", include_self=True
        )
        tile_sum = p.new_zeros(batch, heads, n_tiles, k_tiles).index_add_(2, local, key_sum)
        tile_max = p.new_zeros(batch, heads, n_tiles, k_tiles).scatter_reduce_(
            2, local[:, None].expand(rows, k_tiles).expand_as(key_max), key_max, "amax", include_self=True
        )
        span = slice(first, first + n_tiles)
        self.out["block_sum"][:, :, span] += tile_sum.float()
        self.out["block_max"][:, :, span] = torch.maximum(self.out["block_max"][:, :, span], tile_max.float())


def band_first_positions(first_rows: tuple[int, ...] | None, first_key: Int[Tensor, " batch"],
                         kv_offset: int) -> Int[Tensor, " batch"]:
    """Absolute position of each prompt's first band row: ``first_rows``
    (:attr:`~probe.attention.spec.Band.first_rows`) counted from the prompt's first real key
    ``first_key``, or that key itself when ``first_rows`` is None. Shared by the reference and the
    kernels' backend, so both refuse a wrong number of rows alike."""
    origin = first_key.long() + kv_offset
    if first_rows is None:
        return origin
    batch = origin.shape[0]
    if len(first_rows) != batch:
        raise ValueError(f"the band's first_rows (Band.first_rows, CaptureConfig.band_first_rows) has "
                         f"{len(first_rows)} entries but the attention call has {batch} batch rows; give one "
                         "first row per prompt, or None to count every query")
    return origin + torch.tensor(first_rows, device=origin.device)
