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
from jaxtyping import Bool, Float
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
        self.key_pos = torch.arange(k_len, device=dev, dtype=torch.float32) + mask.kv_offset
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
            expected_key = (probs * self.key_pos[:width]).sum(-1)
            self._store_rows("distance", q_pos - expected_key, valid, start, stop)
        if self.want.first_token:
            first = self.first_key[:, None, None, None].expand(-1, probs.shape[1], probs.shape[2], 1)
            self._store_rows("first_token", probs.gather(-1, first)[..., 0], valid, start, stop)
        if self.want.block_size is not None:
            self._update_blocks(p, start)

    def finish(self) -> dict[str, Tensor]:
        """The statistics, with ``received_mean`` derived from the sums."""
        out = dict(self.out)
        if self.want.received:
            count = out["visible_count"][:, None, :]
            out["received_mean"] = torch.where(count > 0, out["received_sum"] / count.clamp_min(1), 0.0)
        return out

    def _update_received(self, p: Tensor, rows: Tensor, valid: Tensor, width: int) -> None:
        self.out["received_sum"][..., :width] += p.sum(2)
        head = self.out["received_max"][..., :width]
        self.out["received_max"][..., :width] = torch.maximum(head, p.amax(2))
        seen = rows[:, 0] & valid[:, :, None]
        self.out["visible_count"] += seen.sum(1).float()

    def _store_rows(self, name: str, values: Tensor, valid: Tensor, start: int, stop: int) -> None:
        self.out[name][:, :, start:stop] = values.masked_fill(~valid[:, None, :], math.nan)

    def _update_blocks(self, p: Tensor, start: int) -> None:
        b = self.want.block_size
        batch, heads, rows, width = p.shape
        k_tiles = self.out["block_sum"].shape[-1]
        padded = p.new_zeros(batch, heads, math.ceil(rows / b) * b, k_tiles * b)
        padded[:, :, :rows, :width] = p
        tiles = padded.reshape(batch, heads, -1, b, k_tiles, b)
        first_tile = start // b
        span = slice(first_tile, first_tile + tiles.shape[2])
        self.out["block_sum"][:, :, span] += tiles.sum(dim=(3, 5))
        self.out["block_max"][:, :, span] = torch.maximum(self.out["block_max"][:, :, span], tiles.amax(dim=(3, 5)))
