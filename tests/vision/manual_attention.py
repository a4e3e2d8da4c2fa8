"""Run a model's attention through a function written by hand in a test (the reference the edits are
checked against): registered in transformers' attention and mask interfaces for one block."""

from __future__ import annotations

import contextlib
from typing import Callable

from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

MANUAL = "headscope-test-manual"


@contextlib.contextmanager
def manual_attention(model, attend: Callable):
    """``model`` (a loaded model) runs ``attend`` (transformers' attention-function signature) as its
    attention inside the block, with eager masks; its own implementation comes back afterwards."""
    AttentionInterface.register(MANUAL, attend)
    AttentionMaskInterface.register(MANUAL, eager_mask)
    previous = model.hf.config._attn_implementation
    model.hf.set_attn_implementation(MANUAL)
    try:
        yield
    finally:
        model.hf.set_attn_implementation(previous)


def eager_scores(query, key, value, attention_mask, scaling):
    """Eager attention's masked logits ``[batch, head, query, key]`` and the values with their KV
    heads repeated for grouped-query attention: what every hand-written reference starts from."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-1, -2) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[2]]
    return scores, value
