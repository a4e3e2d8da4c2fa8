"""synth-llava, the shipped vision-language model: it loads by name offline, its language model is
SmolLM2's own, its processor feeds images as training fed them, and it sees the world's scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuits.vision.language import YES, caption, question
from circuits.vision.render import render, render_array
from circuits.vision.world import CATEGORIES, scenes
from probe.models import load_model
from probe.models.vlm_inputs import generate_answers
from tests.helpers import load_script

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def synth():
    return load_model("synth-llava")


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m")


def test_loads_by_name_as_a_llava_over_smollm2(synth, smollm2):
    assert type(synth.hf).__name__ == "LlavaForConditionalGeneration"
    assert synth.image_token_id == synth.hf.config.image_token_index
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        ours = synth.hf(**ids).logits[0, -1]
        theirs = smollm2.hf(**ids).logits[0, -1]
    assert torch.allclose(ours[: theirs.shape[0]], theirs, atol=2e-4)
    assert ours[synth.image_token_id] == 0  # the image token's unembedding row is zero


def test_processor_pixels_equal_the_training_scripts(synth):
    training = load_script("data/make_synth_llava.py")
    sample = scenes("heldout", 3)
    processed = synth.processor.image_processor([render(s) for s in sample], return_tensors="pt")["pixel_values"]
    assert torch.allclose(processed, training.pixels([render_array(s) for s in sample]), atol=1e-6)


def test_captions_held_out_scenes_and_answers_yes_no_questions(synth):
    sample = scenes("heldout", 4)
    captions = generate_answers(synth, ["Describe this image."] * 4, [render(s) for s in sample], max_new_tokens=48)
    assert sum(c.strip() == caption(s) for c, s in zip(captions, sample)) >= 3
    rng = np.random.default_rng(0)
    cases = []
    for scene in scenes("heldout", 12, start=4):
        present = sorted(scene.names)[0]
        absent = next(n for n in rng.permutation(CATEGORIES) if n not in scene.names)
        cases += [(scene, question(present), True), (scene, question(absent), False)]
    answers = generate_answers(synth, [q for _, q, _ in cases], [render(s) for s, _, _ in cases], max_new_tokens=2)
    right = sum((a.strip() == YES) == truth for a, (_, _, truth) in zip(answers, cases))
    assert right >= 0.9 * len(cases)
