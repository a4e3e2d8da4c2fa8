"""Per-head outputs of one prompt with and without its image.

Context:
    :func:`image_head_outputs` runs one prompt twice, with its image and without it (text only,
    through the same template), and returns every layer's per-head outputs before the output
    projection at one position: by default the last token, where the first answer token is
    predicted (what VHD-style analyses compare).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from probe.capture.api import capture
from probe.capture.config import CaptureConfig
from probe.capture.inputs import InputError
from probe.models.vlm_inputs import ImageLike


@dataclass(frozen=True)
class ImageHeadOutputs:
    """Per-head outputs (before the output projection) of one prompt with and without its image.

    Attributes:
        with_image, without_image: ``[layer, head, d_head]`` at ``position`` of each run.
        position: the token position read (negative: from the end).
        layers: the layers, in the order of the first axis.
    """

    with_image: Float[Tensor, "layer head d_head"]
    without_image: Float[Tensor, "layer head d_head"]
    position: int
    layers: tuple[int, ...]


def image_head_outputs(model, prompt: str, image: ImageLike, *, position: int = -1,
                       layers: tuple[int, ...] | None = None) -> ImageHeadOutputs:
    """Every head's output at ``position`` for ``prompt`` with ``image``, and for ``prompt`` alone.

    Args:
        model: a vision-language :class:`~probe.models.LoadedModel`.
        prompt: one prompt (its image placeholder, if any, is inserted; see
            :func:`probe.models.vlm_inputs.prompt_text`).
        image: a file path or PIL image.
        position: token position in each run (default -1: the last prompt token, where the
            first generated token is predicted).
        layers: layers to read (None: all).

    Raises:
        InputError: as :func:`probe.capture.capture` with images, and for ``image=None``.
    """
    if image is None:
        raise InputError("image_head_outputs compares a prompt with and without its image; pass an image")
    config = CaptureConfig(layers=layers, received=False, entropy=False, distance=False, first_token=False,
                           head_output_positions=(position,))
    seen = capture(model, [prompt], config, images=[image])
    blind = capture(model, [prompt], config, images=[None])
    return ImageHeadOutputs(with_image=_stacked(seen.head_outputs), without_image=_stacked(blind.head_outputs),
                            position=position, layers=tuple(sorted(seen.head_outputs)))


def _stacked(head_outputs: dict[int, Tensor]) -> Tensor:
    """``layer -> [1, 1, head, d]`` as ``[layer, head, d]`` in layer order."""
    return torch.stack([head_outputs[layer][0, 0] for layer in sorted(head_outputs)])
