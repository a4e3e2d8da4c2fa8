"""Activation patching per head: the planted head comes first, batching changes nothing, bad input."""

from __future__ import annotations

import pytest
import torch

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.heads import forward_logits, head_input_hooks, logit_diff, record_head_inputs
from circuits.discovery.patching import activation_patching
from probe.errors import InputError
from tests.discovery.planting import PLANTED
from tests.helpers import tiny_loaded


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_planted_head_ranks_first(planted, ablation):
    loaded, contrast = planted
    result = activation_patching(loaded, contrast, ablation=ablation, heads_per_forward=5, batch_size=4)
    scores = result.scores
    assert scores.shape == (3, 6)
    assert divmod(int(scores.argmax()), 6) == PLANTED
    assert scores[PLANTED] > 0.9 and scores[PLANTED] > 5 * scores.flatten().sort().values[-2]
    assert result.clean_logit_diff > result.corrupted_logit_diff and result.seconds > 0


def _one_head_at_a_time(loaded, contrast, source):
    """The unbatched reference, written without the module's helpers: one forward per head."""
    hf, geometry = loaded.hf, loaded.geometry
    d = geometry.head_dim
    scores = torch.zeros(geometry.n_layers, geometry.n_heads, dtype=torch.float64)
    for layer in range(geometry.n_layers):
        for head in range(geometry.n_heads):
            def patch(at, x, layer=layer, head=head):
                if at != layer:
                    return None
                x = x.clone()
                x[:, :, head * d : (head + 1) * d] = source[at][:, :, head * d : (head + 1) * d]
                return x

            with torch.no_grad(), head_input_hooks(hf, patch):
                logits = forward_logits(hf, contrast.clean, contrast.attention_mask)
            scores[layer, head] = logit_diff(logits, contrast.answer, contrast.contrast).mean()
    return scores


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_batched_equals_one_head_at_a_time(planted64, ablation):
    loaded, contrast = planted64
    batched = activation_patching(loaded, contrast, ablation=ablation, heads_per_forward=7, batch_size=4)
    single = activation_patching(loaded, contrast, ablation=ablation, heads_per_forward=1, batch_size=2)
    torch.testing.assert_close(batched.scores, single.scores, atol=1e-12, rtol=0)
    clean, _ = record_head_inputs(loaded.hf, contrast.clean, contrast.attention_mask)
    corrupted, _ = record_head_inputs(loaded.hf, contrast.corrupted, contrast.attention_mask)
    source = corrupted if ablation == "corrupted" else [x.mean(0, keepdim=True).expand_as(x) for x in clean]
    patched = _one_head_at_a_time(loaded, contrast, source)
    expected = (batched.clean_logit_diff - patched) / batched.gap
    torch.testing.assert_close(batched.scores, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("arch", ["gpt2", "gemma3", "qwen2"])
def test_batched_equals_single_on_every_family(arch):
    loaded = tiny_loaded(arch)
    loaded.hf.double()
    clean = torch.randint(1, 100, (5, 7), generator=torch.Generator().manual_seed(2))
    corrupted = clean.clone()
    corrupted[:, -2:] = torch.randint(1, 100, (5, 2), generator=torch.Generator().manual_seed(3))
    contrast = ContrastSet("random", clean, corrupted, torch.ones_like(clean), torch.arange(5) + 1,
                           torch.arange(5) + 30, ("x",) * 5)
    batched = activation_patching(loaded, contrast, heads_per_forward=4, batch_size=3)
    single = activation_patching(loaded, contrast, heads_per_forward=1, batch_size=5)
    assert batched.scores.shape == (loaded.geometry.n_layers, loaded.geometry.n_heads)
    torch.testing.assert_close(batched.scores, single.scores, atol=1e-10, rtol=0)


def test_forwards_counted(planted):
    loaded, contrast = planted
    calls = []
    handle = loaded.hf.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = activation_patching(loaded, contrast, heads_per_forward=18, batch_size=6)
    finally:
        handle.remove()
    assert result.forwards == len(calls) == 3  # clean, corrupted, and all 18 heads in one forward


@pytest.mark.parametrize("kwargs, word", [
    ({"heads_per_forward": 0}, "heads_per_forward"),
    ({"batch_size": -1}, "batch_size"),
    ({"ablation": "zero"}, "ablation"),
])
def test_bad_arguments(planted, kwargs, word):
    loaded, contrast = planted
    with pytest.raises(InputError, match=word):
        activation_patching(loaded, contrast, **kwargs)


def test_other_tokenizer(planted):
    loaded, _ = planted
    foreign = ContrastSet.left_padded("ioi", [[1, 2]], [[1, 3]], [10**6], [4], ["x"], pad_id=0)
    with pytest.raises(InputError, match="another tokenizer"):
        activation_patching(loaded, foreign)


def test_no_gap(planted):
    loaded, _ = planted
    same = ContrastSet.left_padded("same", [[20, 21, 22]], [[20, 21, 22]], [17], [19], ["x"], pad_id=0)
    with pytest.raises(InputError, match="no gap"):
        activation_patching(loaded, same)
