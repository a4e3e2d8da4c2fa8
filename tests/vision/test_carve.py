"""CARVE: the per-step maps against a cache-free recomputation, the contrast A_Q / (A_G + lambda), the
fused map, region selection against a hand-worked mask, the crop, the two-image re-query, and the
pipeline on the tiny random VLMs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from circuits.vision.carve_maps import (LAMBDA, contrast, default_layers, eager_attention, fuse_contrast,
                                        grid_to_image, step_attention)
from circuits.vision.carve_pipeline import (CarveOptions, CarvePrompts, carve, multi_image_inputs, prompts_for)
from circuits.vision.carve_regions import cover_size, mask_box, refined_image, region_mask
from probe.errors import InputError
from probe.models.vlm_inputs import vision_inputs
from tests.vision.conftest import synthetic_image

LAYERS = (0, 1, 2)


def recomputed_maps(model, prompt: str, image, steps: int) -> np.ndarray:
    """``[step, layer, image_token]`` as the paper's code gets them: the whole sequence re-run at every
    step (no cache, eager attention), the last row's attention to the image tokens averaged over heads."""
    batch = vision_inputs(model, [prompt], [image])
    inputs = dict(batch.inputs)
    positions = batch.image_mask[0].nonzero().squeeze(1)
    maps = []
    with eager_attention(model), torch.no_grad():
        for _ in range(steps):
            out = model.hf(**inputs, output_attentions=True, use_cache=False)
            maps.append([out.attentions[layer][0, :, -1, positions].mean(0).numpy() for layer in LAYERS])
            token = out.logits[0, -1].argmax().view(1, 1)
            inputs["input_ids"] = torch.cat([inputs["input_ids"], token], dim=1)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(token)], dim=1)
    return np.asarray(maps, dtype=np.float64)


@pytest.fixture(scope="module")
def llava(tiny_vlms):
    return tiny_vlms["llava"]


@pytest.fixture(scope="module")
def recorded(llava):
    image = synthetic_image(3)
    query = step_attention(llava, "Is there a cat?", image, max_new_tokens=3, layers=LAYERS)
    general = step_attention(llava, "Describe the image.", image, max_new_tokens=4, layers=LAYERS)
    return image, query, general


def test_step_maps_equal_cache_free_recomputation(llava, recorded):
    image, query, general = recorded
    assert query.grid == (5, 5) and query.maps.shape[1:] == (3, 25)
    for prompt, record in (("Is there a cat?", query), ("Describe the image.", general)):
        expected = recomputed_maps(llava, prompt, image, len(record.maps))
        np.testing.assert_allclose(record.maps, expected, atol=1e-6)
    before = llava.hf.config._attn_implementation
    step_attention(llava, "Q?", image, max_new_tokens=1, layers=LAYERS)
    assert llava.hf.config._attn_implementation == before  # eager only inside the call


def test_contrast_is_query_over_general_plus_lambda(recorded):
    _, query, general = recorded
    ratio = contrast(query.maps[0], general.maps[0])
    np.testing.assert_allclose(ratio, query.maps[0] / (general.maps[0] + 1e-8), rtol=1e-12)
    assert contrast(np.array([2.0]), np.array([0.0]), lam=0.5)[0] == pytest.approx(4.0)


def test_fused_map_sums_resized_contrasts_weighted_by_step(recorded):
    image, query, general = recorded
    size = (23, 17)
    steps = min(len(query.maps), len(general.maps))
    expected = np.zeros((17, 23))
    for t in range(steps):
        for layer in range(len(LAYERS)):
            grid = (query.maps[t, layer] / (general.maps[t, layer] + LAMBDA)).reshape(5, 5).astype(np.float32)
            expected += (t + 1) * np.asarray(Image.fromarray(grid, mode="F").resize(size, Image.BILINEAR))
    np.testing.assert_allclose(fuse_contrast(query, general, size), expected, rtol=1e-6)
    last = sum(grid_to_image(contrast(q, g), (5, 5), size) for q, g in zip(query.maps[-1], general.maps[-1]))
    np.testing.assert_allclose(fuse_contrast(query, general, size, step_mode="last"), last, rtol=1e-6)


def test_default_layers_keep_relative_depth():
    assert default_layers(32) == tuple(range(20, 26))
    assert default_layers(30) == tuple(range(19, 24))
    assert default_layers(3) == (2,)


def hand_map() -> np.ndarray:
    """Five regions on a 6 x 8 zero background: A (3 px of 5, sum 15), B (2 px of 4, sum 8),
    C (2 px of 3, sum 6), D (1 px of 9, sum 9), E (2 px of 1, sum 2; only diagonal to A)."""
    m = np.zeros((6, 8))
    m[0, 0:3] = 5          # A
    m[1, 3] = 1            # E: touches A only diagonally (4-connectivity keeps it apart)
    m[2, 3] = 1
    m[4, 0:2] = 4          # B
    m[0, 6:8] = 3          # C
    m[4, 6] = 9            # D
    return m


def test_region_selection_matches_hand_worked_mask():
    # 10 non-zero pixels of 48: the 80th percentile (linear) lies between 0 and 1, so all ten pass;
    # five regions -> keep max(3, int(0.2 * 5)) = 3 by summed attention: A (15), D (9), B (8).
    expected = np.zeros((6, 8), dtype=bool)
    expected[0, 0:3] = expected[4, 0:2] = expected[4, 6] = True
    np.testing.assert_array_equal(region_mask(hand_map()), expected)
    assert mask_box(expected) == (0, 0, 7, 5)
    four = region_mask(hand_map(), min_regions=4)
    assert four[0, 6:8].all() and not four[1:3, 3].any()


def test_crop_and_resize():
    pixels = np.full((20, 40, 3), 200, dtype=np.uint8)
    image = Image.fromarray(pixels)
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:20] = True
    mask[5, 10] = False
    out = refined_image(image, mask)
    assert cover_size((10, 10), (40, 20)) == (40, 40) and out.size == (40, 40)
    crop = pixels[5:15, 10:20].copy()
    crop[0, 0] = 0  # the one pixel of the box outside the mask
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Image.fromarray(crop).resize((40, 40), Image.LANCZOS)))
    assert np.asarray(out)[0, 0].max() == 0 and np.asarray(out)[20, 20].min() == 200
    assert mask_box(np.zeros((4, 4), dtype=bool)) == (0, 0, 4, 4)


def test_two_images_in_one_prompt(tiny_vlms):
    for family in ("llava", "qwen2_vl", "idefics3"):
        model = tiny_vlms[family]
        inputs = multi_image_inputs(model, "Is there a cat?", [synthetic_image(1), synthetic_image(2)])
        single = vision_inputs(model, ["Is there a cat?"], [synthetic_image(1)])
        assert int((inputs["input_ids"] == model.image_token_id).sum()) == 2 * int(single.image_mask.sum())


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_pipeline_on_tiny_vlms(tiny_vlms, family):
    model = tiny_vlms[family]
    options = CarveOptions(prompts=CarvePrompts(), max_new_tokens=2, answer_tokens=2)
    image = synthetic_image(5, (40, 30))
    result = carve(model, image, "Is there a cat?", options)
    assert result.maps.shape == (30, 40) and result.mask.shape == (30, 40) and result.mask.any()
    assert result.refined_image.size[0] >= 40 and result.refined_image.size[1] >= 30
    assert isinstance(result.answer, str) and result.query.layers == default_layers(3)


def test_prompts_and_options():
    assert prompts_for("synth-llava") == CarvePrompts(general="Describe this image.", suffix="")
    assert prompts_for("other").ask("Q?") == "Q? Answer the question using a single word or phrase."
    with pytest.raises(InputError, match="step mode"):
        CarveOptions(step_mode="first")
    with pytest.raises(InputError, match="top_percent"):
        CarveOptions(top_percent=0.0)


def test_bad_layers(llava):
    with pytest.raises(InputError, match="layers"):
        step_attention(llava, "Q?", synthetic_image(1), max_new_tokens=1, layers=(7,))


def test_carve_answerer(llava):
    from circuits.hallucination.answerers import ANSWERERS, CarveAnswerer, Request
    from probe.cli_options import UsageError

    assert "carve" in ANSWERERS
    answerer = CarveAnswerer(llava)
    image = synthetic_image(4)
    answers = answerer.answer([(image, "Is there a cat?"), (image, "Is there a dog?")], Request("none", "pope", 2))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers) and len(answerer.general) == 1
    with pytest.raises(UsageError, match="without edits"):
        CarveAnswerer(llava, ("none", "act"))
