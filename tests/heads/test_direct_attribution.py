"""Direct logit attribution: the parts sum to the forward's own logit difference, a head's part is
its output's projection computed by hand, and unsupported families are refused."""

from __future__ import annotations

import pytest
import torch

from circuits.heads.direct_attribution import direct_logit_attribution
from circuits.heads.target_foil import target_foil
from probe.edits import ScaleHeads, act_calibration
from probe.errors import InputError
from probe.models.families import family_of
from tests.heads.conftest import PROMPT, vivid


@pytest.mark.parametrize("edits", [[], [act_calibration(layers=[1, 2])]], ids=["plain", "act"])
def test_parts_sum_to_the_logit_difference(vivid_model, edits):
    pair = target_foil(vivid_model.tokenizer, " Mary", " John")
    dla = direct_logit_attribution(vivid_model, PROMPT, pair, edits)
    assert abs(dla.logit_diff) > 0.05  # a difference worth decomposing
    assert dla.heads.abs().max() > 1e-3
    # the RMSNorm of HF models runs in float32 even for float64 weights: agreement to ~1e-7 relative
    assert dla.total == pytest.approx(dla.logit_diff, rel=1e-5, abs=1e-6)


def test_a_head_part_is_its_output_through_the_frozen_norm(vivid_llama):
    model = vivid_llama
    pair = target_foil(model.tokenizer, " Mary", " John")
    dla = direct_logit_attribution(model, PROMPT, pair)
    hf, layer, head = model.hf, 1, 4
    head_dim = model.geometry.head_dim
    seen = {}
    proj = family_of(hf).output_projections(hf)[layer]
    handles = [proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("z", args[0][0, -1].clone())),
               hf.model.norm.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0][0, -1].clone()))]
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf(input_ids=ids)
    for handle in handles:
        handle.remove()
    cols = slice(head * head_dim, (head + 1) * head_dim)
    out = proj.weight[:, cols] @ seen["z"][cols]  # z_h W_O^h
    x = seen["x"]
    normed = hf.model.norm.weight * out / torch.sqrt(x.pow(2).mean() + hf.model.norm.variance_epsilon)
    direction = hf.lm_head.weight[pair.target_id] - hf.lm_head.weight[pair.foil_id]
    # the plain forward is HF's eager attention, whose softmax runs in float32: ~1e-7 relative
    assert float(dla.heads[layer, head]) == pytest.approx(float((normed @ direction).detach()), rel=1e-5)
    others = dla.heads.flatten().tolist()
    assert sum(abs(v - float(dla.heads[layer, head])) < 1e-9 for v in others) == 1  # not a value every head has


def test_an_ablated_head_attributes_nothing(vivid_llama):
    pair = target_foil(vivid_llama.tokenizer, " Mary", " John")
    dla = direct_logit_attribution(vivid_llama, PROMPT, pair, [ScaleHeads(0.0, layers=[2], heads=[3])])
    assert float(dla.heads[2, 3]) == 0.0
    assert (dla.heads[2].abs() > 0).sum() == dla.heads.shape[1] - 1


def test_a_family_with_attention_norms_is_refused():
    gemma = vivid("gemma3")
    pair = target_foil(gemma.tokenizer, " Mary", " John")
    with pytest.raises(InputError, match="gemma3_text.*supported"):
        direct_logit_attribution(gemma, PROMPT, pair)
