"""(image, prompt) pairs -> processor inputs: loading, placeholders, chat templates, left padding,
and batched greedy answers (what the POPE / CHAIR runners call)."""

from __future__ import annotations

import copy

import torch

from probe.models.vision import vision_format
from probe.models.vlm_inputs import generate_answers, prompt_text, vision_inputs

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}<|assistant|>"
        "{% endif %}")


def test_loaded_vlms_carry_processor_and_image_token(tiny_vlms):
    for family, model in tiny_vlms.items():
        assert model.takes_images and model.processor is not None, family
        assert model.image_token_id == model.hf.config.image_token_id
        assert model.tokenizer is model.processor.tokenizer and model.tokenizer.padding_side == "left"
        assert model.geometry.n_layers == 3 and model.geometry.n_heads == 6 and model.geometry.n_kv_heads == 2


def test_a_placeholder_is_inserted_unless_the_prompt_has_one(tiny_vlms):
    model = tiny_vlms["qwen2_vl"]
    assert prompt_text(model, "Hi", True, 0) == vision_format(model.hf).placeholder + "Hi"
    assert prompt_text(model, "<|image_pad|> Hi", True, 0) == "<|image_pad|> Hi"
    assert prompt_text(model, "Hi", False, 0) == "Hi"


def test_a_chat_template_places_the_image_in_the_user_turn(tiny_vlms, images):
    model = copy.copy(tiny_vlms["llava"])
    model.processor = copy.copy(model.processor)
    model.processor.chat_template = CHAT
    assert prompt_text(model, "What is it?", True, 0) == "<|user|><image>What is it?<|assistant|>"
    assert prompt_text(model, "What is it?", False, 0) == "<|user|>What is it?<|assistant|>"
    batch = vision_inputs(model, ["What is it?", "And this?"], [images[0], None])
    assert batch.image_mask[0].sum() > 0 and batch.image_mask[1].sum() == 0


def test_batches_are_left_padded_with_the_image_tokens_marked(vlm, images):
    batch = vision_inputs(vlm, ["A long question about the picture, with many words?", "Short?"],
                          [images[0], images[1]])
    assert batch.attention_mask[:, -1].all()
    assert torch.equal(batch.image_mask, batch.input_ids == vlm.image_token_id)
    lengths = batch.attention_mask.sum(1)
    assert lengths[0] > lengths[1] and not batch.attention_mask[1, 0]


def test_batched_answers_equal_one_at_a_time(tiny_vlms, images):
    model = tiny_vlms["llava"]
    prompts = ["What is on the table?", "Is there a dog?", "Hi"]
    pictures = [images[0], images[1], None]
    together = generate_answers(model, prompts, pictures, max_new_tokens=4, batch_size=3)
    alone = generate_answers(model, prompts, pictures, max_new_tokens=4, batch_size=1)
    assert len(together) == 3 and all(isinstance(answer, str) for answer in together)
    assert together == alone
