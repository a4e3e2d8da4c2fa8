"""``span_mass``: the attention each query pays to a span of keys (a VLM's image tokens).

Checked in float64 against the plain materialised pattern summed over the span's keys, on the
odd sizes of the rhythm-statistics cases (3 prompts, GQA 6:2 and 5:1, 37 tokens, head dim 11,
left padding of different lengths, sliding windows, decode-style offsets) and every chunk size;
then its request's checks and the kernels' backend, which hands it to the reference.
"""

from __future__ import annotations

import math

import pytest
import torch

from probe.attention.reference import reference_attention
from probe.attention.spec import KeySpan, StatRequest
from tests.foundation.test_rhythm_statistics import CASES, dense_probs, make_inputs, query_padding
from tests.helpers import LargestTensor, untyped


def random_span(batch: int, total: int, seed: int = 3) -> torch.Tensor:
    """A span of about a third of the columns of each row, different per row."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, total, generator=generator) < 0.35


def span_by_definition(p: torch.Tensor, mask, padding: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """``sum_j p_ij [j in span]`` from the whole pattern; NaN at padding queries."""
    keys = span[:, mask.kv_offset:mask.kv_offset + mask.kv_length].double()
    mass = (p * keys[:, None, None, :]).sum(-1)
    return mass.masked_fill(~query_padding(padding, mask)[:, None], math.nan)


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1000])
@pytest.mark.parametrize("name", list(CASES))
def test_span_mass_equals_the_pattern_summed_over_the_span(name, chunk_size):
    case = CASES[name]
    query, key, value, mask, padding = make_inputs(case)
    span = random_span(query.shape[0], case.total)
    got = reference_attention(query, key, value, mask, want=StatRequest(span=KeySpan(span)), chunk_size=chunk_size)
    expected = span_by_definition(dense_probs(query, key, mask), mask, padding, span)
    assert got.stats["span_mass"].shape == expected.shape
    torch.testing.assert_close(got.stats["span_mass"].double(), expected, atol=1e-6, rtol=1e-6, equal_nan=True)


def test_a_span_of_every_key_has_mass_one_and_an_empty_span_zero():
    query, key, value, mask, padding = make_inputs(CASES["gqa6:2-padding-first-rows"])
    valid = query_padding(padding, mask)[:, None].expand(-1, query.shape[1], -1)
    for span, expected in ((torch.ones_like(padding), 1.0), (torch.zeros_like(padding), 0.0)):
        mass = reference_attention(query, key, value, mask, want=StatRequest(span=KeySpan(span)), chunk_size=5)
        values = mass.stats["span_mass"]
        torch.testing.assert_close(values[valid].double(), torch.full_like(values[valid], expected).double())
        assert values[~valid].isnan().all()


def test_a_span_shorter_than_the_keys_leaves_later_keys_out():
    """Keys generated after the span was taken (decode steps) are outside it."""
    case = CASES["gqa5:1-band-to-the-end"]
    query, key, value, mask, padding = make_inputs(case)
    span = random_span(query.shape[0], case.total)
    short = span[:, :20]
    got = reference_attention(query, key, value, mask, want=StatRequest(span=KeySpan(short)), chunk_size=6)
    cut = torch.cat([short, torch.zeros(span.shape[0], case.total - 20, dtype=torch.bool)], dim=1)
    expected = span_by_definition(dense_probs(query, key, mask), mask, padding, cut)
    torch.testing.assert_close(got.stats["span_mass"].double(), expected, atol=1e-6, rtol=1e-6, equal_nan=True)


def test_span_mass_holds_no_sequence_by_sequence_matrix():
    case = CASES["gqa6:2-padding-first-rows"]
    query, key, value, mask, _ = make_inputs(case)
    span = KeySpan(random_span(query.shape[0], case.total))
    with LargestTensor() as probe:
        reference_attention(query, key, value, mask, want=StatRequest(span=span), chunk_size=4)
    batch, heads, q_len, _ = query.shape
    assert probe.largest < batch * heads * q_len * key.shape[2], probe.largest


def test_span_requests_are_checked():
    with untyped(), pytest.raises(ValueError, match="boolean"):
        KeySpan(torch.ones(2, 5))
    with untyped(), pytest.raises(ValueError, match="KeySpan"):
        StatRequest(span=torch.ones(2, 5, dtype=torch.bool))
    query, key, value, mask, _ = make_inputs(CASES["gqa6:2-padding-first-rows"])
    with pytest.raises(ValueError, match="one row per prompt"):
        two_rows = KeySpan(torch.ones(2, 37, dtype=torch.bool))
        reference_attention(query, key, value, mask, want=StatRequest(span=two_rows))


def test_the_kernels_backend_hands_span_mass_to_the_reference():
    backend = pytest.importorskip("probe.kernels.backend")
    query, key, value, mask, _ = make_inputs(CASES["gqa6:2-padding-first-rows"])
    want = StatRequest(entropy=True, span=KeySpan(random_span(query.shape[0], 37)))
    call = backend.Call(query=query, key=key, value=value, mask=mask, scaling=0.3, softcap=None, want=want,
                        edit=None, chunk_size=None)
    assert backend.route_for(call).name == "reference"
