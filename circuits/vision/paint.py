"""PAINT: boost the informed visual tokens the vision tower's attention picks (Arif et al.).

Context:
    "Fixing Imbalanced Attention to Mitigate In-Context Hallucination of LVLM" (arXiv 2501.12206,
    later "PAINT: Paying Attention to INformed Tokens"), as its released code does it
    (``hasanar1f/PAINT``, ``modPAI/llava/model/multimodal_encoder/clip_encoder.py:
    update_modpai_alpha`` and ``modPAI/attention.py``; methods.md section f):

    1. **Token selection in the vision tower** (:func:`paint_tokens`), per image, from the CLS
       query's attention to the patches summed over heads (CLIP run with ``output_attentions``,
       eager):
       - *summary tokens*: the outlier patches, ``> Q3 + 1.5 IQR`` (linear quantiles, as
         ``np.percentile``), in the tower layer whose features the language model reads;
       - *local tokens*: the top ``25%`` of patches (``int(n * 0.25)``) in tower layer 0, minus
         the summary tokens.
    2. **The edit** (:func:`paint_edits`): in decoder layers ``2..end``, all heads, at each
       prompt's last query row only, the pre-softmax logits ``z`` of local tokens become
       ``z + 0.7 |z|`` and of summary tokens ``z + 0.3 |z|``, at the prefill and at every decode
       step (:class:`probe.edits.BoostKeys` on :class:`probe.edits.ImagePatches`).

    Patch ``i`` (raster order, CLS dropped) is image token ``i`` of its prompt under LLaVA's
    ``default`` feature selection (``full`` keeps CLS first: image token ``i + 1``); the edit
    finds the image tokens through the forward's token ids (the image mask), so left padding and
    the prompt around the image do not matter.

Where this follows the code, not the paper, or differs from both:
    - The v1 abstract's "attention head-specific modulation ... based on measured visual
      sensitivity of individual heads" is **not in the released code**: all heads get the same
      boost. This module follows the code (every head of every edited layer).
    - The code's summary layer is ViT layer ``-2``, which is LLaVA-1.5's
      ``mm_vision_select_layer`` (the features the LLM reads). Here the layer is the model's own
      ``config.vision_feature_layer`` (the last of a list): ``-2`` for LLaVA-1.5, ``-1`` for
      synth-llava, whose projector reads the last tower layer. A feature layer ``f`` is
      ``hidden_states[f]``, the output of attention layer ``f`` (negative) or ``f - 1``.
    - The code takes ``topk(k = number of outliers)``; here the outlier set itself (the same
      set, except for ties at the threshold).
    - The code edits scores of batch row 0's image only (batch size 1) and the call's last row
      (``[:, :, -1]``); here every prompt of a batch gets its own image's tokens, and the last
      row is each prompt's last real token (equal under left padding).
    - Layers: the code's ``--start-layer 2 --end-layer 32`` of LLaVA's 32 layers is layers 2..31;
      here ``2 .. n_layers - 1`` (2..29 on synth-llava's 30).
    - The "spatial" stream (off by default in the code, and buggy there) is not implemented.
    - PAI's image-free contrastive decoding (``--use-cfg``) is a separate option of the code and
      is not part of this edit.

Measured on synth-llava (``benchmarks/vision_paint_results``): the code's alpha 0.7 / beta 0.3
    roughly double the last query's attention mass on the image (0.13 -> 0.24 over layers 2..29)
    and break answers (held-out yes/no accuracy 1.00 -> 0.69; more "Yes" to absent partners);
    the random-token control does the same, so the effect there is the boost, not the choice.

Example:
    >>> tokens = paint_tokens(model, images)               # per image: local and summary indices
    >>> with apply_edits(model, paint_edits(tokens, model.geometry.n_layers)):
    ...     answers = generate_answers(model, prompts, images)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from probe.edits import BoostKeys, ImagePatches
from probe.edits.spec import EditError

LOCAL_RATIO = 0.25
"""Share of patches taken as local tokens (top by CLS attention in tower layer 0)."""
ALPHA = 0.7
"""Boost of local tokens' logits (the code's ``alpha``)."""
BETA = 0.3
"""Boost of summary tokens' logits (the code's ``beta``; the paper's ablation prefers 0.4)."""
START_LAYER = 2
"""First edited decoder layer (``--start-layer 2``); the edit runs to the last layer."""
IQR_FENCE = 1.5
"""Outliers lie above ``Q3 + 1.5 IQR`` (Tukey's fence)."""


@dataclass(frozen=True)
class PaintTokens:
    """PAINT's selection for a batch of images, as image-token indices of each prompt.

    Attributes:
        local: per image, the local tokens (sorted), disjoint from its summary tokens.
        summary: per image, the summary tokens (sorted).
        n_patches: patches per image.
        offset: image-token index of patch 0 (indices run ``offset .. offset + n_patches - 1``).
    """

    local: tuple[tuple[int, ...], ...]
    summary: tuple[tuple[int, ...], ...]
    n_patches: int
    offset: int = 0


@dataclass(frozen=True)
class TowerReader:
    """How a VLM family exposes what PAINT reads (one entry of :data:`TOWER_READERS`).

    Attributes:
        attentions: ``(hf_model, processor, images) -> per tower layer Float[batch, head, tok, tok]``.
        summary_layer: ``hf_model -> index`` into those attentions of the layer the LLM reads.
        first_patch: tower token of patch 0 (CLS before it, as CLIP).
        image_token_of_patch0: ``hf_model -> image-token index of patch 0`` in the LLM's input.
    """

    attentions: Callable[[nn.Module, object, Sequence], tuple[Tensor, ...]]
    summary_layer: Callable[[nn.Module], int]
    first_patch: int
    image_token_of_patch0: Callable[[nn.Module], int]


@contextlib.contextmanager
def eager_tower(tower: nn.Module):
    """``tower`` with transformers' eager attention inside the block (it returns the weights)."""
    previous = tower.config._attn_implementation
    tower.set_attn_implementation("eager")
    try:
        yield tower
    finally:
        tower.set_attn_implementation(previous)


def llava_tower_attentions(hf: nn.Module, processor, images: Sequence) -> tuple[Tensor, ...]:
    """The CLIP tower's attentions of ``images`` (LLaVA's image processor, the tower's own
    ``output_attentions``)."""
    tower = hf.model.vision_tower
    parameter = next(tower.parameters())
    pixels = processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad(), eager_tower(tower):
        out = tower(pixels.to(parameter.device, parameter.dtype), output_attentions=True)
    return tuple(out.attentions)


def llava_feature_attention_layer(hf: nn.Module) -> int:
    """The tower attention layer whose output the projector reads: ``hidden_states[f]`` is the
    output of attention layer ``f`` (``f < 0``) or ``f - 1`` (``f > 0``, 0 being the embeddings)."""
    feature = hf.config.vision_feature_layer
    feature = feature[-1] if isinstance(feature, (list, tuple)) else int(feature)
    if feature == 0:
        raise EditError("PAINT: vision_feature_layer 0 is the patch embeddings, which have no attention")
    return feature if feature < 0 else feature - 1


def llava_patch0_token(hf: nn.Module) -> int:
    """LLaVA's ``default`` strategy drops CLS (patch 0 is image token 0); ``full`` keeps it first."""
    return 1 if hf.config.vision_feature_select_strategy == "full" else 0


TOWER_READERS: dict[str, TowerReader] = {
    "llava": TowerReader(llava_tower_attentions, llava_feature_attention_layer, 1, llava_patch0_token),
}
"""``config.model_type`` -> how to read its tower's attentions and patch order (LLaVA so far)."""


def tower_reader(hf: nn.Module) -> TowerReader:
    model_type = getattr(hf.config, "model_type", None)
    if model_type not in TOWER_READERS:
        raise EditError(f"PAINT's token selection reads the vision tower of model types {sorted(TOWER_READERS)}; "
                        f"this model is {model_type!r}: register a TowerReader in circuits.vision.paint.TOWER_READERS")
    return TOWER_READERS[model_type]


def cls_to_patches(attention: Float[Tensor, "batch head tok tok"], first_patch: int = 1) -> Float[Tensor, "batch patch"]:
    """The CLS query's attention to each patch, summed over heads (PAINT's score)."""
    return attention[:, :, 0, first_patch:].float().sum(dim=1)


def outliers(scores: Float[Tensor, " patch"], fence: float = IQR_FENCE) -> Bool[Tensor, " patch"]:
    """Scores above ``Q3 + fence * IQR`` (linear-interpolated quartiles, as ``np.percentile``)."""
    q1, q3 = torch.quantile(scores.double(), torch.tensor([0.25, 0.75], dtype=torch.float64, device=scores.device))
    return scores.double() > q3 + fence * (q3 - q1)


def select_tokens(
    local_scores: Float[Tensor, "batch patch"],
    summary_scores: Float[Tensor, "batch patch"],
    local_ratio: float = LOCAL_RATIO,
    offset: int = 0,
) -> PaintTokens:
    """PAINT's two sets from CLS->patch scores: summary = outliers of ``summary_scores``; local =
    top ``int(n * local_ratio)`` of ``local_scores``, minus summary. Indices shifted by ``offset``
    (image-token index of patch 0)."""
    n = local_scores.shape[-1]
    local, summary = [], []
    for loc, summ in zip(local_scores, summary_scores):
        chosen = set(torch.nonzero(outliers(summ)).flatten().tolist())
        top = set(torch.topk(loc, int(n * local_ratio)).indices.tolist())
        summary.append(tuple(sorted(i + offset for i in chosen)))
        local.append(tuple(sorted(i + offset for i in top - chosen)))
    return PaintTokens(local=tuple(local), summary=tuple(summary), n_patches=n, offset=offset)


def paint_tokens(model, images: Sequence, local_ratio: float = LOCAL_RATIO) -> PaintTokens:
    """PAINT's local and summary tokens of each image, as image-token indices of its prompt.

    Args:
        model: a vision-language :class:`~probe.models.LoadedModel` of a family in
            :data:`TOWER_READERS` (LLaVA).
        images: PIL images, one per prompt.
        local_ratio: share of patches taken as local (before the summary ones are removed).
    """
    hf = getattr(model, "hf", model)
    reader = tower_reader(hf)
    attentions = reader.attentions(hf, model.processor, images)
    local = cls_to_patches(attentions[0], reader.first_patch)
    summary = cls_to_patches(attentions[reader.summary_layer(hf)], reader.first_patch)
    return select_tokens(local, summary, local_ratio, offset=reader.image_token_of_patch0(hf))


def paint_edits(tokens: PaintTokens, n_layers: int, alpha: float = ALPHA, beta: float = BETA,
                start_layer: int = START_LAYER) -> list[BoostKeys]:
    """The edits of one batch: local tokens boosted by ``alpha``, summary tokens by ``beta``, at
    each prompt's last query, all heads of decoder layers ``start_layer .. n_layers - 1``."""
    layers = range(min(start_layer, n_layers - 1), n_layers)
    return [BoostKeys(ImagePatches(tokens.local), alpha, layers=layers),
            BoostKeys(ImagePatches(tokens.summary), beta, layers=layers)]


def image_seed(image, seed: int = 0) -> int:
    """A seed that is a pure function of an image's pixels and ``seed`` (so a random control is
    the same for an item whatever batch it falls in)."""
    digest = hashlib.sha256(f"{seed}:{image.size}:".encode() + image.tobytes()).digest()
    return int.from_bytes(digest[:8], "little")


def random_tokens(tokens: PaintTokens, seeds: Sequence[int]) -> PaintTokens:
    """The control: per image, as many random local and summary tokens (disjoint) as PAINT chose,
    drawn uniformly from the same index range, with one seed per image."""
    local, summary = [], []
    for loc, summ, seed in zip(tokens.local, tokens.summary, seeds):
        order = np.random.default_rng(seed).permutation(tokens.n_patches) + tokens.offset
        summary.append(tuple(sorted(int(i) for i in order[: len(summ)])))
        local.append(tuple(sorted(int(i) for i in order[len(summ): len(summ) + len(loc)])))
    return PaintTokens(local=tuple(local), summary=tuple(summary), n_patches=tokens.n_patches, offset=tokens.offset)


@dataclass(frozen=True)
class PaintCondition:
    """``headscope vlm eval --edit paint`` (``random=True``: ``paint-random``): the edits of each
    batch from its images (a :class:`circuits.hallucination.conditions.PerInputEdits` selector;
    the prompts do not matter: PAINT's tokens depend on the image alone)."""

    model: object
    random: bool = False
    seed: int = 0

    def __call__(self, prompts: Sequence[str], images: Sequence) -> list[BoostKeys]:
        tokens = paint_tokens(self.model, images)
        if self.random:
            tokens = random_tokens(tokens, [image_seed(image, self.seed) for image in images])
        return paint_edits(tokens, self.model.geometry.n_layers)


def paint_condition(model):
    """Condition ``paint``: PAINT with the code's settings (alpha 0.7, beta 0.3, layers 2..end)."""
    from circuits.hallucination.conditions import PerInputEdits

    tower_reader(getattr(model, "hf", model))  # a family PAINT cannot read is refused before any batch
    return PerInputEdits(PaintCondition(model))


def paint_random_condition(model):
    """Condition ``paint-random``: the same numbers of tokens per image, chosen at random (seeded by
    the image), boosted the same way: does the choice of tokens matter?"""
    from circuits.hallucination.conditions import PerInputEdits

    tower_reader(getattr(model, "hf", model))
    return PerInputEdits(PaintCondition(model, random=True))
