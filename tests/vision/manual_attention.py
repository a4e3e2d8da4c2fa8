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
