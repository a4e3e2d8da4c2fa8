"""The helpers of a circuit run: the first items of a set, the top-k heads."""

from __future__ import annotations

import torch

from circuits.discovery.circuit_run import top_heads
from tests.discovery.planting import planted_contrast


def test_first_items_drop_columns_of_padding_only():
    contrast = planted_contrast(padded=True)
    two = contrast.first(2)
    assert len(two) == 2 and bool(two.attention_mask[:, 0].any())  # no column of padding only
    assert torch.equal(two.clean[two.attention_mask.bool()], contrast.clean[:2][contrast.attention_mask[:2].bool()])
    assert len(contrast.first(100)) == len(contrast)


def test_top_heads_cut_ties_at_k():
    scores = torch.tensor([[0.0, 2.0, -3.0], [2.0, 0.5, 2.0]])
    assert top_heads(scores, 3) == ((0, 2), (0, 1), (1, 0))  # ties cut at k in (layer, head) order
