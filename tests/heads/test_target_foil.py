"""Target and foil tokens: single tokens only, and the logit difference of two captures."""

from __future__ import annotations

import pytest
import torch

from circuits.heads.target_foil import logit_diff_change, logit_difference, target_foil
from probe import CaptureConfig, capture
from probe.edits import ScaleHeads, apply_edits
from probe.errors import InputError
from tests.heads.conftest import PROMPT


@pytest.mark.parametrize("target, foil, message", [
    ("", " John", "the target token is empty"),
    (" Mary", " Johnathanson", r"the foil ' Johnathanson' is \d tokens"),
    (" Mary", " Mary", "are the same token"),
])
def test_bad_pairs(tokenizer, target, foil, message):
    with pytest.raises(InputError, match=message):
        target_foil(tokenizer, target, foil)


def test_logit_difference_reads_the_two_columns(tokenizer):
    pair = target_foil(tokenizer, " Mary", " John")
    logits = torch.randn(3, len(tokenizer))
    expected = logits[:, pair.target_id] - logits[:, pair.foil_id]
    torch.testing.assert_close(logit_difference(logits, pair), expected)
    with pytest.raises(InputError, match="beyond these logits' vocabulary"):
        logit_difference(logits[:, :100], pair)


def test_change_between_an_unedited_and_an_edited_capture(vivid_llama):
    pair = target_foil(vivid_llama.tokenizer, " Mary", " John")
    before = capture(vivid_llama, PROMPT, CaptureConfig(mode="stats"))
    with apply_edits(vivid_llama, [ScaleHeads(0.0, layers=[2])]):
        after = capture(vivid_llama, PROMPT, CaptureConfig(mode="stats"))
    change = logit_diff_change(before, after, pair)
    ids = vivid_llama.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = vivid_llama.hf(input_ids=ids).logits[0, -1].double()
    assert change.before == pytest.approx(float(logits[pair.target_id] - logits[pair.foil_id]), rel=1e-5)
    assert change.p_target[0] == pytest.approx(float(logits.softmax(-1)[pair.target_id]), rel=1e-5)
    assert abs(change.change) > 1e-3
