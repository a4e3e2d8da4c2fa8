"""The two-stream pass of VHD/VHR: each prompt with and without its image, layer by layer in lockstep.

Context:
    He et al. (ACL 2025, "Vision-aware Head Divergence", Algorithm 1) run the image stream and
    the text-only stream through the decoder together: at each layer they compare every head's
    output (before ``W_O``) at the current position across the two streams, and at a reinforced
    layer they pick and scale heads *before* the layer's output projection, so every later layer
    of both streams sees the reinforcement.

    :func:`lockstep_heads` does exactly that in one forward: the batch holds the ``n`` image
    prompts in rows ``0..n-1`` and the same prompts without their image (the image placeholder
    left out, through the same chat template) in rows ``n..2n-1``, left-padded, with position ids
    that start at each row's first real token (:func:`probe.capture.hf.run_forward`), so padding
    does not change a row. A forward pre-hook on each language-model layer's output projection
    reads both streams' head outputs at the last position (the one that predicts the first
    generated token), computes VHD and the text-only squared norm TA, and at a reinforced layer
    applies :func:`select_heads`'s choice to both streams at every position (the heads' outputs are
    scaled wherever the edit of generation scales them: every query position of the prefill).

Intuition:
    Running both streams in one batch *is* the lockstep of Algorithm 1: layer ``l`` of both
    streams runs after layer ``l-1`` of both, with the reinforcement of earlier layers in place.
    Nothing else couples the rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probe.capture.hf import run_forward
from probe.models.families import family_of
from probe.models.vlm_inputs import ImageLike, vision_inputs


@dataclass(frozen=True)
class Reinforcement:
    """VHR's edit inside the lockstep pass (Eq. 6 and 7).

    Attributes:
        layers: layers whose heads are selected and scaled.
        alpha: the scale of the selected heads (the paper's 2).
        outliers: apply Eq. 6 (zero VHD of heads whose VHD and TA both exceed the layer's
            mean + std) before the median rule.
    """

    layers: tuple[int, ...]
    alpha: float = 2.0
    outliers: bool = True


@dataclass(frozen=True)
class LockstepHeads:
    """What one lockstep pass measured, per prompt.

    Attributes:
        vhd: ``||A(image) - A(text only)||_2`` of every head at the last prompt position.
        text_norm_sq: TA, ``||A(text only)||^2`` at the same position.
        selected: the heads VHR scaled (all False outside reinforced layers, or without VHR).
        image_logits: the image stream's next-token logits at the last position (under the
            reinforcement, when there is one: the first generated token of VHR).
    """

    vhd: Float[Tensor, "item layer head"]
    text_norm_sq: Float[Tensor, "item layer head"]
    selected: Bool[Tensor, "item layer head"]
    image_logits: Float[Tensor, "item vocab"]


def outlier_mask(vhd: Float[Tensor, "*batch head"],
                 text_norm_sq: Float[Tensor, "*batch head"]) -> Bool[Tensor, "*batch head"]:
    """Eq. 6: heads whose VHD and TA both exceed their layer's mean + one standard deviation.

    The statistics run over the last axis (the heads of one layer); the standard deviation is
    torch's default, the unbiased one (the paper does not say which).
    """
    return _above_mean_std(vhd) & _above_mean_std(text_norm_sq)


def _above_mean_std(values: Tensor) -> Tensor:
    return values > values.mean(-1, keepdim=True) + values.std(-1, keepdim=True)


def select_heads(vhd: Float[Tensor, "*batch head"], text_norm_sq: Float[Tensor, "*batch head"],
                 outliers: bool = True) -> Bool[Tensor, "*batch head"]:
    """Eq. 7's ``H_l``: heads whose VHD (outliers zeroed first, Eq. 6) is above the layer's median.

    The median interpolates between the two middle heads when a layer has an even number.
    """
    if outliers:
        vhd = vhd.masked_fill(outlier_mask(vhd, text_norm_sq), 0.0)
    return vhd > vhd.float().quantile(0.5, dim=-1, keepdim=True).to(vhd.dtype)


@dataclass
class _Probe:
    """State the output-projection hooks share during one lockstep forward."""

    items: int
    n_heads: int
    reinforcement: Reinforcement | None
    vhd: dict[int, Tensor]
    text_norm_sq: dict[int, Tensor]
    selected: dict[int, Tensor]

    def hook(self, layer: int):
        def pre_hook(module, args):
            (hidden,) = args[:1]
            heads = hidden.view(*hidden.shape[:-1], self.n_heads, -1)  # (B, T, H, d)
            last = heads[:, -1].float()  # (B, H, d): left padding puts every row's last token last
            image, text = last[: self.items], last[self.items:]
            vhd, ta = (image - text).norm(dim=-1), text.pow(2).sum(-1)
            self.vhd[layer], self.text_norm_sq[layer] = vhd, ta
            if self.reinforcement is None or layer not in self.reinforcement.layers:
                return None
            chosen = select_heads(vhd, ta, self.reinforcement.outliers)  # (n, H)
            self.selected[layer] = chosen
            factor = torch.where(chosen, self.reinforcement.alpha, 1.0).repeat(2, 1)  # both streams
            scaled = heads * factor[:, None, :, None].to(heads.dtype)
            return (scaled.reshape(hidden.shape), *args[1:])

        return pre_hook


@contextlib.contextmanager
def _hooked(model, probe: _Probe) -> Iterator[None]:
    projections = family_of(model.hf).output_projections(model.hf)
    handles = [proj.register_forward_pre_hook(probe.hook(layer)) for layer, proj in enumerate(projections)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def lockstep_heads(model, prompts: Sequence[str], images: Sequence[ImageLike],
                   reinforcement: Reinforcement | None = None) -> LockstepHeads:
    """Every head's VHD at the last prompt position, each prompt with and without its image, in
    one two-stream forward (see the module docstring); with ``reinforcement``, VHR's selection
    and scaling at its layers, seen by every later layer.

    Args:
        model: a vision-language :class:`~probe.models.LoadedModel`.
        prompts: the prompts (their image placeholder, if any, is inserted).
        images: one image per prompt (a path or PIL image; not None).

    Raises:
        InputError: as :func:`probe.models.vlm_inputs.vision_inputs`; an image that is None.
    """
    from probe.errors import InputError

    prompts, images = list(prompts), list(images)
    if any(image is None for image in images):
        raise InputError("VHD compares each prompt with and without its image; give an image for every prompt")
    batch = vision_inputs(model, prompts + prompts, images + [None] * len(images))
    geometry = family_of(model.hf).geometry(model.hf)
    probe = _Probe(len(prompts), geometry.n_heads, reinforcement, {}, {}, {})
    extra = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "attention_mask")}
    with _hooked(model, probe):
        logits = run_forward(model.hf, batch.input_ids, batch.attention_mask, extra)
    layers = range(geometry.n_layers)
    none = torch.zeros(len(prompts), geometry.n_heads, dtype=torch.bool)
    return LockstepHeads(
        vhd=torch.stack([probe.vhd[l].cpu() for l in layers], 1),
        text_norm_sq=torch.stack([probe.text_norm_sq[l].cpu() for l in layers], 1),
        selected=torch.stack([probe.selected.get(l, none).cpu() for l in layers], 1),
        image_logits=logits[: len(prompts)],
    )
