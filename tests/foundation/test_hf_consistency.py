"""The capture path against Hugging Face's own eager forward, on tiny random models.

Architectures: llama (GQA), gemma3 (sliding window + global layers, QK-norm), gpt2 (MHA),
qwen2 (GQA); left padding in every batch; odd sizes.
"""

from __future__ import annotations

import pytest
import torch

from probe.attention.hf import active_sessions
from probe.capture.config import CaptureConfig
from probe.capture.hf import recording
from tests.helpers import random_batch


def eager_forward(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_attentions=True)


def captured_forward(model, ids, mask, config):
    layers = tuple(range(model.config.get_text_config().num_hidden_layers))
    with recording(model, config, layers, mask) as recorder, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out, recorder


BACKENDS = ["reference", "fast"]  # the definition, and the CPU fast path held to the same answers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["pattern", "stats"])
def test_logits_equal_eager(tiny_model, mode, backend):
    ids, mask = random_batch()
    ref = eager_forward(tiny_model, ids, mask)
    out, _ = captured_forward(tiny_model, ids, mask, CaptureConfig(mode=mode, chunk_size=5, backend=backend))
    valid = mask.bool()
    torch.testing.assert_close(out.logits[valid], ref.logits[valid], atol=1e-5, rtol=0)
    assert tiny_model.config._attn_implementation == "eager"
    assert active_sessions() == ()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pattern_mode_equals_output_attentions(tiny_model, backend):
    ids, mask = random_batch()
    ref = eager_forward(tiny_model, ids, mask)
    _, recorder = captured_forward(tiny_model, ids, mask, CaptureConfig(mode="pattern", backend=backend))
    for layer, expected in enumerate(ref.attentions):
        torch.testing.assert_close(recorder.prefill(layer)["pattern"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_statistics_equal_reductions_of_eager_patterns(tiny_model, backend):
    ids, mask = random_batch()
    ref = eager_forward(tiny_model, ids, mask)
    config = CaptureConfig(mode="stats", chunk_size=4, block_size=3, backend=backend)
    _, recorder = captured_forward(tiny_model, ids, mask, config)
    for layer, pattern in enumerate(ref.attentions):
        expected = reductions(pattern.double(), mask, block=3, window=sliding_window(tiny_model, layer))
        got = recorder.prefill(layer)["stats"]
        for name, value in expected.items():
            torch.testing.assert_close(got[name].double(), value, atol=1e-5, rtol=1e-5, equal_nan=True, msg=name)


def sliding_window(model, layer):
    types = getattr(model.config, "layer_types", None)
    return model.config.sliding_window if types and types[layer] == "sliding_attention" else None


def reductions(p, mask, block, window=None):
    """Statistics written out plainly from a full [batch, head, q, k] pattern (float64)."""
    b, h, n, _ = p.shape
    valid_q = mask.bool()[:, None, :, None].double()
    pv = p * valid_q
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    if window is not None:
        causal &= ~torch.ones(n, n, dtype=torch.bool).tril(-window)
    visible = (causal[None] & mask.bool()[:, :, None] & mask.bool()[:, None, :]).double().sum(1)
    received_sum = pv.sum(2)
    first = mask.int().argmax(1)
    ent = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(-1)
    pos = torch.arange(n, dtype=torch.float64)
    dist = (p * (pos[:, None] - pos[None, :])).sum(-1)
    nanq = ~mask.bool()[:, None, :]
    tiles = torch.nn.functional.pad(pv, (0, -n % block, 0, -n % block))
    t = tiles.reshape(b, h, tiles.shape[2] // block, block, tiles.shape[3] // block, block)
    return {
        "received_sum": received_sum,
        "visible_count": visible,
        "received_mean": torch.where(visible[:, None] > 0, received_sum / visible[:, None].clamp_min(1), 0.0),
        "received_max": pv.amax(2),
        "entropy": ent.masked_fill(nanq, float("nan")),
        "distance": dist.masked_fill(nanq, float("nan")),
        "first_token": torch.stack([p[i, :, :, first[i]] for i in range(b)]).masked_fill(nanq, float("nan")),
        "block_sum": t.sum((3, 5)),
        "block_max": t.amax((3, 5)),
    }
