"""Short per-layer summaries of a record: first-token share and the strongest non-initial sinks.

Definitions (documented choices):
    first-token share of a layer: mean over heads and over queries after the first token of the
        attention paid to the first token (the gated-attention paper's F-Attn; query 0 is left
        out because its value is trivially 1).
    non-initial sink score of a key: ACT's ``received_mean`` (mean attention from the queries
        that can see it), maximised over heads; keys seen by fewer than ``min_visible`` queries
        are skipped, since their mean rests on a handful of rows.
    image summary of a prompt (captures with images): its image-token count and span, and per
        layer the mean over heads and valid queries of ``span_mass`` (the attention paid to the
        image), where it was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probe.capture.record import AttentionRecord


@dataclass(frozen=True)
class Sink:
    position: int
    token: str
    score: float
    head: int


@dataclass(frozen=True)
class LayerSummary:
    layer: int
    first_token_share: float
    sinks: tuple[Sink, ...]


def first_token_share(record: AttentionRecord, layer: int, prompt: int = 0) -> torch.Tensor:
    """``[head]`` mean attention to the first token over queries 1.. of one prompt."""
    values = record.stat(layer, "first_token", prompt)[:, 1:]
    return values.nanmean(dim=-1) if values.shape[-1] else torch.full((values.shape[0],), float("nan"))


def top_sinks(record: AttentionRecord, layer: int, prompt: int = 0, top: int = 3, min_visible: int = 4) -> list[Sink]:
    """The ``top`` non-initial keys with the highest ACT score in any head."""
    score = record.stat(layer, "received_mean", prompt)  # [head, key]
    visible = record.stat(layer, "visible_count", prompt)  # [key]
    best, head = score.max(dim=0)
    best = best.masked_fill(visible < min_visible, -1.0)
    best[0] = -1.0
    order = torch.argsort(best, descending=True)[:top]
    tokens = record.tokens[prompt]
    return [Sink(int(i), tokens[int(i)], float(best[i]), int(head[i])) for i in order if best[i] > 0]


def layer_summaries(record: AttentionRecord, prompt: int = 0, top: int = 3) -> list[LayerSummary]:
    return [
        LayerSummary(
            layer=layer,
            first_token_share=float(first_token_share(record, layer, prompt).nanmean()),
            sinks=tuple(top_sinks(record, layer, prompt, top)),
        )
        for layer in record.layers
    ]


def image_mass(record: AttentionRecord, layer: int, prompt: int = 0) -> torch.Tensor:
    """``[head]`` mean attention to the image tokens over the prompt's queries (``span_mass``)."""
    return record.stat(layer, "span_mass", prompt).nanmean(dim=-1)


def image_summary(record: AttentionRecord, prompt: int = 0) -> str:
    """One line on a prompt's image tokens and, with ``span_mass``, the image mass per layer."""
    positions = record.image_positions(prompt)
    if not positions:
        return f"prompt {prompt}: no image tokens"
    line = f"prompt {prompt}: {len(positions)} image tokens at positions {positions[0]}-{positions[-1]}"
    masses = [(layer, float(image_mass(record, layer, prompt).mean())) for layer in record.layers
              if "span_mass" in record.stats[layer]]
    if masses:
        line += "; mean attention to the image: " + ", ".join(f"layer {layer} {mass:.3f}" for layer, mass in masses)
    return line
