"""Captures with images on tiny random LLaVA, Qwen2-VL, Idefics3 and SmolVLM
against Hugging Face's own eager attention, the image mask, span_mass, records, and head outputs
with and without the image; one test on two real COCO images from ``../shared``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from probe import AttentionRecord, CaptureConfig, capture
from probe.capture import image_head_outputs
from probe.capture.hf import padded_positions
from probe.models.vision import vision_format
from probe.models.vlm_inputs import vision_inputs
from probe.summary import image_summary
from tests.helpers import SHARED

PROMPTS = ["What is on the table in this picture?", "Hi", "Describe it."]
COCO = SHARED / "data" / "coco128" / "images"


def eager_forward(model, batch):
    """HF's eager forward of a processor batch, with the position ids capture gives it."""
    inputs = dict(batch.inputs)
    if not vision_format(model.hf).own_positions:
        inputs["position_ids"] = padded_positions(batch.attention_mask)
    previous = model.hf.config._attn_implementation
    model.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model.hf(**inputs, output_attentions=True, use_cache=False)
    finally:
        model.hf.set_attn_implementation(previous)


def mixed_batch(images):
    """Three prompts of different lengths: with an image, without one, with another."""
    return PROMPTS, [images[0], None, images[1]]


def test_pattern_capture_equals_hf_eager_attention(vlm, images):
    prompts, pictures = mixed_batch(images)
    record = capture(vlm, prompts, CaptureConfig(mode="pattern", image_span=True), images=pictures)
    reference = eager_forward(vlm, vision_inputs(vlm, prompts, pictures))
    valid = record.attention_mask.bool()
    assert len(reference.attentions) == vlm.geometry.n_layers == len(record.layers)
    for layer, expected in enumerate(reference.attentions):
        got = record.patterns[layer]
        rows = valid[:, None, :, None].expand_as(got)
        torch.testing.assert_close(got[rows], expected.float()[rows], atol=2e-5, rtol=0, msg=f"layer {layer}")
    torch.testing.assert_close(record.last_logits, reference.logits[:, -1].float(), atol=1e-4, rtol=0)


def test_image_mask_marks_the_image_token_ids(vlm, images):
    prompts, pictures = mixed_batch(images)
    record = capture(vlm, prompts, CaptureConfig(layers=(0,)), images=pictures)
    assert record.image_mask.dtype == torch.bool
    assert torch.equal(record.image_mask, record.input_ids == vlm.image_token_id)
    per_row = record.image_mask.sum(1)
    assert per_row[0] > 0 and per_row[1] == 0 and per_row[2] > 0
    assert not (record.image_mask & ~record.attention_mask.bool()).any()
    assert record.attention_mask[:, -1].all() and not record.attention_mask[1, 0], "left padding"


def test_span_mass_is_the_pattern_summed_over_image_keys(vlm, images):
    prompts, pictures = mixed_batch(images)
    record = capture(vlm, prompts, CaptureConfig(mode="pattern", image_span=True, chunk_size=3), images=pictures)
    valid = record.attention_mask.bool()
    for layer in record.layers:
        expected = (record.patterns[layer] * record.image_mask[:, None, None, :]).sum(-1)
        got = record.stats[layer]["span_mass"]
        torch.testing.assert_close(got[valid[:, None].expand_as(got)], expected[valid[:, None].expand_as(got)],
                                   atol=1e-5, rtol=0)
        assert got[~valid[:, None].expand_as(got)].isnan().all()
        assert (got[1][valid[1].expand_as(got[1])] == 0).all(), "the prompt without an image pays it nothing"


def test_records_with_images_save_load_and_summarise(vlm, images, tmp_path):
    prompts, pictures = mixed_batch(images)
    record = capture(vlm, prompts, CaptureConfig(image_span=True, layers=(0, 2)), images=pictures)
    loaded = AttentionRecord.load(record.save(tmp_path / "rec"))
    assert torch.equal(loaded.image_mask, record.image_mask)
    torch.testing.assert_close(loaded.stats[2]["span_mass"], record.stats[2]["span_mass"], equal_nan=True)
    positions = loaded.image_positions(0)
    assert len(positions) == int(record.image_mask[0].sum()) and loaded.image_positions(1) == []
    text = image_summary(loaded, prompt=0)
    assert f"{len(positions)} image tokens" in text and "layer 2" in text


def test_head_outputs_with_and_without_the_image(vlm, images):
    heads = image_head_outputs(vlm, PROMPTS[0], images[0])
    geometry = vlm.geometry
    assert heads.with_image.shape == heads.without_image.shape == (geometry.n_layers, geometry.n_heads,
                                                                   geometry.head_dim)
    assert heads.layers == tuple(range(geometry.n_layers))
    assert (heads.with_image - heads.without_image).abs().max() > 1e-4, "the image changes the heads"
    for run, image in ((heads.with_image, images[0]), (heads.without_image, None)):
        expected = output_projection_inputs(vlm, vision_inputs(vlm, [PROMPTS[0]], [image]))
        torch.testing.assert_close(run, expected, atol=1e-5, rtol=0)


def output_projection_inputs(model, batch) -> torch.Tensor:
    """``[layer, head, d]``: what each layer's output projection reads at the last token, under
    HF's eager forward (the per-head outputs, concatenated)."""
    from probe.models.families import family_of

    seen, hooks = [], []
    for projection in family_of(model.hf).output_projections(model.hf):
        hooks.append(projection.register_forward_pre_hook(lambda module, args: seen.append(args[0][0, -1])))
    try:
        eager_forward(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    geometry = model.geometry
    return torch.stack(seen).reshape(geometry.n_layers, geometry.n_heads, geometry.head_dim)


@pytest.mark.skipif(not COCO.is_dir(), reason="needs ../shared/data/coco128 (absent outside the project's machines)")
def test_two_real_coco_images(tiny_vlms, tmp_path):
    paths = sorted(Path(COCO).glob("*/*.jpg"))[:2]
    model = tiny_vlms["llava"]
    record = capture(model, ["What animal is this?", "How many people are there?"],
                     CaptureConfig(mode="pattern", image_span=True), images=paths)
    counts = record.image_mask.sum(1)
    assert counts[0] == counts[1] > 0, "LLaVA gives every image the same number of tokens"
    mass = torch.cat([record.stat(layer, "span_mass", prompt).flatten()
                      for layer in record.layers for prompt in (0, 1)])
    assert torch.isfinite(mass).all() and (mass >= 0).all() and (mass <= 1 + 1e-5).all()
    loaded = AttentionRecord.load(record.save(tmp_path / "coco"))
    assert torch.equal(loaded.image_mask, record.image_mask)
