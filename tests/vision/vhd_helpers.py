"""By-hand references for the VHD/VHR tests: eager attention with chosen heads scaled per row,
and each head's output before the output projection read one prompt at a time."""

from __future__ import annotations

import torch

from probe.attention.hf import attention_modules
from probe.models.families import family_of
from tests.vision.manual_attention import eager_scores, manual_attention

PROMPTS = ["What is on the table in this picture?", "Describe it."]


def eager_scaling(layer_of: dict[int, int], scales: dict[int, torch.Tensor]):
    """Eager attention written out; at layer ``l`` the output of head ``h`` in row ``r`` is
    multiplied by ``scales[l][r, h]`` (every query position)."""

    def attend(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
        scores, value = eager_scores(query, key, value, attention_mask, scaling)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        output = probs @ value  # (B, H, T, d)
        layer = layer_of.get(id(module))
        if layer in scales:
            output = output * scales[layer][:, :, None, None].to(output)
        return output.transpose(1, 2).contiguous(), probs

    return attend


def scaled_attention(model, scales: dict[int, torch.Tensor]):
    """``model`` runs :func:`eager_scaling` inside the block."""
    return manual_attention(model, eager_scaling(attention_modules(model.hf), scales))


def last_head_outputs(model, batch_inputs: dict, scales: dict[int, torch.Tensor]) -> torch.Tensor:
    """``[layer, head, d_head]`` head outputs at the last position of a one-row forward, read
    at each output projection, under :func:`eager_scaling` with ``scales``."""
    geometry = family_of(model.hf).geometry(model.hf)
    seen: dict[int, torch.Tensor] = {}
    handles = [proj.register_forward_pre_hook(
        lambda module, args, layer=layer: seen.__setitem__(layer, args[0][0, -1].view(geometry.n_heads, -1)))
        for layer, proj in enumerate(family_of(model.hf).output_projections(model.hf))]
    try:
        with torch.no_grad(), scaled_attention(model, scales):
            model.hf(**batch_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([seen[layer].float() for layer in range(geometry.n_layers)])
