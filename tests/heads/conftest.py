"""Fixtures of the head-measurement tests: tiny random float64 models with weights large enough
that logit differences and head contributions are of order one (default initialisation gives
differences of 1e-6, which no test could tell from rounding)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import one_torch_thread, tiny_loaded

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def vivid(arch: str, seed: int = 7):
    """``tiny_loaded(arch)`` in float64, every weight redrawn: matrices ~ N(0, 1/fan_in), vectors
    (norm weights, biases) ~ 1 + N(0, 0.1) or N(0, 0.1)."""
    loaded = tiny_loaded(arch)
    loaded.hf.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in loaded.hf.named_parameters():
            noise = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
            if weight.dim() >= 2:
                fan_in = weight.shape[0] if "c_" in name else weight.shape[-1]  # GPT-2's Conv1D is [in, out]
                weight.copy_(noise / math.sqrt(fan_in) if "emb" not in name and "wte" not in name
                             and "wpe" not in name else noise)
            elif "norm" in name or "ln" in name:
                weight.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                weight.copy_(0.1 * noise)
    return loaded


@pytest.fixture(scope="session", params=["llama", "qwen2", "gpt2"])
def vivid_model(request):
    return request.getfixturevalue("vivid_llama") if request.param == "llama" else vivid(request.param)


@pytest.fixture(scope="session")
def vivid_llama():
    """One float64 Llama shared by the tests (they add hooks and edits only inside ``with`` blocks)."""
    return vivid("llama")
