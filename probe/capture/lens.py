"""Capture attention from TransformerLens models through their hooks.

Context:
    TransformerLens materialises each layer's pattern at ``blocks.{l}.attn.hook_pattern``
    (``[batch, head, query, key]``) by design, so here statistics are reduced from that hook as
    each layer runs and the pattern is dropped unless pattern mode keeps it: one layer's pattern
    lives at a time. Long inputs belong on the HF path, which never builds it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probe.attention.mask import LazyMask
from probe.attention.stats import StatAccumulator
from probe.capture.config import CaptureConfig
from probe.capture.hf import Recorder
from probe.capture.inputs import position_columns


def padding_mask(attention_mask: Tensor) -> LazyMask:
    """The causal + padding mask of a left-padded batch, as a :class:`LazyMask`."""
    batch, length = attention_mask.shape
    padding = attention_mask.to(torch.bool)
    return LazyMask(batch, length, length, padding=None if bool(padding.all()) else padding, device=attention_mask.device)


def lens_hooks(config: CaptureConfig, layers: tuple[int, ...], attention_mask: Tensor, recorder: Recorder) -> list:
    """Forward hooks that reduce ``hook_pattern`` (and keep ``hook_z``) for ``layers``."""
    mask = padding_mask(attention_mask)
    want = config.request()
    columns = position_columns(config.head_output_positions, attention_mask) if config.head_output_positions else None

    def on_pattern(pattern: Tensor, hook) -> Tensor:
        layer = hook.layer()
        acc = StatAccumulator(want, pattern, pattern[:, :1], mask) if want.any_stats else None
        entry = {"stats": {}}
        if acc is not None:
            rows = mask.rows(0, pattern.shape[2])
            acc.update(pattern.float(), rows, 0, pattern.shape[2])
            entry["stats"] = acc.finish()
        if want.pattern:
            entry["pattern"] = pattern.detach().float()
        recorder.calls.setdefault(layer, []).append(entry)
        return pattern

    def on_z(z: Tensor, hook) -> Tensor:
        index = columns.to(z.device)[:, :, None, None].expand(-1, -1, *z.shape[2:])
        recorder.calls[hook.layer()][-1]["head_outputs"] = z.detach().gather(1, index).float()
        return z

    hooks = [(f"blocks.{layer}.attn.hook_pattern", on_pattern) for layer in layers]
    if columns is not None and columns.shape[1]:
        hooks += [(f"blocks.{layer}.attn.hook_z", on_z) for layer in layers]
    return hooks


def run_lens(lens: nn.Module, input_ids: Tensor, attention_mask: Tensor, hooks: list) -> Tensor:
    """Run ``lens`` with ``hooks`` (removed afterwards, also on error); last-position logits."""
    device = lens.cfg.device
    with torch.no_grad():
        logits = lens.run_with_hooks(
            input_ids.to(device), attention_mask=attention_mask.to(device), fwd_hooks=hooks, reset_hooks_end=True
        )
    return logits[:, -1].float().cpu()
