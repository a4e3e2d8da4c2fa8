"""Run a model from layer ``l`` on cached hidden states: the head search's main saving.

Context:
    Calibrating a head of layer ``l`` leaves layers ``0..l-1`` unchanged, so their output can be
    computed once per calibration batch and reused for every head searched in layer ``l`` or
    later. :func:`skipping_layers` swaps layers ``0..l-1`` for identities inside the model's own
    decoder-layer list (indices, masks, rotary tables and per-layer attention types stay
    aligned), and :func:`logits_from_layer` feeds the cached input of layer ``l`` as
    ``inputs_embeds``. On average this halves the cost of a search over all layers.

Assumption (checked by tests on tiny Llama and Gemma-3 models): the decoder layer takes the
hidden states as its first argument and returns them, and ``inputs_embeds`` reaches the first
layer unchanged (Gemma's embedding scale lives inside its embedding module).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from jaxtyping import Float
from torch import Tensor, nn

from circuits.evaluation.scoring import RowBatch, run_batch
from probe.models.families import family_of


class _Skip(nn.Module):
    """Stands in for a decoder layer whose output is already known: returns its input."""

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        return hidden_states


def decoder_layer_list(model: nn.Module) -> nn.ModuleList:
    """The model's ``ModuleList`` of decoder layers (via its family adapter)."""
    return family_of(model).layer_list(model)


@contextlib.contextmanager
def skipping_layers(model: nn.Module, first: int) -> Iterator[None]:
    """Inside the block, layers ``0..first-1`` of ``model`` are identities."""
    layers = decoder_layer_list(model)
    if not 0 <= first <= len(layers):
        raise ValueError(f"first layer {first} out of range 0..{len(layers)}")
    saved = [layers[i] for i in range(first)]
    try:
        for i in range(first):
            layers[i] = _Skip()
        yield
    finally:
        for i, layer in enumerate(saved):
            layers[i] = layer


def hidden_inputs(model, batch: RowBatch) -> tuple[Float[Tensor, "batch keep vocab"], list[Float[Tensor, "batch pos d"]]]:
    """One full forward: trailing logits and the input hidden states of every layer."""
    out = run_batch(model, batch, output_hidden_states=True)
    n_layers = len(decoder_layer_list(model.hf))
    return out.logits, [h.detach() for h in out.hidden_states[:n_layers]]


def logits_from_layer(
    model, batch: RowBatch, layer: int, hidden: Float[Tensor, "batch pos d"]
) -> Float[Tensor, "batch keep vocab"]:
    """Trailing logits of ``batch`` computed from ``hidden``, the cached input of ``layer``."""
    with torch.no_grad(), skipping_layers(model.hf, layer):
        out = model.hf(
            inputs_embeds=hidden,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=batch.keep,
            use_cache=False,
        )
    return out.logits
