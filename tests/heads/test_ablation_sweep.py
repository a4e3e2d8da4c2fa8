"""The batched head-ablation sweep equals ablations run one head at a time by hand."""

from __future__ import annotations

import pytest
import torch

from circuits.heads.ablation_sweep import ablation_sweep, sweep_forwards
from circuits.heads.target_foil import target_foil
from probe.edits import act_calibration, apply_edits
from probe.errors import InputError
from probe.models.families import family_of
from tests.heads.conftest import PROMPT


def _one_at_a_time(model, pair, layer, head, mode, edits=()):
    """The logit difference with one head ablated, by a pre-hook on its output projection."""
    hf, head_dim = model.hf, model.geometry.head_dim
    cols = slice(head * head_dim, (head + 1) * head_dim)
    proj = family_of(hf).output_projections(hf)[layer]
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    seen = {}
    keep = proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("z", args[0].clone()))
    with torch.no_grad(), apply_edits(model, list(edits)):
        hf(input_ids=ids)
    keep.remove()

    def replace(module, args):
        x = args[0].clone()
        x[..., cols] = 0.0 if mode == "zero" else seen["z"][0, :, cols].mean(0)
        return (x,)

    handle = proj.register_forward_pre_hook(replace)
    try:
        with torch.no_grad(), apply_edits(model, list(edits)):
            logits = hf(input_ids=ids).logits[0, -1]
    finally:
        handle.remove()
    return float(logits[pair.target_id] - logits[pair.foil_id])


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_batched_sweep_equals_one_head_at_a_time(vivid_llama, mode):
    pair = target_foil(vivid_llama.tokenizer, " Mary", " John")
    sweep = ablation_sweep(vivid_llama, PROMPT, pair, mode=mode, heads_per_forward=4)  # 18 heads: a short last chunk
    geometry = vivid_llama.geometry
    assert sweep.ablated.shape == (geometry.n_layers, geometry.n_heads)
    assert sweep.forwards == sweep_forwards(geometry.n_layers * geometry.n_heads, 4) == 6
    expected = torch.tensor([[_one_at_a_time(vivid_llama, pair, layer, head, mode)
                              for head in range(geometry.n_heads)] for layer in range(geometry.n_layers)],
                            dtype=torch.float64)
    torch.testing.assert_close(sweep.ablated, expected, rtol=1e-9, atol=1e-9)
    assert sweep.effect.abs().max() > 1e-2  # ablations that move the difference
    assert len(set(sweep.ablated.flatten().tolist())) == sweep.ablated.numel()


def test_sweep_under_an_edit_ablates_in_the_edited_model(vivid_llama):
    pair = target_foil(vivid_llama.tokenizer, " Mary", " John")
    edits = [act_calibration(layers=[1, 2])]
    sweep = ablation_sweep(vivid_llama, PROMPT, pair, edits, mode="zero", heads_per_forward=7)
    plain = ablation_sweep(vivid_llama, PROMPT, pair, mode="zero", heads_per_forward=7)
    for layer, head in [(0, 0), (1, 3), (2, 5)]:
        assert float(sweep.ablated[layer, head]) == pytest.approx(
            _one_at_a_time(vivid_llama, pair, layer, head, "zero", edits), rel=1e-9, abs=1e-9)
    assert not torch.allclose(sweep.ablated, plain.ablated)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="resample"), "ablation mode must be one of zero, mean"),
    (dict(heads_per_forward=0), "heads_per_forward must be a positive integer"),
    (dict(heads_per_forward=2.5), "heads_per_forward must be a positive integer"),
])
def test_bad_sweep_settings(vivid_llama, kwargs, message):
    pair = target_foil(vivid_llama.tokenizer, " Mary", " John")
    with pytest.raises(InputError, match=message):
        ablation_sweep(vivid_llama, PROMPT, pair, **kwargs)
