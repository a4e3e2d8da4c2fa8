"""Edits through headscope equal the same edits written by hand into eager attention."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from probe.attention.hf import active_sessions
from probe.edits import BiasKeys, Positions, ScaleHeads, ScaleKeys, act_calibration, apply_edits
from tests.helpers import build_tiny, random_batch

HAND: dict = {}


def hand_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention with the edit in ``HAND[layer]`` applied, written out independently."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-1, -2) * scaling
    if kwargs.get("softcap") is not None:
        scores = torch.tanh(scores / kwargs["softcap"]) * kwargs["softcap"]
    edit = HAND.get(module.layer_idx, {})
    if "bias" in edit:
        scores = scores + edit["bias"](scores)
    scores = scores + attention_mask[..., : key.shape[2]]
    probs = torch.softmax(scores.float(), -1)
    if "act" in edit:
        probs = edit["act"](probs, attention_mask)
    out = (probs.to(value.dtype) @ value).transpose(1, 2)
    if "head" in edit:
        out = out * edit["head"][None, None, :, None]
    return out.contiguous(), probs


AttentionInterface.register("hand_eager", hand_eager)
AttentionMaskInterface.register("hand_eager", eager_mask)


def hand_forward(model, ids, mask, edits_by_layer):
    HAND.clear()
    HAND.update(edits_by_layer)
    model.set_attn_implementation("hand_eager")
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits
    finally:
        model.set_attn_implementation("eager")
        HAND.clear()


def edited_forward(model, ids, mask, edits):
    with apply_edits(model, edits), torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def first_real(mask):
    return mask.int().argmax(1)


def test_head_scale_equals_hand(tiny_model):
    ids, mask = random_batch()
    n_heads = tiny_model.config.get_text_config().num_attention_heads
    factor = torch.ones(n_heads)
    factor[1] = 2.5
    got = edited_forward(tiny_model, ids, mask, [ScaleHeads(2.5, layers=[1], heads=[1])])
    want = hand_forward(tiny_model, ids, mask, {1: {"head": factor}})
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)


def test_key_bias_equals_hand(tiny_model):
    ids, mask = random_batch()
    cols = first_real(mask) + 2  # position 2 of every prompt

    def bias(scores):
        add = torch.zeros_like(scores)
        for row, col in enumerate(cols):
            add[row, 0, :, col] = 1.7
        return add

    got = edited_forward(tiny_model, ids, mask, [BiasKeys(Positions([2]), 1.7, layers=[0], heads=[0])])
    want = hand_forward(tiny_model, ids, mask, {0: {"bias": bias}})
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)
    assert not torch.allclose(got[valid], hand_forward(tiny_model, ids, mask, {})[valid], atol=1e-4)


def hand_act(tau, beta, heads):
    """ACT written from the paper's code description: s_j = colsum / visible, drop first sink."""

    def act(probs, additive_mask):
        allowed = additive_mask[:, :, :, : probs.shape[-1]] == 0  # [b,1,q,k]
        valid_q = allowed.any(-1, keepdim=True)
        p = probs * valid_q
        visible = (allowed & valid_q).sum(2).float()  # [b,1,k]
        score = p.sum(2) / visible.clamp_min(1)
        out = probs.clone()
        for b in range(probs.shape[0]):
            for h in heads:
                sinks = torch.nonzero(score[b, h] > tau).flatten().tolist()[1:]
                if not sinks:
                    continue
                for i in range(probs.shape[2]):
                    row = probs[b, h, i]
                    mass = row[sinks].sum()
                    if 1 - mass <= 1e-6:
                        continue
                    new = row * (1 - beta * mass) / (1 - mass)
                    new[sinks] = beta * row[sinks]
                    out[b, h, i] = new
        return out

    return act


def test_act_calibration_equals_hand(tiny_model):
    ids, mask = random_batch()
    n_heads = tiny_model.config.get_text_config().num_attention_heads
    heads = [0, n_heads - 1]
    got = edited_forward(tiny_model, ids, mask, [act_calibration(tau=0.08, beta=0.4, layers=[1], heads=heads)])
    want = hand_forward(tiny_model, ids, mask, {1: {"act": hand_act(0.08, 0.4, heads)}})
    plain = hand_forward(tiny_model, ids, mask, {})
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)
    assert (got[valid] - plain[valid]).abs().max() > 1e-4, "the edit should change something at tau=0.08"


def test_edits_compose_in_one_context(tiny_model):
    ids, mask = random_batch()
    n_heads = tiny_model.config.get_text_config().num_attention_heads
    factor = torch.ones(n_heads)
    factor[0] = 0.5 * 3.0
    got = edited_forward(tiny_model, ids, mask, [ScaleHeads(0.5, layers=[0], heads=[0]), ScaleHeads(3.0, layers=[0], heads=[0])])
    want = hand_forward(tiny_model, ids, mask, {0: {"head": factor}})
    valid = mask.bool()
    torch.testing.assert_close(got[valid], want[valid], atol=1e-5, rtol=0)


def test_edit_removed_after_exception(tiny_model):
    ids, mask = random_batch()
    with torch.no_grad():
        before = tiny_model(input_ids=ids, attention_mask=mask).logits
    with pytest.raises(RuntimeError, match="inside"):
        with apply_edits(tiny_model, [ScaleHeads(0.0, layers=[0])]):
            raise RuntimeError("inside the block")
    assert tiny_model.config._attn_implementation == "eager"
    assert active_sessions() == ()
    with torch.no_grad():
        after = tiny_model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_positional_edit_during_generation_matches_full_forward():
    """With a KV cache each step sees one query; the edited step must equal a full edited forward."""
    model = build_tiny("llama")
    ids, mask = random_batch(batch=2, length=11, pad=(0, 3))
    edits = [BiasKeys(Positions([1]), 2.0, layers=[0, 2]), ScaleKeys(Positions([0, 3]), 0.3, layers=[1]), ScaleHeads(1.8, layers=[2], heads=[1])]
    with apply_edits(model, edits), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, output_scores=True,
                             return_dict_in_generate=True, pad_token_id=0)
    full_ids = out.sequences
    full_mask = torch.cat([mask, torch.ones(2, 4, dtype=mask.dtype)], 1)
    full_logits = edited_forward(model, full_ids, full_mask, edits)
    for step, scores in enumerate(out.scores):
        torch.testing.assert_close(scores, full_logits[:, ids.shape[1] - 1 + step], atol=1e-4, rtol=0)
    plain = hand_forward(model, full_ids, full_mask, {})
    assert (plain[:, -1] - full_logits[:, -1]).abs().max() > 1e-4


def test_wrong_head_index_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="head 99"):
        with apply_edits(tiny_model, [ScaleHeads(2.0, layers=[0], heads=[99])]):
            pass
    with pytest.raises(ValueError, match="layer 42"):
        with apply_edits(tiny_model, [ScaleHeads(2.0, layers=[42])]):
            pass
    with pytest.raises(ValueError, match="factor"):
        ScaleKeys(Positions([0]), 1.5)
    with pytest.raises(ValueError, match="tau"):
        act_calibration(tau=1.5)
