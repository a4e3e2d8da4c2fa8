"""task_behaviour: batched, left-padded logit differences and accuracies equal one forward per item."""

from __future__ import annotations

import pytest
import torch

from circuits.discovery.behaviour import task_behaviour
from circuits.discovery.contrast import ContrastSet
from circuits.discovery.tasks import read_items, tokenize_items
from probe.errors import InputError
from tests.helpers import tiny_loaded


def _varied(arch: str):
    """A tiny model with unit-scale embeddings and unembedding, so logits differ visibly between tokens."""
    loaded = tiny_loaded(arch)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for weight in (loaded.hf.get_input_embeddings().weight, loaded.hf.get_output_embeddings().weight):
            weight.copy_(torch.randn(weight.shape, generator=generator))
    return loaded


@pytest.fixture(scope="module", params=["llama", "gpt2"])  # rotary and absolute positions
def model(request):
    return _varied(request.param)


@pytest.fixture(scope="module")
def ioi(model):
    items = read_items("ioi")[:7]  # 14 to 16 tokens: every batch has padding
    return items, tokenize_items("ioi", items, model.tokenizer).contrast


def _alone(model, text: str) -> torch.Tensor:
    ids = torch.tensor([model.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model.hf(input_ids=ids).logits[0, -1].float()


def test_batched_values_equal_one_forward_per_item(model, ioi):
    items, contrast = ioi
    assert int(contrast.attention_mask.sum(1).min()) < contrast.clean.shape[1]
    behaviour = task_behaviour(model, contrast, batch_size=3)
    for i, item in enumerate(items):
        clean, corrupted = _alone(model, item.prompt), _alone(model, item.corrupted)
        answer, other = int(contrast.answer[i]), int(contrast.contrast[i])
        assert float(behaviour.clean_logit_diff[i]) == pytest.approx(float(clean[answer] - clean[other]), abs=1e-4)
        assert float(behaviour.corrupted_logit_diff[i]) == pytest.approx(
            float(corrupted[answer] - corrupted[other]), abs=1e-4)
        assert bool(behaviour.clean_top[i]) == (int(clean.argmax()) == answer)
    assert behaviour.clean_logit_diff.abs().max() > 0.1  # the comparison is not between zeros


def test_accuracies_and_wrong_items_follow_the_per_item_values(model, ioi):
    _, contrast = ioi
    behaviour = task_behaviour(model, contrast, batch_size=7)
    diff = behaviour.clean_logit_diff
    assert behaviour.wrong == tuple(i for i in range(len(diff)) if diff[i] <= 0)
    assert behaviour.not_top == tuple(i for i in range(len(diff)) if not behaviour.clean_top[i])
    assert behaviour.pairwise_accuracy == pytest.approx(1 - len(behaviour.wrong) / len(diff))
    assert behaviour.accuracy == pytest.approx(1 - len(behaviour.not_top) / len(diff))
    assert behaviour.mean_clean_logit_diff == pytest.approx(float(diff.mean()))
    assert 0 < len(behaviour.wrong) < len(diff)  # a random model gets some right and some wrong, all listed
    report = behaviour.to_dict()
    assert report["wrong"] == list(behaviour.wrong) and len(report["clean_logit_diff"]) == len(diff)
    assert behaviour.summary().startswith(f"ioi: 7 items; answer on top {behaviour.accuracy:.1%}")


def test_batch_size_does_not_change_the_values(model, ioi):
    _, contrast = ioi
    one, all_at_once = task_behaviour(model, contrast, batch_size=1), task_behaviour(model, contrast, batch_size=16)
    torch.testing.assert_close(one.clean_logit_diff, all_at_once.clean_logit_diff, atol=1e-4, rtol=0)
    torch.testing.assert_close(one.corrupted_logit_diff, all_at_once.corrupted_logit_diff, atol=1e-4, rtol=0)


def test_bad_calls_are_input_errors(model, ioi):
    _, contrast = ioi
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        task_behaviour(model, contrast, batch_size=0)
    foreign = ContrastSet.left_padded("ioi", [[1, 2]], [[1, 3]], [10**6], [4], ["x"], pad_id=0)
    with pytest.raises(InputError, match="built with another tokenizer"):
        task_behaviour(model, foreign)
