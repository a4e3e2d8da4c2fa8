"""Statistics mode never builds a query x key tensor larger than one block of rows."""

from __future__ import annotations

import torch

from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import StatRequest
from tests.helpers import LargestTensor


def largest_tensor(want: StatRequest, n: int = 1031, heads: int = 3, chunk: int = 64) -> int:
    q = torch.randn(1, heads, n, 16)
    k, v = torch.randn(1, 1, n, 16), torch.randn(1, 1, n, 16)
    mask = LazyMask(1, n, n)
    with LargestTensor() as probe:
        reference_attention(q, k, v, mask, want=want, chunk_size=chunk)
    return probe.largest


def test_statistics_mode_memory_is_linear_in_length():
    n, heads, chunk = 1031, 3, 64
    largest = largest_tensor(StatRequest.all_stats(), n, heads, chunk)
    assert largest <= heads * chunk * n, f"a tensor of {largest} elements exceeds one block of rows"


def test_pattern_mode_does_build_the_full_matrix():
    """The probe above can see a quadratic tensor: pattern mode must trip it."""
    n, heads, chunk = 1031, 3, 64
    assert largest_tensor(StatRequest(pattern=True), n, heads, chunk) >= heads * n * n
