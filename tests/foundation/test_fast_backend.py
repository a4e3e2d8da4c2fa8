"""The fast CPU backend (``probe.attention.fast``) against the reference and against float64
reductions of the materialised pattern.

Sizes are odd on purpose (GQA 6:2 and 5:1, head dims 11 and 24, lengths 23-41, blocks of 1, 5,
7 and 1000 rows) with left padding of different lengths, sliding windows, a bidirectional mask,
a decode-style call (fewer queries than keys) and float64 inputs; then the statistics it hands
to the reference's accumulator, the edits it computes or passes on, the reuse of mask plans,
and whole captures (layer subsets, pattern mode) against the reference backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from transformers.masking_utils import and_masks, bidirectional_mask_function, causal_mask_function, sliding_window_overlay

from probe import CaptureConfig, capture
from probe.attention.backends import get_backend
from probe.attention.fast import LOOP_PRODUCTS, fast_attention, forget_plans, kept_plans
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import Band, KeyScale, LayerEdit, SinkRule, StatRequest
from tests.helpers import tiny_loaded

CORE = StatRequest(received=True, entropy=True, distance=True, first_token=True)


@dataclass(frozen=True)
class Case:
    batch: int = 2
    heads: int = 6
    kv_heads: int = 2
    n_q: int = 37
    n_kv: int = 37
    d: int = 24
    pad: tuple[int, ...] = (0, 0)
    window: int | None = None
    causal: bool = True
    dtype: torch.dtype = torch.float32


CASES = {
    "gqa6:2": Case(),
    "left-padding": Case(pad=(0, 5)),
    "long-padding-gqa5:1": Case(batch=3, heads=5, kv_heads=1, n_q=41, n_kv=41, d=11, pad=(9, 0, 3)),
    "sliding-window": Case(pad=(3, 0), window=5),
    "bidirectional": Case(n_q=23, n_kv=23, pad=(0, 4), causal=False),
    "decode-offset": Case(n_q=3, n_kv=29, pad=(2, 0)),
    "float64-window": Case(heads=4, kv_heads=4, n_q=29, n_kv=29, d=16, pad=(0, 7), window=4, dtype=torch.float64),
    # more prompts x key heads than fast.LOOP_PRODUCTS: the batched products instead of one mm each
    "batched-products": Case(batch=5, heads=6, kv_heads=2, n_q=19, n_kv=19, d=8, pad=(0, 6, 0, 11, 2)),
}


def test_the_cases_cover_both_ways_of_the_products():
    sizes = [case.batch * case.kv_heads for case in CASES.values()]
    assert min(sizes) <= LOOP_PRODUCTS < max(sizes)


def make_inputs(case: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(case.batch, case.heads, case.n_q, case.d, generator=g, dtype=case.dtype)
    k = 2 * torch.randn(case.batch, case.kv_heads, case.n_kv, case.d, generator=g, dtype=case.dtype)
    v = torch.randn(case.batch, case.kv_heads, case.n_kv, case.d, generator=g, dtype=case.dtype)
    padding = torch.arange(case.n_kv)[None, :] >= torch.tensor(case.pad)[:, None]
    fn = causal_mask_function if case.causal else bidirectional_mask_function
    if case.window is not None:
        fn = and_masks(sliding_window_overlay(case.window), causal_mask_function)
    mask = LazyMask(case.batch, case.n_q, case.n_kv, q_offset=case.n_kv - case.n_q, mask_function=fn,
                    padding=padding if any(case.pad) else None, causal=case.causal, sliding_window=case.window)
    return q, k, v, mask


def materialised(q, k, v, mask: LazyMask) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The pattern and every core statistic written out from their definitions, in float64."""
    q, k, v = q.double(), k.double(), v.double()
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    allowed = mask.rows(0, mask.q_length)  # [batch, 1, q, kv]
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    p = torch.softmax(scores.masked_fill(~allowed, -math.inf), -1)
    valid = mask.query_padding()
    nan_rows = ~valid[:, None, :]
    p_real = p.nan_to_num(0.0) * valid[:, None, :, None]
    first = mask.first_key()
    origin = first.double() + mask.kv_offset
    q_pos = torch.arange(mask.q_length, dtype=torch.float64) + mask.q_offset
    k_pos = torch.arange(mask.kv_length, dtype=torch.float64) + mask.kv_offset
    count = (allowed[:, 0] & valid[:, :, None]).double().sum(1)
    received = p_real.sum(2)
    stats = {
        "received_sum": received,
        "received_max": p_real.amax(2),
        "visible_count": count,
        "received_mean": torch.where(count[:, None] > 0, received / count[:, None].clamp_min(1), 0.0),
        "entropy": -torch.special.xlogy(p, p).sum(-1),
        "distance": (q_pos - origin[:, None])[:, None, :] - (p * (k_pos - origin[:, None])[:, None, None, :]).sum(-1),
        "first_token": torch.stack([p[b, :, :, first[b]] for b in range(p.shape[0])]),
        "lse": torch.logsumexp(scores.masked_fill(~allowed, -math.inf), -1),
    }
    for name in ("entropy", "distance", "first_token", "lse"):
        stats[name] = stats[name].masked_fill(nan_rows, math.nan)
    return p, stats


def assert_same_statistics(got: dict, expected: dict, atol: float = 1e-5) -> None:
    assert set(got) >= set(expected), set(expected) - set(got)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        torch.testing.assert_close(got[name].double(), value.double(), atol=atol, rtol=1e-5, equal_nan=True, msg=name)


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
@pytest.mark.parametrize("name", list(CASES))
def test_statistics_equal_float64_reductions_and_the_reference(name, chunk_size):
    q, k, v, mask = make_inputs(CASES[name])
    got = fast_attention(q, k, v, mask, want=CORE, chunk_size=chunk_size)
    ref = reference_attention(q, k, v, mask, want=CORE, chunk_size=chunk_size)
    _, expected = materialised(q, k, v, mask)
    assert_same_statistics(got.stats, expected)
    assert set(got.stats) == set(ref.stats)
    assert_same_statistics(got.stats, ref.stats)
    valid = mask.query_padding()
    torch.testing.assert_close(got.output[valid], ref.output[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_pattern_mode_equals_the_reference_everywhere(name):
    """Padding rows included: a row that sees nothing spreads evenly over every key, as eager does."""
    q, k, v, mask = make_inputs(CASES[name])
    want = StatRequest(pattern=True, received=True, entropy=True, distance=True, first_token=True)
    got = fast_attention(q, k, v, mask, want=want, chunk_size=7)
    ref = reference_attention(q, k, v, mask, want=want, chunk_size=7)
    torch.testing.assert_close(got.pattern, ref.pattern, atol=1e-6, rtol=0)
    p, expected = materialised(q, k, v, mask)
    real = mask.query_padding()[:, None, :, None]
    torch.testing.assert_close(got.pattern.double() * real, p.nan_to_num(0.0) * real, atol=1e-6, rtol=0)
    assert_same_statistics(got.stats, expected)
    torch.testing.assert_close(got.output, ref.output, atol=1e-5, rtol=1e-5)


def test_other_statistics_come_from_the_same_probabilities():
    """Block tiles, the lookback window and the band go through the reference's accumulator."""
    q, k, v, mask = make_inputs(CASES["sliding-window"])
    want = StatRequest(received=True, entropy=True, block_size=3, lookback_window=4, band=Band(2, 9))
    got = fast_attention(q, k, v, mask, want=want, chunk_size=5)
    ref = reference_attention(q, k, v, mask, want=want, chunk_size=5)
    assert set(got.stats) == set(ref.stats)
    assert_same_statistics(got.stats, ref.stats)


def test_head_scale_is_applied_and_other_edits_go_to_the_reference():
    q, k, v, mask = make_inputs(CASES["left-padding"])
    valid = mask.query_padding()
    scaled = LayerEdit(head_scale=torch.linspace(0.5, 1.5, 6))
    got = fast_attention(q, k, v, mask, want=CORE, edit=scaled, chunk_size=5)
    ref = reference_attention(q, k, v, mask, want=CORE, edit=scaled, chunk_size=5)
    torch.testing.assert_close(got.output[valid], ref.output[valid], atol=1e-5, rtol=1e-5)
    assert_same_statistics(got.stats, ref.stats)
    sinks = SinkRule(tau=0.05)
    for edit in (LayerEdit(key_bias=torch.randn(2, 6, 37)), LayerEdit(key_scales=(KeyScale(torch.full((6,), 0.5), sinks),)),
                 LayerEdit(last_row_boost=torch.rand(2, 6, 37))):
        got = fast_attention(q, k, v, mask, want=CORE, edit=edit, chunk_size=5)
        ref = reference_attention(q, k, v, mask, want=CORE, edit=edit, chunk_size=5)
        assert torch.equal(got.output, ref.output)
        assert len(got.sinks) == len(ref.sinks)


def test_a_mask_plan_is_reused_only_for_the_same_mask():
    """Layers of one forward share a plan; another padding of the same shape gets its own."""
    q, k, v, mask = make_inputs(CASES["left-padding"])
    forget_plans()
    fast_attention(q, k, v, mask, want=CORE, chunk_size=5)
    fast_attention(q, k, v, mask, want=CORE, chunk_size=5)
    assert kept_plans() == 1
    other = LazyMask(2, 37, 37, padding=torch.arange(37)[None, :] >= torch.tensor([[7], [1]]))
    got = fast_attention(q, k, v, other, want=CORE, chunk_size=5)
    _, expected = materialised(q, k, v, other)
    assert_same_statistics(got.stats, expected)
    other.padding[0, 7:9] = False  # changed in place: the kept plan must not be used
    got = fast_attention(q, k, v, other, want=CORE, chunk_size=5)
    _, expected = materialised(q, k, v, other)
    assert_same_statistics(got.stats, expected)


def test_fast_is_a_registered_backend_and_the_capture_default():
    assert get_backend("fast") is fast_attention
    assert CaptureConfig().backend == "fast"


@pytest.mark.parametrize("mode, layers", [("stats", (2, 0)), ("pattern", None)])
def test_captures_equal_the_reference_backends(mode, layers):
    model = tiny_loaded("llama")
    prompts = ["a short prompt", "a somewhat longer prompt than the first one, with more words"]
    got = capture(model, prompts, CaptureConfig(mode=mode, layers=layers, backend="fast", chunk_size=4))
    ref = capture(model, prompts, CaptureConfig(mode=mode, layers=layers, backend="reference", chunk_size=4))
    assert got.layers == ref.layers
    torch.testing.assert_close(got.last_logits, ref.last_logits, atol=1e-5, rtol=1e-5)
    for layer in got.layers:
        assert_same_statistics(got.stats[layer], ref.stats[layer])
        if mode == "pattern":
            torch.testing.assert_close(got.patterns[layer], ref.patterns[layer], atol=1e-6, rtol=0)
