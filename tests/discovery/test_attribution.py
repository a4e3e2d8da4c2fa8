"""EAP and EAP-IG: the planted head comes first, EAP is exact on a linear toy, completeness, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from circuits.discovery.attribution import attribution_patching, eap_ig
from circuits.discovery.heads import forward_logits, head_input_hooks, logit_diff, record_head_inputs
from circuits.discovery.patching import activation_patching
from probe.errors import InputError
from tests.discovery.planting import PLANTED, planted_contrast, planted_model


@pytest.mark.parametrize("method", [
    lambda m, c: attribution_patching(m, c, batch_size=4),
    lambda m, c: eap_ig(m, c, batch_size=4),
    lambda m, c: eap_ig(m, c, interpolate="heads"),
], ids=["eap", "eap-ig", "eap-ig-heads"])
def test_planted_head_ranks_first(planted, method):
    loaded, contrast = planted
    result = method(loaded, contrast)
    scores = result.scores
    assert scores.shape == (3, 6)
    assert divmod(int(scores.argmax()), 6) == PLANTED
    assert scores[PLANTED] > 5 * scores.flatten().sort().values[-2]
    assert result.seconds > 0


def _linear_toy():
    """The planted model made linear in its last layer's head outputs: no final norm, and the
    last MLP writes nothing, so the logits are ``W_U (residual + sum_h W_O^h o_h)``."""
    loaded, contrast = planted_model(torch.float64), planted_contrast(padded=False)
    loaded.hf.model.norm = nn.Identity()
    with torch.no_grad():
        loaded.hf.model.layers[-1].mlp.down_proj.weight.zero_()
    return loaded, contrast


def test_eap_equals_patching_on_linear_toy():
    loaded, contrast = _linear_toy()
    patching = activation_patching(loaded, contrast, heads_per_forward=18)
    eap = attribution_patching(loaded, contrast)
    ig = eap_ig(loaded, contrast, steps=3)
    torch.testing.assert_close(eap.scores[-1], patching.scores[-1], atol=1e-10, rtol=0)
    torch.testing.assert_close(ig.scores[-1], patching.scores[-1], atol=1e-10, rtol=0)
    assert patching.scores[-1].abs().max() > 0.5  # the comparison is not 0 == 0


def test_one_step_ig_is_eap(planted64):
    loaded, contrast = planted64
    torch.testing.assert_close(eap_ig(loaded, contrast, steps=1).scores, attribution_patching(loaded, contrast).scores,
                               atol=1e-12, rtol=0)


def _all_heads_corrupted(loaded, contrast) -> float:
    """Mean LD of the clean prompts with every head's output replaced by its corrupted value."""
    corrupted, _ = record_head_inputs(loaded.hf, contrast.corrupted, contrast.attention_mask)
    with torch.no_grad(), head_input_hooks(loaded.hf, lambda layer, x: corrupted[layer]):
        logits = forward_logits(loaded.hf, contrast.clean, contrast.attention_mask)
    return float(logit_diff(logits, contrast.answer, contrast.contrast).mean())


def test_completeness_over_heads(planted64):
    """sum_h raw(h) -> LD_clean - LD(all heads corrupted), error O(1/steps), on the nonlinear model."""
    loaded, contrast = planted64
    target = attribution_patching(loaded, contrast).clean_logit_diff - _all_heads_corrupted(loaded, contrast)
    errors = []
    for steps in (4, 64):
        total = float(eap_ig(loaded, contrast, steps=steps, interpolate="heads").raw.sum())
        errors.append(abs(total - target))
    assert errors[1] < errors[0] / 4
    assert errors[1] < 0.01 * abs(target)


@pytest.mark.parametrize("call, word", [
    (lambda m, c: eap_ig(m, c, steps=0), "steps"),
    (lambda m, c: eap_ig(m, c, interpolate="edges"), "interpolate"),
    (lambda m, c: attribution_patching(m, c, batch_size=0), "batch_size"),
])
def test_bad_arguments(planted, call, word):
    loaded, contrast = planted
    with pytest.raises(InputError, match=word):
        call(loaded, contrast)


def test_transformer_lens_agrees_with_hf(tiny_folder):
    """Every method reads ``hook_z`` on a ``HookedTransformer`` and gets the HF model's scores."""
    from probe.models.loading import load_model

    loaded = load_model(str(tiny_folder))
    contrast = planted_contrast(padded=True)
    for method in (lambda m: activation_patching(m, contrast, heads_per_forward=6),
                   lambda m: activation_patching(m, contrast, ablation="mean", heads_per_forward=6),
                   attribution_patching, lambda m: eap_ig(m, contrast, steps=2),
                   lambda m: eap_ig(m, contrast, steps=2, interpolate="heads")):
        call = method if method is not attribution_patching else (lambda m: attribution_patching(m, contrast))
        hf, lens = call(loaded), call(loaded.lens())
        torch.testing.assert_close(lens.raw, hf.raw, atol=2e-5, rtol=1e-3)
        assert abs(lens.gap - hf.gap) < 1e-4 and hf.raw.abs().max() > 1e-3, (hf.method, hf.raw.abs().max())
