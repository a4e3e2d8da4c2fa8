"""Fixtures for the dashboard tests: a tiny random Llama with the offline GPT-2 tokenizer, and records of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM

from probe import CaptureConfig, capture
from probe.models.loading import LoadedModel, prepare_tokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "gpt2-tokenizer"
N_LAYERS, N_HEADS, CONTEXT = 3, 5, 300  # distinct sizes so a transposed axis cannot pass


def tiny_tokenizer():
    # from_pretrained on the folder: the vocab_file=/merges_file= constructor yields an empty vocabulary
    # under transformers 5.x.
    tok = GPT2TokenizerFast.from_pretrained(str(TOKENIZER_DIR))
    prepare_tokenizer(tok)
    return tok


def tiny_model(name: str = "tiny") -> LoadedModel:
    """A random 3-layer, 5-head Llama whose vocabulary is the GPT-2 tokenizer's (fast on CPU)."""
    tok = tiny_tokenizer()
    torch.manual_seed(1234)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=70, intermediate_size=48, num_hidden_layers=N_LAYERS,
                         num_attention_heads=N_HEADS, num_key_value_heads=N_HEADS, head_dim=14,
                         max_position_embeddings=CONTEXT)
    return LoadedModel(name=name, hf=LlamaForCausalLM(config).eval(), tokenizer=tok)


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return tiny_model()


@pytest.fixture(scope="session")
def pattern_record(tiny):
    return capture(tiny, ["When Mary and John went to the store, John gave", "the the the"], CaptureConfig(mode="pattern"))


@pytest.fixture(scope="session")
def stats_record(tiny):
    return capture(tiny, "a long story " * 30, CaptureConfig(mode="stats"))
