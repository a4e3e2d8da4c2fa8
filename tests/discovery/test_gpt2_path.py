"""The GPT-2-small path end to end on a tiny *random* GPT-2 of GPT-2 small's head geometry (12 x 12).

A code-path check only: with random weights no published number can come out (the README says
so). What it checks: the IOI and greater-than sets tokenize with GPT-2's tokenizer, every method
runs on the HF model and on its HookedTransformer, and its scores are scored against the stored
GPT-2-small circuits, whose geometry they match.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from circuits.discovery.ground_truth import load_ground_truth
from circuits.discovery.methods import DiscoveryOptions, discover
from circuits.discovery.sae_method import SAEOptions
from circuits.discovery.sae_train import SAETraining
from circuits.discovery.scores import score_method
from circuits.discovery.tasks import load_task
from probe.models.loading import LoadedModel
from tests.helpers import gpt2_tokenizer

FAST = DiscoveryOptions(batch_size=8, heads_per_forward=48, ig_steps=2,
                        sae=SAEOptions(n_train=4, training=SAETraining(width=32, epochs=20)))


@pytest.fixture(scope="module")
def tiny_gpt2_small(tmp_path_factory) -> LoadedModel:
    """A random GPT-2 with 12 layers x 12 heads, saved to a folder and loaded as users load one."""
    from probe.models.loading import load_model

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_head=12, n_embd=48, n_positions=128, vocab_size=50257)
    config.n_ctx = 128  # GPT-2 checkpoints carry it and TransformerLens reads it; transformers 5 no longer sets it
    folder = tmp_path_factory.mktemp("tiny-gpt2-small")
    GPT2LMHeadModel(config).save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return load_model(str(folder))


@pytest.mark.parametrize("task", ["ioi", "greater_than"])
def test_gpt2_tasks_tokenize_with_gpt2s_tokenizer(task):
    loaded = load_task(task, gpt2_tokenizer())
    assert len(loaded.contrast) > 0.8 * loaded.total, loaded.summary()


@pytest.mark.parametrize("method", ["patching", "eap", "eap-ig", "sae", "sae-edge"])
def test_every_method_scores_against_the_gpt2_small_circuit(tiny_gpt2_small, method):
    contrast = load_task("ioi", tiny_gpt2_small.tokenizer).contrast.first(8)
    truth = load_ground_truth("ioi")
    result = discover(tiny_gpt2_small, contrast, method, FAST)
    assert result.scores.shape == (truth.n_layers, truth.n_heads) == (12, 12)
    score = score_method(method, result.scores, truth, result.seconds)
    assert score.n_positive == 26 and 0 <= score.roc_auc <= 1 and 0 <= score.staircase_auc <= 1
    assert math.isfinite(score.precision_at_k[26]) and score.seconds > 0


def test_the_hooked_transformer_gives_the_same_scores(tiny_gpt2_small):
    contrast = load_task("ioi", tiny_gpt2_small.tokenizer).contrast.first(4)
    for method in ("eap", "patching"):
        hf = discover(tiny_gpt2_small, contrast, method, FAST)
        via_lens = discover(tiny_gpt2_small.lens(), contrast, method, FAST)
        torch.testing.assert_close(via_lens.raw, hf.raw, atol=2e-5, rtol=1e-3)
