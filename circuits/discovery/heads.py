"""Per-head outputs at the output projection's input: read them, replace them, differentiate them.

Context:
    In every HF decoder we support (Llama, Qwen2, Gemma-3, GPT-2) the attention heads' outputs
    ``z_h = softmax(q k^T) v`` are concatenated into ``[batch, pos, heads * head_dim]`` right
    before the output projection (``o_proj``, GPT-2's ``c_proj``), which sums each head's
    ``z_h W_O^h`` into the residual stream. A forward *pre*-hook on that projection therefore
    sees every head's output as a slice ``[..., h * head_dim : (h + 1) * head_dim]`` and may
    return a replacement: this is where activation patching, mean ablation and attribution
    patching act (TransformerLens' ``hook_z``).

    On a TransformerLens ``HookedTransformer`` the same slices are ``blocks.L.attn.hook_z``
    (``[batch, pos, head, head_dim]``, flattened here to ``[batch, pos, head*head_dim]``), so every
    method runs unchanged on either kind of model.

    :func:`head_input_hooks` is the one context manager that installs such hooks (removed on exit,
    also when the block raises); :func:`forward_logits` is the forward every discovery method
    runs: it keeps the model's dtype and the autograd graph (the caller chooses ``no_grad``), and
    it gives a left-padded batch the position ids of :func:`probe.capture.hf.padded_positions`,
    as :func:`circuits.discovery.behaviour.task_behaviour` does.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Callable, Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from circuits.discovery.contrast import ContrastSet
from probe.capture.hf import padded_positions
from probe.models.families import family_of

# layer, concatenated head outputs [batch, pos, heads*head_dim] -> replacement (or None: keep)
HeadInputFn = Callable[[int, Float[Tensor, "batch pos hd"]], Tensor | None]


@contextlib.contextmanager
def head_input_hooks(model: nn.Module, fn: HeadInputFn) -> Iterator[None]:
    """Call ``fn(layer, x)`` on each layer's output-projection input ``x`` (``[batch, pos,
    heads*head_dim]``) inside the block; a tensor it returns replaces ``x``."""

    def make(layer: int):
        def hook(module, args):
            out = fn(layer, args[0])
            return None if out is None else (out, *args[1:])

        return hook

    if is_lens(model):
        with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", _z_hook(layer, fn))
                                    for layer in range(model.cfg.n_layers)]):
            yield
        return
    handles = [proj.register_forward_pre_hook(make(layer))
               for layer, proj in enumerate(family_of(model).output_projections(model))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _z_hook(layer: int, fn: HeadInputFn):
    def hook(z: Tensor, hook) -> Tensor:
        batch, pos, heads, head_dim = z.shape
        flat = z.reshape(batch, pos, heads * head_dim)
        out = fn(layer, flat)
        # the flat view goes on even when kept, so what ``fn`` saw is in the autograd graph
        return (flat if out is None else out).reshape(batch, pos, heads, head_dim)

    return hook


def is_lens(model: nn.Module) -> bool:
    """Whether ``model`` is a TransformerLens ``HookedTransformer``."""
    return hasattr(model, "hooks") and hasattr(model, "cfg") and hasattr(model, "blocks")


def head_geometry(model: nn.Module) -> tuple[int, int, int]:
    """``(layers, heads, head_dim)`` of an HF model or a ``HookedTransformer``."""
    if is_lens(model):
        return model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head
    geometry = family_of(model).geometry(model)
    return geometry.n_layers, geometry.n_heads, geometry.head_dim


def input_embedding(model: nn.Module) -> nn.Module:
    """The module mapping token ids to the first residual stream's token part."""
    return model.embed if is_lens(model) else model.get_input_embeddings()


def vocabulary_size(model: nn.Module) -> int:
    return model.cfg.d_vocab if is_lens(model) else model.get_input_embeddings().num_embeddings


def forward_logits(model: nn.Module, ids: Int[Tensor, "batch pos"],
                   mask: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch vocab"]:
    """Next-token logits at the last position of each left-padded row, in the model's dtype,
    with gradients where the caller has them on."""
    device = next(model.parameters()).device
    if is_lens(model):  # left padding: TransformerLens offsets positions from the mask itself
        return model(ids.to(device), attention_mask=mask.to(device))[:, -1]
    params = inspect.signature(model.forward).parameters
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    if "position_ids" in params:
        extra["position_ids"] = padded_positions(mask).to(device)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **extra)
    return out.logits[:, -1]


def logit_diff(logits: Float[Tensor, "batch vocab"], answer: Int[Tensor, " batch"],
               contrast: Int[Tensor, " batch"]) -> Float[Tensor, " batch"]:
    """``logit(answer) - logit(contrast)`` per row."""
    rows = torch.arange(len(logits), device=logits.device)
    return logits[rows, answer.to(logits.device)] - logits[rows, contrast.to(logits.device)]


def record_head_inputs(model: nn.Module, ids: Int[Tensor, "batch pos"],
                       mask: Int[Tensor, "batch pos"]) -> tuple[list[Tensor], Float[Tensor, "batch vocab"]]:
    """Each layer's output-projection input ``[batch, pos, heads*head_dim]`` (detached) and the
    last-position logits of one gradient-free forward."""
    store: list[Tensor] = []

    def keep(layer: int, x: Tensor) -> None:
        store.append(x.detach())

    with torch.no_grad(), head_input_hooks(model, keep):
        logits = forward_logits(model, ids, mask)
    return store, logits


def clean_head_means(hf: nn.Module, contrast: ContrastSet, batch_size: int = 8) -> list[Float[Tensor, "pos hd"]]:
    """Per layer, each column's output-projection input averaged over the clean items with a token
    there (columns of padding only get zeros): what mean ablation puts in place of a head's output."""
    sums: list[Tensor] = []
    for first in range(0, len(contrast), batch_size):
        rows = slice(first, first + batch_size)
        inputs, _ = record_head_inputs(hf, contrast.clean[rows], contrast.attention_mask[rows])
        weight = contrast.attention_mask[rows].to(inputs[0].device, inputs[0].dtype)[:, :, None]
        batch_sums = [(x * weight).sum(0) for x in inputs]
        sums = batch_sums if not sums else [a + b for a, b in zip(sums, batch_sums)]
    count = contrast.attention_mask.sum(0).clamp_min(1).to(sums[0].device, sums[0].dtype)[:, None]
    return [s / count for s in sums]
