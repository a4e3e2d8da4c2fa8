"""VHD (He et al. 2025) on a tiny random LLaVA against the by-hand difference of two separate
eager runs (each prompt alone, with and without its image, no padding), and the pure functions
of :mod:`circuits.vision.vhd` (T-VHD, the outlier rule, the median rule, ranking, views)."""

from __future__ import annotations

import pytest
import torch

from circuits.vision.lockstep import Reinforcement, lockstep_heads, outlier_mask, select_heads
from circuits.vision.vhd import head_ranking, per_layer_view, prompt_set_vhd, total_vhd, vhd_heatmap
from probe.models.vlm_inputs import vision_inputs
from tests.vision.vhd_helpers import PROMPTS, last_head_outputs


@pytest.fixture(scope="module")
def llava(tiny_vlms):
    return tiny_vlms["llava"]


def separate_vhd(model, prompt, image, scales=None):
    """``[layer, head]`` VHD and TA from two one-row eager runs (image, then text only)."""
    seen = last_head_outputs(model, vision_inputs(model, [prompt], [image]).inputs, scales or {})
    blind = last_head_outputs(model, vision_inputs(model, [prompt], [None]).inputs, scales or {})
    return (seen - blind).norm(dim=-1), blind.pow(2).sum(-1)


def test_lockstep_vhd_equals_two_separate_eager_runs(llava, images):
    got = lockstep_heads(llava, PROMPTS, images)
    for item, (prompt, image) in enumerate(zip(PROMPTS, images)):
        vhd, ta = separate_vhd(llava, prompt, image)
        torch.testing.assert_close(got.vhd[item], vhd, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.text_norm_sq[item], ta, atol=1e-5, rtol=1e-5)
    assert not got.selected.any(), "no reinforcement: nothing selected"
    assert (got.vhd > 0).all()


def test_padding_leaves_the_text_only_row_as_it_is_alone(llava, images):
    """The text-only rows are shorter than the image rows (left-padded) and the prompts differ in
    length: position ids from each row's first real token keep every row as it is alone."""
    batch = vision_inputs(llava, PROMPTS + PROMPTS, images + [None, None])
    assert not batch.attention_mask[2:].bool().all(), "the text-only rows are padded"
    test_lockstep_vhd_equals_two_separate_eager_runs(llava, images)


def test_reinforcement_changes_only_the_layers_after_the_first_reinforced(llava, images):
    plain = lockstep_heads(llava, PROMPTS, images)
    reinforced = lockstep_heads(llava, PROMPTS, images, Reinforcement(layers=(1,), alpha=2.0))
    torch.testing.assert_close(reinforced.vhd[:, :2], plain.vhd[:, :2], atol=1e-6, rtol=0)
    assert (reinforced.vhd[:, 2] - plain.vhd[:, 2]).abs().max() > 1e-4, "layer 2 sees layer 1's reinforcement"
    identity = lockstep_heads(llava, PROMPTS, images, Reinforcement(layers=(1, 2), alpha=1.0))
    torch.testing.assert_close(identity.vhd, plain.vhd, atol=1e-6, rtol=0)
    torch.testing.assert_close(identity.image_logits, plain.image_logits, atol=1e-5, rtol=0)


def test_outlier_rule_needs_both_vhd_and_text_norm_above_mean_plus_std():
    vhd = torch.tensor([[1.0, 1.0, 1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0, 1.0, 9.0]])
    ta = torch.tensor([[1.0, 1.0, 1.0, 1.0, 9.0, 1.0], [9.0, 1.0, 1.0, 1.0, 1.0, 9.0]])
    # row 0: VHD mean + std = 3.67 + 4.13 (heads 4, 5 above), TA 2.33 + 3.27 (head 4 above);
    # row 1: VHD 2.33 + 3.27 (head 5), TA 3.67 + 4.13 (heads 0, 5)
    assert outlier_mask(vhd, ta).tolist() == [[False] * 4 + [True, False], [False] * 5 + [True]]


def test_median_rule_after_zeroing_outliers():
    vhd = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 5.0])
    ta = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 50.0])
    assert select_heads(vhd, ta).tolist() == [False, False, True, True, True, False], "head 5 is an outlier: zeroed"
    assert select_heads(vhd, ta, outliers=False).tolist() == [False, False, False, True, True, True]


def test_total_vhd_sums_each_layers_top_k():
    vhd = torch.tensor([[[1.0, 5.0, 3.0], [2.0, 0.0, 7.0]]])
    assert total_vhd(vhd, 1).tolist() == [12.0]
    assert total_vhd(vhd, 2).tolist() == [8.0 + 9.0]
    with pytest.raises(ValueError, match="top_k"):
        total_vhd(vhd, 4)


def test_ranking_views_and_heatmap(llava, images):
    result = prompt_set_vhd(llava, PROMPTS, images, batch_size=1)
    torch.testing.assert_close(result.mean, lockstep_heads(llava, PROMPTS, images).vhd.mean(0), atol=1e-5, rtol=0)
    ranking = head_ranking(result.mean)
    assert len(ranking) == result.mean.numel()
    assert [r.vhd for r in ranking] == sorted((r.vhd for r in ranking), reverse=True)
    assert result.mean[ranking[0].layer, ranking[0].head] == result.mean.max()
    view = per_layer_view(result.mean)
    assert len(view["vhd"]) == 3 and len(view["vhd"][0]) == 6
    figure = vhd_heatmap(result.mean, mask=result.mean_outliers | (result.mean == result.mean.max()))
    assert figure.data[0].type == "heatmap" and len(figure.data) == 2
    assert result.outlier_rate.shape == result.mean.shape and result.cleaned_mean.shape == result.mean.shape


@pytest.mark.real_model
def test_synth_llava_lockstep_equals_the_capture_of_each_stream():
    """On synth-llava (30 layers, 9 heads), the lockstep VHD equals the difference of
    :func:`probe.capture.image_head_outputs`' two captures (headscope's own attention path)."""
    from circuits.vision.render import render
    from circuits.vision.world import scene_at
    from probe import load_model
    from probe.capture import image_head_outputs

    model = load_model("synth-llava")
    prompts, images = ["Describe this image.", "Is there a knife in the image?"], [render(scene_at("heldout", i))
                                                                                   for i in range(2)]
    got = lockstep_heads(model, prompts, images)
    assert got.vhd.shape == (2, 30, 9)
    for item, (prompt, image) in enumerate(zip(prompts, images)):
        heads = image_head_outputs(model, prompt, image)
        torch.testing.assert_close(got.vhd[item], (heads.with_image - heads.without_image).norm(dim=-1),
                                   atol=2e-3, rtol=1e-4)
