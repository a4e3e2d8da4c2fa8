"""Ablating a whole circuit at once: how much of the task's behaviour a set of heads carries.

Context:
    Discovery methods score heads one at a time (:mod:`circuits.discovery.patching`); a circuit is
    judged by knocking out its heads *together* (Wang et al. 2022, section 4; the methods dossier's
    faithfulness and completeness checks):

    - **necessity**: ablate the circuit's heads; a real circuit loses most of the clean-corrupted
      gap of the logit difference;
    - **faithfulness** (``keep_only=True``): ablate every head *outside* the circuit; a faithful
      circuit keeps most of the gap on its own;
    - **control**: ablate as many heads drawn at random (:func:`random_heads`, seeded); a circuit
      means something where it loses much more than a random set of its size.

    Two replacements of a head's output (the output projection's input slice, as
    :mod:`circuits.discovery.heads` reads it):

    - ``"mean"``: its mean over the clean items at each column of the left-padded set (column ``j``
      is the same distance from the end in every row; rows with padding there are left out of its
      mean), as the patching module's mean ablation; :func:`clean_head_means` computes it;
    - ``"corrupted"``: its value on the item's corrupted twin, at every position.

Result:
    :class:`CircuitAblation` holds the mean logit difference and the accuracy (the answer is the
    model's top token over the whole vocabulary) before and after, and
    ``gap_lost = (LD_clean - LD_ablated) / (LD_clean - LD_corrupted)``: 1 = the whole gap is gone,
    0 = nothing changed (the patching scores' scale).

Example:
    >>> from circuits.discovery.ablation import ablation_study
    >>> study = ablation_study(model, contrast, [(9, 6), (9, 9), (10, 0)], seed=0)
    >>> [round(a.gap_lost, 2) for a in study.rows]   # circuit, complement, random control
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.heads import (clean_head_means, forward_logits, head_geometry, head_input_hooks, logit_diff,
                                      record_head_inputs)
from circuits.discovery.patching import check_inputs
from probe.errors import InputError

Head = tuple[int, int]
MODES = ("mean", "corrupted")


@dataclass(frozen=True)
class CircuitAblation:
    """The behaviour of a model on a task before and after ablating a set of heads together.

    Attributes:
        heads: the heads ablated, ``(layer, head)`` sorted (with ``keep_only``: every head outside
            the circuit).
        mode: ``"mean"`` or ``"corrupted"``.
        clean_logit_diff: mean ``logit(answer) - logit(contrast)`` on the clean prompts.
        corrupted_logit_diff: the same on the corrupted prompts (no ablation).
        ablated_logit_diff: the same on the clean prompts with ``heads`` ablated.
        clean_accuracy: share of items whose answer is the top token on the clean prompt.
        ablated_accuracy: the same with ``heads`` ablated.
        n_items: items averaged over.
    """

    heads: tuple[Head, ...]
    mode: str
    clean_logit_diff: float
    corrupted_logit_diff: float
    ablated_logit_diff: float
    clean_accuracy: float
    ablated_accuracy: float
    n_items: int

    @property
    def n_heads(self) -> int:
        """Heads ablated."""
        return len(self.heads)

    @property
    def gap(self) -> float:
        """``clean_logit_diff - corrupted_logit_diff``."""
        return self.clean_logit_diff - self.corrupted_logit_diff

    @property
    def gap_lost(self) -> float:
        """``(clean - ablated) / (clean - corrupted)``; NaN when the gap is too small to divide by."""
        if not math.isfinite(self.gap) or abs(self.gap) < 1e-6:
            return math.nan
        return (self.clean_logit_diff - self.ablated_logit_diff) / self.gap

    def to_dict(self) -> dict:
        """Plain numbers (JSON-ready)."""
        return {"heads": [list(h) for h in self.heads], "mode": self.mode, "n_heads": self.n_heads,
                "clean_logit_diff": self.clean_logit_diff, "corrupted_logit_diff": self.corrupted_logit_diff,
                "ablated_logit_diff": self.ablated_logit_diff, "clean_accuracy": self.clean_accuracy,
                "ablated_accuracy": self.ablated_accuracy, "gap_lost": self.gap_lost, "n_items": self.n_items}


@dataclass(frozen=True)
class AblationStudy:
    """A circuit ablated, its complement ablated (faithfulness) and a random control of its size.

    Attributes:
        circuit: the circuit's heads ablated.
        complement: every other head ablated (the circuit kept alone).
        random: as many heads as the circuit, drawn with ``seed`` from outside it where possible.
        seed: the random control's seed.
    """

    circuit: CircuitAblation
    complement: CircuitAblation
    random: CircuitAblation
    seed: int

    @property
    def rows(self) -> tuple[CircuitAblation, CircuitAblation, CircuitAblation]:
        return self.circuit, self.complement, self.random


def ablate_heads(model, contrast: ContrastSet, heads: Iterable[Head], *, mode: str = "mean", keep_only: bool = False,
                 batch_size: int = 8) -> CircuitAblation:
    """Ablate ``heads`` together (or, with ``keep_only``, every other head) on the clean prompts.

    Args:
        model: a :class:`~probe.models.LoadedModel`, an HF causal LM or a ``HookedTransformer``.
        contrast: the task's items, tokenized for ``model``.
        heads: ``(layer, head)`` pairs; repeats count once; may be empty (nothing changes).
        mode: ``"mean"`` or ``"corrupted"`` (module docstring).
        keep_only: ablate the heads *not* in ``heads`` instead.
        batch_size: items per forward.

    Raises:
        InputError: an unknown mode, a head outside the model, a batch size below 1, an empty set
            or token ids beyond the model's vocabulary.
    """
    hf = check_inputs(model, contrast, batch_size=batch_size)
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    n_layers, n_heads, head_dim = head_geometry(hf)
    chosen = checked_heads(heads, n_layers, n_heads)
    ablated = complement(chosen, n_layers, n_heads) if keep_only else chosen
    means = clean_head_means(hf, contrast, batch_size) if mode == "mean" and ablated else None
    clean_ld, corrupted_ld, ablated_ld, clean_top, ablated_top = [], [], [], [], []
    for first in range(0, len(contrast), batch_size):
        rows = slice(first, first + batch_size)
        ids, mask = contrast.clean[rows], contrast.attention_mask[rows]
        answer, other = contrast.answer[rows], contrast.contrast[rows]
        with torch.no_grad():
            clean_logits = forward_logits(hf, ids, mask)
        corrupted, corrupted_logits = record_head_inputs(hf, contrast.corrupted[rows], mask)
        if not ablated:
            ablated_logits = clean_logits
        else:
            source = corrupted if means is None else [m.expand_as(c) for m, c in zip(means, corrupted)]
            ablated_logits = logits_with_heads_replaced(hf, ids, mask, ablated, source, head_dim)
        clean_ld.append(logit_diff(clean_logits, answer, other))
        corrupted_ld.append(logit_diff(corrupted_logits, answer, other))
        ablated_ld.append(logit_diff(ablated_logits, answer, other))
        clean_top.append(answer_on_top(clean_logits, answer))
        ablated_top.append(answer_on_top(ablated_logits, answer))
    return CircuitAblation(heads=ablated, mode=mode, clean_logit_diff=_mean(clean_ld),
                           corrupted_logit_diff=_mean(corrupted_ld), ablated_logit_diff=_mean(ablated_ld),
                           clean_accuracy=_mean(clean_top), ablated_accuracy=_mean(ablated_top), n_items=len(contrast))


def ablation_study(model, contrast: ContrastSet, heads: Iterable[Head], *, mode: str = "mean", seed: int = 0,
                   batch_size: int = 8) -> AblationStudy:
    """The circuit ablated, kept alone (its complement ablated) and a random set of its size ablated."""
    hf = check_inputs(model, contrast, batch_size=batch_size)
    n_layers, n_heads, _ = head_geometry(hf)
    chosen = checked_heads(heads, n_layers, n_heads)
    control = random_heads(n_layers, n_heads, len(chosen), seed=seed, avoid=chosen)
    run = dict(mode=mode, batch_size=batch_size)
    return AblationStudy(circuit=ablate_heads(model, contrast, chosen, **run),
                         complement=ablate_heads(model, contrast, chosen, keep_only=True, **run),
                         random=ablate_heads(model, contrast, control, **run), seed=seed)


def logits_with_heads_replaced(hf: nn.Module, ids: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"],
                               heads: Iterable[Head], source: list[Float[Tensor, "batch pos hd"]],
                               head_dim: int) -> Float[Tensor, "batch vocab"]:
    """Last-position logits of one forward with every head of ``heads`` replaced by its slice of
    ``source`` (per layer, the output projection's input to copy from)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def replace(layer: int, x: Tensor) -> Tensor | None:
        if layer not in by_layer:
            return None
        x = x.clone()
        for head in by_layer[layer]:
            cols = slice(head * head_dim, (head + 1) * head_dim)
            x[:, :, cols] = source[layer][:, :, cols].to(x)
        return x

    with torch.no_grad(), head_input_hooks(hf, replace):
        return forward_logits(hf, ids, mask)


def checked_heads(heads: Iterable[Head], n_layers: int, n_heads: int) -> tuple[Head, ...]:
    """``heads`` as sorted distinct ``(layer, head)`` pairs; :class:`InputError` for one outside the model."""
    out = set()
    for pair in heads:
        try:
            layer, head = (int(i) for i in pair)
        except (TypeError, ValueError):
            raise InputError(f"a head is a (layer, head) pair of integers, got {pair!r}") from None
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise InputError(f"head ({layer}, {head}) is outside the model ({n_layers} layers x {n_heads} heads)")
        out.add((layer, head))
    return tuple(sorted(out))


def complement(heads: Iterable[Head], n_layers: int, n_heads: int) -> tuple[Head, ...]:
    """Every head of an ``n_layers x n_heads`` model not in ``heads``, sorted."""
    inside = set(heads)
    return tuple((layer, head) for layer in range(n_layers) for head in range(n_heads) if (layer, head) not in inside)


def random_heads(n_layers: int, n_heads: int, k: int, *, seed: int = 0, avoid: Iterable[Head] = ()) -> tuple[Head, ...]:
    """``k`` distinct heads drawn with ``seed``, from outside ``avoid`` when enough are left there
    (else from the whole model), sorted."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_layers * n_heads:
        raise InputError(f"k must be a whole number from 0 to {n_layers * n_heads}, got {k!r}")
    pool = complement(avoid, n_layers, n_heads)
    if len(pool) < k:
        pool = complement((), n_layers, n_heads)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:k]
    return tuple(sorted(pool[int(i)] for i in order))


def answer_on_top(logits: Float[Tensor, "batch vocab"], answer: Int[Tensor, " batch"]) -> Bool[Tensor, " batch"]:
    """Whether the answer is the top token of each row."""
    return logits.argmax(-1).cpu() == answer.cpu()


def _mean(parts: list[Tensor]) -> float:
    return float(torch.cat(parts).double().mean())
