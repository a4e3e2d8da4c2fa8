"""Vision-aware head divergence (VHD) over a prompt set: per head, T-VHD, outliers, ranking.

Context:
    He et al., "Cracking the Code of Hallucination in LVLMs with Vision-aware Head Divergence"
    (ACL 2025, arXiv 2412.13949; methods dossier section b). Eq. 4:
    ``VHD_{l,i} = ||A_{l,i}(y_t | y_<t, x_V, x_T) - A_{l,i}(y_t | y_<t, x_T)||_2``, the distance
    between head ``i`` of layer ``l``'s output (before ``W_O``) with the image and without it, at
    the first generated step ``t = 0`` (the last prompt position). Eq. 5: ``T-VHD`` sums each
    layer's top-``k`` VHD. Eq. 6 zeroes the VHD of heads whose VHD and text-only squared norm
    ``TA`` both exceed their layer's mean + std (heads that surge when the image is removed).

    :func:`prompt_set_vhd` measures VHD through :func:`circuits.vision.lockstep.lockstep_heads`
    (both streams in one forward, as Algorithm 1 runs them; without reinforcement the lockstep
    and two separate runs agree, which ``tests/vision/test_vhd.py`` checks) and averages it over
    prompts (the mean of per-prompt VHD). :func:`head_ranking`, :func:`per_layer_view` and
    :func:`vhd_heatmap` give the ranking and the layers x heads view.

Choices the paper leaves open:
    - ``k`` of T-VHD is not given; :data:`DEFAULT_TOP_K` = 3, a third of a SmolLM2 layer's 9
      heads (the heavy tail: a few heads per layer carry most of the divergence).
    - The outlier rule runs per prompt (each prompt's heads of one layer), as VHR applies it;
      :class:`PromptSetVHD` also gives the rule applied to the prompt-set means.

Deviation:
    VHD is measured at the first generated step only (the last prompt position). The paper's
    T-VHD analysis scores each object word of a caption at the step that generates it (with the
    caption so far in both streams); here T-VHD is read at ``t = 0``, which for a yes/no question
    is the step that answers it (``benchmarks/vision_vhd.py`` compares hallucinated and correct
    answers that way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuits.vision.lockstep import LockstepHeads, lockstep_heads, outlier_mask
from probe.models.vlm_inputs import ImageLike

DEFAULT_TOP_K = 3
"""Heads per layer summed by T-VHD (Eq. 5; the paper does not give k)."""


@dataclass(frozen=True)
class PromptSetVHD:
    """VHD of every head over a prompt set.

    Attributes:
        per_prompt: each prompt's VHD (Eq. 4).
        text_norm_sq: each prompt's TA (Eq. 6).
    """

    per_prompt: Float[Tensor, "prompt layer head"]
    text_norm_sq: Float[Tensor, "prompt layer head"]

    @property
    def count(self) -> int:
        return self.per_prompt.shape[0]

    @property
    def mean(self) -> Float[Tensor, "layer head"]:
        """The mean of per-prompt VHD."""
        return self.per_prompt.mean(0)

    @property
    def outliers(self) -> Bool[Tensor, "prompt layer head"]:
        """Eq. 6 per prompt."""
        return outlier_mask(self.per_prompt, self.text_norm_sq)

    @property
    def outlier_rate(self) -> Float[Tensor, "layer head"]:
        """The share of prompts where each head is an Eq. 6 outlier."""
        return self.outliers.float().mean(0)

    @property
    def mean_outliers(self) -> Bool[Tensor, "layer head"]:
        """Eq. 6 on the prompt-set means of VHD and TA."""
        return outlier_mask(self.mean, self.text_norm_sq.mean(0))

    @property
    def cleaned_mean(self) -> Float[Tensor, "layer head"]:
        """The mean of per-prompt VHD with each prompt's outliers zeroed (what VHR ranks)."""
        return self.per_prompt.masked_fill(self.outliers, 0.0).mean(0)


def prompt_set_vhd(model, prompts: Sequence[str], images: Sequence[ImageLike], batch_size: int = 8) -> PromptSetVHD:
    """VHD of every head for each (prompt, image) pair, ``batch_size`` pairs per lockstep forward."""
    parts: list[LockstepHeads] = []
    for start in range(0, len(prompts), batch_size):
        with torch.no_grad():
            parts.append(lockstep_heads(model, prompts[start:start + batch_size], images[start:start + batch_size]))
    return PromptSetVHD(per_prompt=torch.cat([p.vhd for p in parts]),
                        text_norm_sq=torch.cat([p.text_norm_sq for p in parts]))


def total_vhd(vhd: Float[Tensor, "*batch layer head"], top_k: int = DEFAULT_TOP_K) -> Float[Tensor, "*batch"]:
    """T-VHD (Eq. 5): the sum over layers of each layer's ``top_k`` largest VHD."""
    if not 1 <= top_k <= vhd.shape[-1]:
        raise ValueError(f"top_k must be 1..{vhd.shape[-1]} (the heads of a layer), got {top_k}")
    return vhd.topk(top_k, dim=-1).values.sum((-1, -2))


@dataclass(frozen=True)
class RankedHead:
    """One head of the ranking: where it is and its mean VHD."""

    layer: int
    head: int
    vhd: float


def head_ranking(vhd: Float[Tensor, "layer head"]) -> list[RankedHead]:
    """Every head, largest VHD first (ties: lower layer, then lower head, first)."""
    flat = vhd.flatten()
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    n_heads = vhd.shape[1]
    return [RankedHead(i // n_heads, i % n_heads, float(flat[i])) for i in order]


def per_layer_view(vhd: Float[Tensor, "layer head"]) -> dict:
    """The layers x heads array and per-layer summaries, as plain lists (for JSON and dashboards)."""
    return {
        "vhd": vhd.tolist(),
        "layer_mean": vhd.mean(1).tolist(),
        "layer_max": vhd.max(1).values.tolist(),
        "layer_top_head": vhd.argmax(1).tolist(),
    }


def vhd_heatmap(vhd: Float[Tensor, "layer head"], title: str = "Vision-aware head divergence",
                mask: Bool[Tensor, "layer head"] | None = None):
    """A plotly heatmap of VHD, layers down and heads across; ``mask`` (Eq. 6 outliers, say) is
    marked with an x over the cell. Returns a ``plotly.graph_objects.Figure``."""
    import plotly.graph_objects as go

    layers, heads = vhd.shape
    figure = go.Figure(go.Heatmap(z=vhd.tolist(), x=list(range(heads)), y=list(range(layers)), colorscale="Viridis",
                                  colorbar={"title": "VHD"},
                                  hovertemplate="layer %{y}, head %{x}<br>VHD %{z:.3f}<extra></extra>"))
    if mask is not None and bool(mask.any()):
        cells = mask.nonzero().tolist()
        figure.add_trace(go.Scatter(x=[h for _, h in cells], y=[l for l, _ in cells], mode="markers",
                                    marker={"symbol": "x", "color": "white", "size": 8}, name="outlier (Eq. 6)"))
    figure.update_layout(title=title, xaxis_title="head", yaxis_title="layer", yaxis={"autorange": "reversed"})
    return figure
