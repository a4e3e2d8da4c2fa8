"""Capture attention from Hugging Face models through the registered ``"headscope"`` function.

Context:
    :func:`recording` switches the model to headscope attention, opens an
    :class:`~probe.attention.hf.AttentionSession` whose layers ask for the configured statistics,
    and collects each layer's result as the forward runs. Nothing is copied from modeling files:
    the model's own forward runs, with our attention function in place of eager/SDPA.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn

from probe.attention.hf import AttentionSession, LayerPlan, active_session, attention_modules, use_headscope_attention
from probe.attention.mask import LazyMask
from probe.attention.spec import AttentionOutput
from probe.capture.config import CaptureConfig
from probe.capture.inputs import position_columns
from probe.models.vision import vision_format


@dataclass
class Recorder:
    """Collects per-layer results of the forwards run inside :func:`recording`.

    Attributes:
        calls: layer -> one entry per forward (prefill first, then each generation step).
        head_columns: ``[batch, p]`` columns at which to keep per-head outputs (prefill only).
    """

    config: CaptureConfig
    head_columns: Tensor | None = None
    calls: dict[int, list[dict]] = field(default_factory=dict)

    def on_result(self, layer: int, result: AttentionOutput, mask: LazyMask) -> None:
        entry: dict = {"stats": {k: v.detach() for k, v in result.stats.items()}}
        if result.pattern is not None:
            entry["pattern"] = result.pattern.detach().float()
        if result.sinks:
            entry["sinks"] = result.sinks
        first_call = not self.calls.get(layer)
        if first_call and self.head_columns is not None and self.head_columns.shape[1]:
            index = self.head_columns.to(result.output.device)[:, :, None, None]
            index = index.expand(-1, -1, *result.output.shape[2:])
            entry["head_outputs"] = result.output.detach().gather(1, index).float()
        self.calls.setdefault(layer, []).append(entry)

    def prefill(self, layer: int) -> dict:
        return self.calls[layer][0]


@contextlib.contextmanager
def recording(
    model: nn.Module,
    config: CaptureConfig,
    layers: tuple[int, ...],
    attention_mask: Tensor | None = None,
    image_mask: Tensor | None = None,
) -> Iterator[Recorder]:
    """Record ``layers`` of ``model`` during the forwards run inside the block (``image_mask``,
    True at image tokens, is the key span of ``span_mass`` when ``config.image_span``)."""
    columns = None
    if config.head_output_positions and attention_mask is not None:
        columns = position_columns(config.head_output_positions, attention_mask)
    recorder = Recorder(config=config, head_columns=columns)
    plan = LayerPlan(want=config.request(image_mask), backend=config.backend, chunk_size=config.chunk_size)
    session = AttentionSession(
        layer_of=attention_modules(model),
        plans={layer: plan for layer in layers},
        on_result=recorder.on_result,
    )
    with use_headscope_attention(model), active_session(session):
        yield recorder


def run_forward(model: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                model_inputs: dict[str, Tensor] | None = None) -> Tensor:
    """One forward; returns the logits at each row's last position ``[batch, vocab]``.

    ``model_inputs`` are further inputs of the forward (a VLM's ``pixel_values`` ...). A model
    that computes its own positions from the mask (Qwen2-VL's 3-d rotary positions,
    :class:`~probe.models.vision.VisionFormat`) gets no position ids.

    Only the last position goes through the unembedding (``logits_to_keep=1``): at 8k tokens the
    full logits of a 49k-token vocabulary would be 1.6 GB. A left-padded batch gets position ids
    that start at 0 on each row's first real token (HF's forward counts from the padding), so
    each prompt is computed as it would be alone, also on models with absolute positions.
    """
    device = next(model.parameters()).device
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    own_positions = vision_format(model).own_positions
    if "position_ids" in params and not own_positions and not bool(attention_mask.bool().all()):
        extra["position_ids"] = padded_positions(attention_mask).to(device)
    extra.update({name: value.to(device) for name, value in (model_inputs or {}).items()})
    with torch.no_grad():
        out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False, **extra)
    return out.logits[:, -1].float().cpu()


def padded_positions(attention_mask: Tensor) -> Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token (0 on the padding)."""
    return (attention_mask.long().cumsum(1) - 1).clamp_min(0)
