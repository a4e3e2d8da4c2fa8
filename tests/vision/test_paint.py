"""PAINT (circuits.vision.paint) on a tiny random LLaVA, against computations by hand.

Token selection: the CLS query's attention computed from the tower's own weights, then the
released code's procedure (numpy percentiles, top-k, set difference). The edit: eager attention
written out with ``z + alpha|z|`` on the chosen image keys at the last query row of one layer
(an attention function registered for the comparison), at the prefill and at every decode step
of ``generate``, alone and with ``ScaleHeads``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuits.hallucination.conditions import batch_edits, conditions, edits_for
from circuits.vision.paint import (PaintTokens, cls_to_patches, paint_edits, paint_tokens, random_tokens,
                                   select_tokens)
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import LayerEdit, StatRequest
from probe.edits import BoostKeys, ImagePatches, ScaleHeads, apply_edits
from probe.edits.spec import EditError
from probe.kernels.backend import Call, route_for
from probe.models.families import family_of
from probe.models.vlm_inputs import vision_inputs
from tests.vision.conftest import synthetic_image
from tests.vision.manual_attention import eager_scores, manual_attention

LAYER = 1
PROMPTS = ["What is on the table in this picture?", "Hi there", "Describe it."]
PATCHES = ((0, 3, 7, 24), (), (1, 2, 10))  # image-token indices per prompt (the second has no image)
ALPHA = 0.7


def by_hand(image_mask: torch.Tensor, patches, layer_module, alpha: float, head_factor: tuple[int, float] | None = None):
    """Eager attention written out; in ``layer_module`` the chosen image keys' logits at the call's
    last query row (each prompt's last token under left padding; the new token at a decode
    step) become ``z + alpha|z|``, and ``head_factor = (head, f)`` scales one head's output."""
    chosen = torch.zeros_like(image_mask)
    for row, indices in enumerate(patches):
        columns = torch.nonzero(image_mask[row]).flatten()
        chosen[row, columns[list(indices)]] = True

    def attend(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
        scores, value = eager_scores(query, key, value, attention_mask, scaling)
        if module is layer_module:
            keys = torch.zeros(query.shape[0], key.shape[2], dtype=torch.bool)
            keys[:, : chosen.shape[1]] = chosen[:, : key.shape[2]]
            last = scores[:, :, -1, :]
            scores = scores.clone()
            scores[:, :, -1, :] = torch.where(keys[:, None, :], last + alpha * last.abs(), last)
        probs = torch.softmax(scores.float(), dim=-1)
        out = (probs.to(value.dtype) @ value).transpose(1, 2).contiguous()
        if module is layer_module and head_factor is not None:
            head, factor = head_factor
            out[:, :, head] = out[:, :, head] * factor
        return out, probs

    return attend


def layer_module(model):
    return family_of(model.hf).attention_modules(model.hf)[LAYER]


@pytest.fixture(scope="module")
def llava(tiny_vlms):
    return tiny_vlms["llava"]


@pytest.fixture(scope="module")
def llava_batch(llava):
    batch = vision_inputs(llava, PROMPTS, [synthetic_image(1), None, synthetic_image(2, (29, 53))])
    return llava, batch


# --- token selection -------------------------------------------------------------------------


def cls_attention_by_hand(tower, hidden: torch.Tensor, layer: int) -> torch.Tensor:
    """CLS -> every token attention of one CLIP layer from its weights: ``[batch, head, tok]``."""
    block = tower.encoder.layers[layer]
    attn = block.self_attn
    x = block.layer_norm1(hidden)
    heads, d = attn.num_heads, attn.head_dim
    q = attn.q_proj(x)[:, :1].view(x.shape[0], 1, heads, d).transpose(1, 2)
    k = attn.k_proj(x).view(x.shape[0], -1, heads, d).transpose(1, 2)
    return torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1)[:, :, 0]


def code_selection(top_attn: np.ndarray, bottom_attn: np.ndarray) -> tuple[set, set]:
    """The released code's ``update_modpai_alpha`` for one image (numpy percentiles, top-k)."""
    n = top_attn.size
    q1, q3 = np.percentile(bottom_attn, 25), np.percentile(bottom_attn, 75)
    ratio = np.sum(bottom_attn > q3 + 1.5 * (q3 - q1)) / n
    top = set(torch.topk(torch.from_numpy(top_attn), int(n * 0.25)).indices.tolist())
    bottom = set(torch.topk(torch.from_numpy(bottom_attn), int(n * ratio)).indices.tolist())
    return top - bottom, bottom


def test_token_selection_equals_the_code_on_attention_by_hand(llava):
    images = [synthetic_image(seed, (40, 31)) for seed in range(4)]
    tower = llava.hf.model.vision_tower
    pixels = llava.processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = tower(pixels, output_hidden_states=True).hidden_states
        first = cls_attention_by_hand(tower, hidden[0], 0)[:, :, 1:].sum(1)
        last_layer = len(tower.encoder.layers) - 1  # vision_feature_layer = -1
        feature = cls_attention_by_hand(tower, hidden[last_layer], last_layer)[:, :, 1:].sum(1)
    tokens = paint_tokens(llava, images)
    assert tokens.n_patches == 25 and tokens.offset == 0
    for i in range(len(images)):
        local, summary = code_selection(first[i].double().numpy(), feature[i].double().numpy())
        assert set(tokens.local[i]) == local and set(tokens.summary[i]) == summary
        assert not set(tokens.local[i]) & set(tokens.summary[i])
        assert len(tokens.local[i]) + len(summary & set(torch.topk(first[i], 6).indices.tolist())) == 6


def test_select_tokens_outliers_and_top_quarter():
    local = torch.arange(16, dtype=torch.float32)[None]  # top 4: 12..15
    summary = torch.ones(1, 16)
    summary[0, [13, 2]] = 10.0  # two outliers
    tokens = select_tokens(local, summary, offset=1)
    assert tokens.summary == ((3, 14),) and tokens.local == ((13, 15, 16),)


def test_cls_to_patches_sums_heads_of_the_cls_row():
    attention = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(cls_to_patches(attention), attention[:, :, 0, 1:].sum(1))


def test_random_control_keeps_the_counts_and_is_seeded():
    tokens = PaintTokens(local=((1, 2, 3), (4,)), summary=((7,), ()), n_patches=25)
    a, b = random_tokens(tokens, [5, 6]), random_tokens(tokens, [5, 6])
    assert a == b
    assert [len(t) for t in a.local] == [3, 1] and [len(t) for t in a.summary] == [1, 0]
    assert all(not set(l) & set(s) and max(l + s) < 25 for l, s in zip(a.local, a.summary))


# --- the edit --------------------------------------------------------------------------------


def boost(patches=PATCHES, alpha=ALPHA):
    return BoostKeys(ImagePatches(patches), alpha, layers=[LAYER])


CASES = {
    "boost": (lambda: [boost()], {}),
    "boost+scale-heads": (lambda: [boost(), ScaleHeads(1.8, layers=[LAYER], heads=[4])], {"head_factor": (4, 1.8)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_boost_equals_eager_edited_by_hand(llava_batch, name):
    model, batch = llava_batch
    make, extra = CASES[name]
    with torch.no_grad():
        plain = model.hf(**batch.inputs).logits
        with apply_edits(model, make()):
            edited = model.hf(**batch.inputs).logits
        with manual_attention(model, by_hand(batch.image_mask, PATCHES, layer_module(model), ALPHA, **extra)):
            expected = model.hf(**batch.inputs).logits
    valid = batch.attention_mask.bool()
    torch.testing.assert_close(edited[valid], expected[valid], atol=1e-5, rtol=0)
    assert (edited[0, -1] - plain[0, -1]).abs().max() > 1e-4, "the boost changes the last position"
    if name == "boost":  # positions before the last do not see the last row: unchanged
        torch.testing.assert_close(edited[:, :-1][valid[:, :-1]], plain[:, :-1][valid[:, :-1]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_boost_holds_at_every_generation_step(llava_batch, name):
    model, batch = llava_batch
    make, extra = CASES[name]
    options = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True,
                   pad_token_id=model.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model.hf.generate(**batch.inputs, **options)
        with apply_edits(model, make()):
            edited = model.hf.generate(**batch.inputs, **options)
        with manual_attention(model, by_hand(batch.image_mask, PATCHES, layer_module(model), ALPHA, **extra)):
            expected = model.hf.generate(**batch.inputs, **options)
    assert torch.equal(edited.sequences, expected.sequences)
    for step, (got, want) in enumerate(zip(edited.scores, expected.scores)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=f"decode step {step}")
    assert any((g - p).abs().max() > 1e-4 for g, p in zip(edited.scores[1:], plain.scores[1:])), \
        "the boost acts at decode steps too"


def test_reference_boost_touches_only_each_rows_last_real_query():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    padding = torch.tensor([[True] * 5, [True, True, True, False, False]])  # row 1 right-padded: last real is 2
    mask = LazyMask(2, 5, 5, padding=padding)
    coeff = torch.zeros(2, 2, 5)
    coeff[:, :, 1] = 0.5
    out = reference_attention(q, k, v, mask, want=StatRequest(pattern=True), edit=LayerEdit(last_row_boost=coeff))
    base = reference_attention(q, k, v, mask, want=StatRequest(pattern=True))
    changed = (out.pattern - base.pattern).abs().amax(dim=(1, 3)) > 1e-6  # [batch, query]
    assert changed[0].tolist() == [False, False, False, False, True]
    assert changed[1].tolist() == [False, False, True, False, False]
    z = torch.einsum("hd,hkd->hk", q[1, :, 2], k[1, :, :3]) * 0.5
    z[:, 1] = z[:, 1] + 0.5 * z[:, 1].abs()
    torch.testing.assert_close(out.pattern[1, :, 2, :3], torch.softmax(z, -1))


def test_triton_backend_hands_boosts_to_the_reference():
    q = torch.randn(1, 2, 3, 4)
    edit = LayerEdit(last_row_boost=torch.zeros(1, 2, 3))
    assert route_for(Call(q, q, q, LazyMask(1, 3, 3), 0.5, None, StatRequest(), edit)).name == "reference"


def test_patches_past_the_image_tokens_are_refused(llava_batch):
    model, batch = llava_batch
    with pytest.raises(EditError, match="image tokens"), torch.no_grad():
        with apply_edits(model, [boost(((0, 25), (), (1,)))]):
            model.hf(**batch.inputs)
    with pytest.raises(EditError, match="rows"), torch.no_grad():
        with apply_edits(model, [boost(((0,),))]):
            model.hf(**batch.inputs)


# --- the conditions --------------------------------------------------------------------------


def test_paint_conditions_build_per_batch_edits(llava):
    assert conditions(["paint", "paint-random"]) == ("none", "paint", "paint-random")
    images = [synthetic_image(3), synthetic_image(4)]
    tokens = paint_tokens(llava, images)
    edits = batch_edits(edits_for("paint", llava), ["a", "b"], images)
    assert edits == paint_edits(tokens, llava.geometry.n_layers)
    assert [e.alpha for e in edits] == [0.7, 0.3] and edits[0].layers == (2,)  # 3 layers: 2..2
    control = batch_edits(edits_for("paint-random", llava), ["a", "b"], images)
    assert [len(r) for r in control[0].keys.indices] == [len(r) for r in tokens.local]
    assert control == batch_edits(edits_for("paint-random", llava), ["a", "b"], images)


def test_paint_refuses_a_family_it_cannot_read(tiny_vlms):
    with pytest.raises(EditError, match="TowerReader"):
        edits_for("paint", tiny_vlms["qwen2_vl"])
