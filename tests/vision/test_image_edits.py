"""Edits restricted to image keys (``ImageKeys()``) on a tiny random LLaVA, against attention
computed by hand: eager attention of one layer with the bias or the ACT-style scaling applied to
the image keys, through an attention function registered for the comparison; in a plain forward
and at every step of ``generate()``."""

from __future__ import annotations

import pytest
import torch

from probe.edits import BiasKeys, ImageKeys, ScaleKeys, apply_edits
from probe.models.families import family_of
from probe.models.vlm_inputs import vision_inputs
from tests.helpers import untyped
from tests.vision.manual_attention import eager_scores, manual_attention

LAYER = 1
PROMPTS = ["What is on the table in this picture?", "Hi there", "Describe it."]


def by_hand(image_keys: torch.Tensor, layer_module, bias: float | None = None, factor: float | None = None):
    """An attention function: eager attention written out, with ``bias`` added to the logits of
    the image keys, or their probabilities scaled by ``factor`` and the rest renormalised, in
    ``layer_module`` only. ``image_keys`` is ``[batch, prefill]``; later keys are text."""

    def attend(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
        scores, value = eager_scores(query, key, value, attention_mask, scaling)
        if module is not layer_module:  # other layers, and the vision tower (no mask: both ways)
            probs = torch.softmax(scores.float(), dim=-1)
            return (probs.to(value.dtype) @ value).transpose(1, 2).contiguous(), probs
        image = torch.zeros(query.shape[0], key.shape[2], dtype=torch.bool)
        image[:, : image_keys.shape[1]] = image_keys[:, : key.shape[2]]
        selected = image[:, None, None, :]
        if bias is not None:
            scores = scores + bias * selected
        probs = torch.softmax(scores.float(), dim=-1)
        if factor is not None:
            mass = (probs * selected).sum(-1, keepdim=True)
            scaled = torch.where(selected, factor * probs, probs * (1 - factor * mass) / (1 - mass).clamp_min(1e-6))
            probs = torch.where(1 - mass > 1e-6, scaled, probs)  # rows that see only image keys: nothing to move
        return (probs.to(value.dtype) @ value).transpose(1, 2).contiguous(), probs

    return attend


@pytest.fixture(scope="module")
def llava_batch(tiny_vlms):
    from tests.vision.conftest import synthetic_image

    model = tiny_vlms["llava"]
    batch = vision_inputs(model, PROMPTS, [synthetic_image(1), None, synthetic_image(2, (29, 53))])
    return model, batch


def layer_module(model):
    return family_of(model.hf).attention_modules(model.hf)[LAYER]


EDITS = {
    "bias": (lambda: BiasKeys(ImageKeys(), 1.7, layers=[LAYER]), {"bias": 1.7}),
    "scale": (lambda: ScaleKeys(ImageKeys(), 0.3, layers=[LAYER]), {"factor": 0.3}),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_image_key_edit_equals_eager_edited_by_hand(llava_batch, name):
    model, batch = llava_batch
    make_edit, manual = EDITS[name]
    with torch.no_grad():
        plain = model.hf(**batch.inputs).logits
        with apply_edits(model, [make_edit()]):
            edited = model.hf(**batch.inputs).logits
        with manual_attention(model, by_hand(batch.image_mask, layer_module(model), **manual)):
            expected = model.hf(**batch.inputs).logits
    valid = batch.attention_mask.bool()
    torch.testing.assert_close(edited[valid], expected[valid], atol=1e-5, rtol=0)
    assert (edited[0] - plain[0]).abs().max() > 1e-4, "the edit changes the prompt with an image"
    torch.testing.assert_close(edited[1][valid[1]], plain[1][valid[1]], atol=1e-5, rtol=0,
                               msg="the prompt without an image has no image keys: unchanged")


@pytest.mark.parametrize("name", sorted(EDITS))
def test_image_key_edit_holds_at_every_generation_step(llava_batch, name):
    model, batch = llava_batch
    make_edit, manual = EDITS[name]
    options = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True,
                   pad_token_id=model.tokenizer.pad_token_id)
    with torch.no_grad():
        with apply_edits(model, [make_edit()]):
            edited = model.hf.generate(**batch.inputs, **options)
        with manual_attention(model, by_hand(batch.image_mask, layer_module(model), **manual)):
            expected = model.hf.generate(**batch.inputs, **options)
    assert torch.equal(edited.sequences, expected.sequences)
    for step, (got, want) in enumerate(zip(edited.scores, expected.scores)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=f"decode step {step}")


def test_image_keys_need_a_vision_language_model(tiny_vlms):
    from tests.helpers import tiny_loaded

    text_model = tiny_loaded("llama")
    with untyped(), pytest.raises(ValueError, match="image-token id"):
        with apply_edits(text_model, [BiasKeys(ImageKeys(), 1.0)]):
            pass
