"""Massive activations: the largest hidden-state magnitudes per layer and the tokens carrying them.

Definition (gated-attention paper, workbench form): ``M-Act = max_{l,t,d} |h^l_{t,d}|`` over the
layer outputs (residual stream). Per layer we also keep which token and dimension carry the
maximum and its ratio to the median ``|h|`` of that layer (Sun et al.'s "massive" activations
are thousands of times the median).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probe.capture.inputs import tokenize


@dataclass(frozen=True)
class LayerMassive:
    """The largest activation of one layer's output for one prompt."""

    layer: int
    value: float
    position: int
    token: str
    dim: int
    ratio_to_median: float


def massive_activations(model, prompt: str) -> list[LayerMassive]:
    """Per layer output (``hidden_states[1:]``), the largest ``|h|`` and where it sits."""
    batch = tokenize(model.tokenizer, [prompt], model.geometry.context_length)
    with torch.no_grad():
        out = model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       output_hidden_states=True, use_cache=False, logits_to_keep=1)
    rows = []
    for layer, hidden in enumerate(out.hidden_states[1:]):
        magnitude = hidden[0].float().abs()  # [pos, d]
        flat = int(magnitude.argmax())
        position, dim = divmod(flat, magnitude.shape[1])
        value = float(magnitude[position, dim])
        median = float(magnitude.median().clamp_min(1e-12))
        rows.append(LayerMassive(layer, value, position, batch.tokens[0][position], dim, value / median))
    return rows
