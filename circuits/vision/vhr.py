"""Vision-aware head reinforcement (VHR; He et al., ACL 2025, Eq. 7 and Algorithm 1).

Context:
    At each reinforced layer, VHR scales by ``alpha`` the heads whose VHD (Eq. 6 outliers zeroed)
    is above the layer's median. The heads are chosen once per input, at the first generated
    step, in a two-stream pass where earlier layers are already reinforced
    (:func:`circuits.vision.lockstep.lockstep_heads`), and kept for every later step.

    Here the choice becomes ordinary edits: :func:`vhr_edits` runs the lockstep pass over a batch
    and returns one :class:`probe.edits.ScaleHeads` per (row, reinforced layer) with that row's
    heads (``prompts=(row,)``), to apply with :func:`probe.edits.apply_edits` around a
    ``generate`` over the *same* rows in the same order (:func:`generate_with_vhr`). The edit
    scales every query position, so the prefill of generation is the lockstep pass's image
    stream (equal logits: ``tests/vision/test_vhr.py``) and each decode step scales the same heads.

    ``vhr-random`` (:func:`random_edits`) is the control: in each reinforced layer as many heads
    as VHR chose for that input, drawn at random (seeded by the prompt and image, so an item gets
    the same heads in any batch).

Choices:
    - Layers (:func:`paper_layers`): the paper reinforces "the second and last 14 layers" of
      32-layer LLaMA models, i.e. layer 1 and layers 18..31. For ``n`` layers: layer 1 and the
      last ``round(14 * n / 32)`` (SmolLM2's 30 layers: 1 and 17..29, 14 layers).
    - Both streams are scaled in the lockstep pass (the text-only stream too), as Algorithm 1
      reinforces the layer's output before the next layer compares them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Bool
from torch import Tensor

from circuits.vision.lockstep import Reinforcement, lockstep_heads
from probe.edits import ScaleHeads, apply_edits
from probe.models.vlm_inputs import ImageLike, generate_answers

PAPER_LAYERS, PAPER_LAST = 32, 14


def paper_layers(n_layers: int) -> tuple[int, ...]:
    """Layer 1 and the last ``round(14 * n_layers / 32)`` layers (the paper's choice, scaled)."""
    last = max(1, round(PAPER_LAST * n_layers / PAPER_LAYERS))
    return tuple(sorted({min(1, n_layers - 1), *range(n_layers - last, n_layers)}))


@dataclass(frozen=True)
class VHRConfig:
    """VHR's settings.

    Attributes:
        alpha: scale of the selected heads (the paper's 2).
        layers: reinforced layers (None: :func:`paper_layers` of the model).
        outliers: apply Eq. 6 before the median rule (the paper does; its ablation without it
            is worse).
        random_seed: seed of the ``vhr-random`` control.
    """

    alpha: float = 2.0
    layers: tuple[int, ...] | None = None
    outliers: bool = True
    random_seed: int = 0

    def reinforcement(self, n_layers: int) -> Reinforcement:
        layers = self.layers if self.layers is not None else paper_layers(n_layers)
        return Reinforcement(layers=tuple(l % n_layers for l in layers), alpha=self.alpha, outliers=self.outliers)


def vhr_selection(model, prompts: Sequence[str], images: Sequence[ImageLike],
                  config: VHRConfig = VHRConfig()) -> Bool[Tensor, "item layer head"]:
    """The heads VHR reinforces for each (prompt, image), chosen in the lockstep pass."""
    n_layers = model.geometry.n_layers
    with torch.no_grad():
        return lockstep_heads(model, prompts, images, config.reinforcement(n_layers)).selected


def selection_edits(selected: Bool[Tensor, "item layer head"], alpha: float) -> list[ScaleHeads]:
    """One :class:`ScaleHeads` per (row, layer) with heads: row ``r`` of the batch gets its own."""
    edits = []
    for row, layer in (selected.any(-1)).nonzero().tolist():
        heads = selected[row, layer].nonzero().flatten().tolist()
        edits.append(ScaleHeads(alpha, layers=(layer,), heads=heads, prompts=(row,)))
    return edits


def vhr_edits(model, prompts: Sequence[str], images: Sequence[ImageLike],
              config: VHRConfig = VHRConfig()) -> list[ScaleHeads]:
    """VHR's edits for a batch whose row ``r`` is ``(prompts[r], images[r])``."""
    return selection_edits(vhr_selection(model, prompts, images, config), config.alpha)


def random_selection(selected: Bool[Tensor, "item layer head"], keys: Sequence[int], seed: int = 0) -> Tensor:
    """As many heads per (item, layer) as ``selected`` holds, drawn at random; item ``i`` draws
    from a generator seeded by ``(seed, keys[i], layer)``."""
    out = torch.zeros_like(selected)
    counts = selected.sum(-1)
    for item, layer in (counts > 0).nonzero().tolist():
        generator = torch.Generator().manual_seed(hash((seed, keys[item], layer)) % (2 ** 63))
        heads = torch.randperm(selected.shape[-1], generator=generator)[: int(counts[item, layer])]
        out[item, layer, heads] = True
    return out


def item_key(prompt: str, image: ImageLike) -> int:
    """A stable key of one (prompt, image): crc32 of the prompt and the image's pixels (or path)."""
    data = prompt.encode()
    data += image.tobytes() if hasattr(image, "tobytes") else str(image).encode()
    return zlib.crc32(data)


def random_edits(model, prompts: Sequence[str], images: Sequence[ImageLike],
                 config: VHRConfig = VHRConfig()) -> list[ScaleHeads]:
    """The ``vhr-random`` control's edits: VHR's head counts, random heads."""
    selected = vhr_selection(model, prompts, images, config)
    keys = [item_key(p, i) for p, i in zip(prompts, images)]
    return selection_edits(random_selection(selected, keys, config.random_seed), config.alpha)


def generate_with_vhr(model, prompts: Sequence[str], images: Sequence[ImageLike], *, max_new_tokens: int = 16,
                      batch_size: int = 8, config: VHRConfig = VHRConfig(), control: bool = False) -> list[str]:
    """Greedy answers under VHR (``control``: under ``vhr-random``), heads chosen per batch."""
    build = random_edits if control else vhr_edits
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk, pictures = list(prompts[start:start + batch_size]), list(images[start:start + batch_size])
        with apply_edits(model, build(model, chunk, pictures, config)):
            answers += generate_answers(model, chunk, pictures, max_new_tokens=max_new_tokens, batch_size=len(chunk))
    return answers


@dataclass(frozen=True)
class VHRCondition:
    """A ``vhr``/``vhr-random`` evaluation condition: per batch, the edits of its inputs
    (:class:`circuits.hallucination.conditions.PerInputEdits`' ``select``)."""

    model: object
    config: VHRConfig = field(default_factory=VHRConfig)
    control: bool = False

    def __call__(self, prompts: Sequence[str], images: Sequence[ImageLike]) -> list[ScaleHeads]:
        build = random_edits if self.control else vhr_edits
        return build(self.model, list(prompts), list(images), self.config)
