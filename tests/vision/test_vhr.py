"""VHR (He et al. 2025) on a tiny random LLaVA: the heads equal Algorithm 1 run by hand (layer by
layer, separate eager runs of both streams with earlier choices scaled), the edit equals eager
attention with those heads scaled by hand (plain forward, the lockstep's own first token, every
decode step), the random control, the layer rule and the evaluation condition."""

from __future__ import annotations

import pytest
import torch

from circuits.hallucination.conditions import PerInputEdits, batch_edits, edits_for
from circuits.vision.lockstep import lockstep_heads, select_heads
from circuits.vision.vhr import (VHRConfig, generate_with_vhr, paper_layers, random_selection, vhr_edits,
                                 vhr_selection)
from probe.edits import apply_edits
from probe.models.vlm_inputs import generate_answers, vision_inputs
from tests.vision.vhd_helpers import PROMPTS, last_head_outputs, scaled_attention

CONFIG = VHRConfig(layers=(1, 2))


@pytest.fixture(scope="module")
def llava(tiny_vlms):
    return tiny_vlms["llava"]


def algorithm_one_by_hand(model, prompt, image, layers, alpha=2.0) -> dict[int, torch.Tensor]:
    """Layer by layer: both streams run alone (eager), earlier layers' heads scaled by hand."""
    seen_inputs = vision_inputs(model, [prompt], [image]).inputs
    blind_inputs = vision_inputs(model, [prompt], [None]).inputs
    chosen: dict[int, torch.Tensor] = {}
    for layer in layers:
        scales = {l: torch.where(c, alpha, 1.0)[None] for l, c in chosen.items()}
        seen = last_head_outputs(model, seen_inputs, scales)[layer]
        blind = last_head_outputs(model, blind_inputs, scales)[layer]
        chosen[layer] = select_heads((seen - blind).norm(dim=-1), blind.pow(2).sum(-1))
    return chosen


def scales_of(selected: torch.Tensor, alpha: float = 2.0) -> dict[int, torch.Tensor]:
    """``[item, layer, head]`` choices as per-layer ``[row, head]`` factors for eager_scaling."""
    return {layer: torch.where(selected[:, layer], alpha, 1.0) for layer in range(selected.shape[1])}


def test_selection_equals_algorithm_one_run_by_hand(llava, images):
    selected = vhr_selection(llava, PROMPTS, images, CONFIG)
    assert not selected[:, 0].any(), "layer 0 is not reinforced"
    for item, (prompt, image) in enumerate(zip(PROMPTS, images)):
        for layer, heads in algorithm_one_by_hand(llava, prompt, image, (1, 2)).items():
            assert selected[item, layer].tolist() == heads.tolist(), f"item {item}, layer {layer}"
        assert 0 < int(selected[item, 1].sum()) < 6


def test_vhr_edit_equals_eager_attention_scaled_by_hand(llava, images):
    selected = vhr_selection(llava, PROMPTS, images, CONFIG)
    batch = vision_inputs(llava, PROMPTS, images)
    with torch.no_grad():
        plain = llava.hf(**batch.inputs).logits
        with apply_edits(llava, vhr_edits(llava, PROMPTS, images, CONFIG)):
            edited = llava.hf(**batch.inputs).logits
        with scaled_attention(llava, scales_of(selected)):
            expected = llava.hf(**batch.inputs).logits
    valid = batch.attention_mask.bool()
    torch.testing.assert_close(edited[valid], expected[valid], atol=1e-5, rtol=0)
    assert (edited - plain)[valid].abs().max() > 1e-4
    lockstep = lockstep_heads(llava, PROMPTS, images, CONFIG.reinforcement(3))
    torch.testing.assert_close(lockstep.image_logits, edited[:, -1], atol=1e-5, rtol=0,
                               msg="the lockstep's image stream is VHR's prefill")


def test_heads_stay_fixed_at_every_decode_step(llava, images):
    selected = vhr_selection(llava, PROMPTS, images, CONFIG)
    batch = vision_inputs(llava, PROMPTS, images)
    options = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True,
                   pad_token_id=llava.tokenizer.pad_token_id)
    with torch.no_grad():
        with apply_edits(llava, vhr_edits(llava, PROMPTS, images, CONFIG)):
            edited = llava.hf.generate(**batch.inputs, **options)
        with scaled_attention(llava, scales_of(selected)):
            expected = llava.hf.generate(**batch.inputs, **options)
    assert torch.equal(edited.sequences, expected.sequences)
    for step, (got, want) in enumerate(zip(edited.scores, expected.scores)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=f"decode step {step}")
    with scaled_attention(llava, scales_of(selected)):
        by_hand = generate_answers(llava, PROMPTS, images, max_new_tokens=4)
    assert generate_with_vhr(llava, PROMPTS, images, max_new_tokens=4, config=CONFIG) == by_hand


def test_random_control_keeps_the_counts_and_is_seeded():
    selected = torch.zeros(2, 3, 6, dtype=torch.bool)
    selected[0, 1, :3] = True
    selected[1, 2, 1:5] = True
    drawn = random_selection(selected, keys=[11, 12], seed=0)
    assert torch.equal(drawn.sum(-1), selected.sum(-1))
    assert torch.equal(drawn, random_selection(selected, keys=[11, 12], seed=0))
    others = [random_selection(selected, keys=[11, 12], seed=s) for s in range(1, 6)]
    assert any(not torch.equal(o, drawn) for o in others)
    swapped = random_selection(selected[[1, 0]], keys=[12, 11], seed=0)
    assert torch.equal(swapped, drawn[[1, 0]]), "an item draws the same heads in any batch position"


def test_paper_layers_scale_the_second_and_last_14_of_32():
    assert paper_layers(32) == (1, *range(18, 32))
    assert paper_layers(30) == (1, *range(17, 30))
    assert paper_layers(3) == (1, 2)


def test_evaluation_conditions_choose_heads_per_batch(llava, images):
    chosen = edits_for("vhr", llava)
    assert isinstance(chosen, PerInputEdits)
    edits = batch_edits(chosen, PROMPTS, images)
    assert {e.prompts for e in edits} == {(0,), (1,)} and all(e.factor == 2.0 for e in edits)
    control = batch_edits(edits_for("vhr-random", llava), PROMPTS, images)
    count = lambda es: sorted((e.prompts, e.layers, len(e.heads)) for e in es)  # noqa: E731
    assert count(control) == count(edits)
    assert batch_edits([1, 2], PROMPTS, images) == [1, 2]


def test_the_batch_evaluation_answers_under_vhr(llava, images):
    from circuits.hallucination.answerers import HFAnswerer, Request

    answerer = HFAnswerer(llava, ("none", "vhr", "vhr-random"))
    batch = list(zip(images, PROMPTS))
    got = answerer.answer(batch, Request("vhr", "pope", 3))
    assert got == generate_with_vhr(llava, PROMPTS, images, max_new_tokens=3, config=VHRConfig())
    control = answerer.answer(batch, Request("vhr-random", "pope", 3))
    assert control == generate_with_vhr(llava, PROMPTS, images, max_new_tokens=3, control=True)
