"""CARVE's attention maps: per-step attention of the answer position to the image, and its contrast.

Context:
    CARVE (Ge et al., "Focusing by Contrastive Attention: Enhancing VLMs' Visual Reasoning", arXiv
    2509.06461; code ``YuyaoGe/CARVE``) asks a VLM the same image twice, once with a general instruction
    G and once with the task query Q, greedy-generates up to T tokens for each, and records at every
    step, for each layer, the head-averaged attention of the last position to the image tokens. The
    paper's decomposition ``A^Q = F_vis * F_sem`` with ``A^G ~ F_vis`` gives the contrast
    ``A_hat = A^Q / (A^G + lambda)`` (its Eq. 4.6), which suppresses what the model looks at whatever it
    is asked (salient texture, sinks) and keeps what the question adds.

    :func:`step_attention` records the maps, :func:`fuse_contrast` pairs step t of Q with step t of G
    (over the shorter of the two, as the code), reshapes each layer's contrast to the patch grid,
    resizes it bilinearly to the image (PIL's float bilinear, as the code) and sums over layers and
    steps, weighting step t by ``t + 1`` (the code's default "v4") or taking only the last step of each
    (the paper's ``t_end`` row of Table 1).

Deviations, named:
    * The code re-runs the whole sequence at every step with ``output_attentions`` and no cache; here
      ``generate`` runs with a KV cache and ``output_attentions``: the last position's attention at a
      step is the same row either way (the cache only saves recomputing the earlier rows). Eager
      attention is switched on for the call and the model's own implementation restored after.
    * Like the code, the step that emits the end-of-sequence token is recorded too.
    * Layers: the code's ``L = 20..25`` of LLaVA-1.5's 32 layers becomes the same relative depth
      (:func:`default_layers`): ``round(20 n / 32) .. round(25 n / 32)``, i.e. 19..23 for SmolLM2's 30
      layers (synth-llava).
    * The patch grid comes from a family registry (:data:`GRIDS`): LLaVA-like families take the square
      root of the image-token count (8 x 8 for synth-llava, 24 x 24 for LLaVA-1.5), Qwen2-VL its
      ``image_grid_thw`` halved by the 2 x 2 merge, as the code; the code's list of known sizes and its
      truncating fallback are not copied (a count that fits no grid is an error).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image

from probe.errors import InputError

LAMBDA = 1e-8
"""The contrast's regulariser lambda (the code's ``lam``)."""

REFERENCE_DEPTH = (20, 25, 32)
"""The code's layers 20..25 of LLaVA-1.5's 32: the relative depth :func:`default_layers` keeps."""


@dataclass(frozen=True)
class StepAttention:
    """What one greedy generation looked at.

    Attributes:
        text: the generated answer (special tokens removed, stripped).
        maps: ``[step, layer, image_token]``: the last position's attention to each image token,
            averaged over heads, for each recorded layer (not renormalised over the image tokens).
        layers: the model layers of the second axis.
        grid: ``(rows, cols)`` of the image tokens.
    """

    text: str
    maps: Float[np.ndarray, "step layer image_token"]
    layers: tuple[int, ...]
    grid: tuple[int, int]


def default_layers(n_layers: int) -> tuple[int, ...]:
    """CARVE's layers 20..25 of 32 at the same relative depth of a model of ``n_layers`` layers."""
    first, last, total = REFERENCE_DEPTH
    low = min(n_layers - 1, round(first * n_layers / total))
    high = min(n_layers - 1, max(low, round(last * n_layers / total)))
    return tuple(range(low, high + 1))


def _square_grid(model, inputs: dict, n_tokens: int) -> tuple[int, int]:
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise InputError(f"{n_tokens} image tokens do not form a square patch grid; CARVE needs the grid of the "
                         "image tokens (register the family's grid in circuits.vision.carve_maps.GRIDS)")
    return side, side


def _qwen_grid(model, inputs: dict, n_tokens: int) -> tuple[int, int]:
    _, rows, cols = (int(v) for v in inputs["image_grid_thw"][0])
    merge = getattr(getattr(model.hf.config, "vision_config", None), "spatial_merge_size", 2)
    return rows // merge, cols // merge


GRIDS: dict[str, Callable[[object, dict, int], tuple[int, int]]] = {
    "qwen2_vl": _qwen_grid, "qwen2_5_vl": _qwen_grid,
}
"""``model_type`` -> the image tokens' ``(rows, cols)``; other families: a square grid."""


def patch_grid(model, inputs: dict, n_tokens: int) -> tuple[int, int]:
    """The ``(rows, cols)`` grid of one image's ``n_tokens`` image tokens (see :data:`GRIDS`)."""
    model_type = getattr(model.hf.config, "model_type", None)
    rows, cols = GRIDS.get(model_type, _square_grid)(model, inputs, n_tokens)
    if rows * cols != n_tokens:
        raise InputError(f"the {model_type} grid {rows}x{cols} does not hold the {n_tokens} image tokens of the "
                         "prompt; CARVE reads one image per prompt")
    return rows, cols


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Eager attention (which returns its weights) inside the block; the model's own after."""
    previous = model.hf.config._attn_implementation
    if previous != "eager":
        model.hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        if previous != "eager":
            model.hf.set_attn_implementation(previous)


def step_attention(model, prompt: str, image, *, max_new_tokens: int = 32,
                   layers: Sequence[int] | None = None) -> StepAttention:
    """Greedy-generate an answer to ``prompt`` about ``image`` and record, at every step, each layer's
    head-averaged attention of the last position to the image tokens.

    Args:
        model: a vision-language :class:`~probe.models.LoadedModel`.
        prompt: the question as the model should read it (the template is added; see
            :func:`probe.models.vlm_inputs.prompt_text`).
        image: a PIL image or a file path.
        max_new_tokens: most generated tokens, i.e. most steps recorded (the code's 32).
        layers: layers recorded (None: :func:`default_layers`).
    """
    from probe.models.vlm_inputs import vision_inputs

    batch = vision_inputs(model, [prompt], [image])
    n_layers = model.hf.config.get_text_config().num_hidden_layers
    layers = tuple(default_layers(n_layers) if layers is None else layers)
    if not layers or min(layers) < 0 or max(layers) >= n_layers:
        raise InputError(f"CARVE layers {list(layers)} are not layers of this {n_layers}-layer model; pick layers "
                         f"in 0..{n_layers - 1}")
    positions = batch.image_mask[0].nonzero().squeeze(1)
    grid = patch_grid(model, batch.inputs, int(positions.numel()))
    device = next(model.hf.parameters()).device
    with eager_attention(model), torch.no_grad():
        out = model.hf.generate(**batch.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                                output_attentions=True, return_dict_in_generate=True,
                                pad_token_id=model.tokenizer.pad_token_id)
    maps = np.stack([_image_rows(step, layers, positions) for step in out.attentions])
    text = model.tokenizer.decode(out.sequences[0, batch.input_ids.shape[1]:], skip_special_tokens=True).strip()
    return StepAttention(text=text, maps=maps, layers=layers, grid=grid)


def _image_rows(step: Sequence[torch.Tensor], layers: Sequence[int], positions: torch.Tensor) -> np.ndarray:
    """``[layer, image_token]``: each layer's last-row attention to the image, averaged over heads."""
    rows = [step[layer][0, :, -1, :].float().mean(0)[positions.to(step[layer].device)] for layer in layers]
    return torch.stack(rows).cpu().numpy().astype(np.float64)


def contrast(query: Float[np.ndarray, "*shape"], general: Float[np.ndarray, "*shape"],
             lam: float = LAMBDA) -> Float[np.ndarray, "*shape"]:
    """CARVE's contrast ``A_hat = A^Q / (A^G + lambda)`` (paper Eq. 4.6), elementwise."""
    return np.asarray(query, np.float64) / (np.asarray(general, np.float64) + lam)


def grid_to_image(values: Float[np.ndarray, "token"], grid: tuple[int, int],
                  size: tuple[int, int]) -> Float[np.ndarray, "height width"]:
    """One map over the image tokens as a ``grid`` resized bilinearly to ``size = (width, height)``."""
    picture = Image.fromarray(np.asarray(values, np.float32).reshape(grid), mode="F")
    return np.asarray(picture.resize(size, Image.BILINEAR), dtype=np.float64)


STEP_MODES = ("all", "last")
"""``all``: every paired step weighted ``t + 1`` (the code's v4); ``last``: the paper's ``t_end``."""


def fuse_contrast(query: StepAttention, general: StepAttention, size: tuple[int, int], *, lam: float = LAMBDA,
                  step_mode: str = "all") -> Float[np.ndarray, "height width"]:
    """The contrast map at image resolution: per paired step and layer ``A^Q / (A^G + lambda)`` on the
    patch grid, resized to ``size = (width, height)``, summed over layers and steps (see
    :data:`STEP_MODES`)."""
    if step_mode not in STEP_MODES:
        raise InputError(f"step mode {step_mode!r} is unknown; use one of {', '.join(STEP_MODES)}")
    if query.grid != general.grid or query.layers != general.layers:
        raise InputError("the query and general maps were recorded on different grids or layers")
    steps = min(len(query.maps), len(general.maps))
    weighted = ([(t, t + 1.0) for t in range(steps)] if step_mode == "all"
                else [(-1, 1.0)])
    width, height = size
    total = np.zeros((height, width), dtype=np.float64)
    for step, weight in weighted:
        ratio = contrast(query.maps[step], general.maps[step], lam)
        total += weight * sum(grid_to_image(layer, query.grid, size) for layer in ratio)
    return total


def attention_map(record: StepAttention, size: tuple[int, int]) -> Float[np.ndarray, "height width"]:
    """The plain (uncontrasted) attention map fused the same way (every step weighted ``t + 1``):
    the baseline the contrast is compared with."""
    total = np.zeros((size[1], size[0]), dtype=np.float64)
    for t, step in enumerate(record.maps):
        total += (t + 1.0) * sum(grid_to_image(layer, record.grid, size) for layer in step)
    return total
