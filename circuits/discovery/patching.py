"""Activation patching per head, batched: the reference every faster method is scored against.

Context:
    Wang et al. (2022, IOI) find a head's importance by running the *clean* prompt, replacing
    that one head's output with another value, and measuring how much of the clean behaviour is
    lost. Two replacements are implemented (methods dossier sections h, i):

    - ``"corrupted"`` (corrupted-to-clean patching, "noising" in Heimersheim & Nanda's terms):
      the head's output on the item's corrupted twin, at every position;
    - ``"mean"`` (mean ablation): the head's output averaged over the clean items at each
      position (positions aligned as the set is padded: column ``j`` of a left-padded set is the
      same distance from the end in every row; items with padding at ``j`` are left out of its
      mean).

    The denoising direction (run corrupted, patch in clean) is *not* implemented.

Score:
    With ``LD = logit(answer) - logit(contrast)`` at the last position, averaged over items,

        score(head) = (LD_clean - LD_patched(head)) / (LD_clean - LD_corrupted)

    which is Merullo et al.'s ``(LD_patched - LD_clean) / (LD_corrupt - LD_clean)`` with the sign
    turned so that *higher means more important*: 1 = patching this head alone loses the whole
    clean-corrupted gap, 0 = no effect, negative = the head works against the answer (negative
    name movers). Mean ablation is normalised by the same gap, so the two are on one scale.

Batching:
    A forward holds ``heads_per_forward`` copies of ``batch_size`` items, each copy patching a
    different head (batch dimension ``copies x items``), so a 30 x 9 model needs
    ``ceil(270 / heads_per_forward) + 2`` forwards per item batch rather than 272.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.heads import (clean_head_means, forward_logits, head_geometry, head_input_hooks, logit_diff,
                                      record_head_inputs, vocabulary_size)
from probe.errors import InputError

ABLATIONS = ("corrupted", "mean")


@dataclass(frozen=True)
class HeadScores:
    """One method's importance score per head.

    Attributes:
        method: ``patching-corrupted``, ``patching-mean``, ``eap`` or ``eap-ig``.
        scores: ``[layer, head]``, normalised by ``gap`` (see the module docstrings); higher =
            more important.
        seconds: wall-clock time of the whole computation (forwards and backwards included).
        clean_logit_diff: mean logit difference on the clean prompts.
        corrupted_logit_diff: mean logit difference on the corrupted prompts.
        forwards: model forwards run (a backward counts as none).
    """

    method: str
    scores: Float[Tensor, "layer head"]
    seconds: float
    clean_logit_diff: float
    corrupted_logit_diff: float
    forwards: int

    @property
    def gap(self) -> float:
        """``clean_logit_diff - corrupted_logit_diff``, the normaliser."""
        return self.clean_logit_diff - self.corrupted_logit_diff

    @property
    def raw(self) -> Float[Tensor, "layer head"]:
        """The scores in logit-difference units (``scores * gap``)."""
        return self.scores * self.gap


def activation_patching(model, contrast: ContrastSet, *, ablation: str = "corrupted", heads_per_forward: int = 16,
                        batch_size: int = 8) -> HeadScores:
    """Each head's patching effect on the logit difference, normalised (module docstring).

    Args:
        model: a :class:`~probe.models.LoadedModel` or an HF causal LM.
        contrast: the task's items, tokenized for ``model``.
        ablation: ``"corrupted"`` (the corrupted twin's head output) or ``"mean"`` (mean over
            the clean items at each position).
        heads_per_forward: heads patched in one forward (copies of the item batch).
        batch_size: items per copy.

    Raises:
        InputError: unknown ablation, sizes below 1, an empty set, ids beyond the vocabulary,
            or clean and corrupted logit differences that do not differ.
    """
    hf = check_inputs(model, contrast, heads_per_forward=heads_per_forward, batch_size=batch_size)
    if ablation not in ABLATIONS:
        raise InputError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    start = time.perf_counter()
    n_layers, n_heads, head_dim = head_geometry(hf)
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    mean = clean_head_means(hf, contrast, batch_size) if ablation == "mean" else None
    patched = torch.zeros(len(heads), dtype=torch.float64)
    clean_ld, corrupted_ld = [], []
    forwards = (2 + (mean is not None)) * math.ceil(len(contrast) / batch_size)
    for first in range(0, len(contrast), batch_size):
        rows = slice(first, first + batch_size)
        ids, mask = contrast.clean[rows], contrast.attention_mask[rows]
        answer, other = contrast.answer[rows], contrast.contrast[rows]
        _, clean_logits = record_head_inputs(hf, ids, mask)
        corrupted, corrupted_logits = record_head_inputs(hf, contrast.corrupted[rows], mask)
        clean_ld.append(logit_diff(clean_logits, answer, other))
        corrupted_ld.append(logit_diff(corrupted_logits, answer, other))
        source = corrupted if mean is None else [m.expand_as(c) for m, c in zip(mean, corrupted)]
        for chunk_start in range(0, len(heads), heads_per_forward):
            chunk = heads[chunk_start : chunk_start + heads_per_forward]
            ld = _patched_logit_diff(hf, ids, mask, answer, other, chunk, source, head_dim)
            patched[chunk_start : chunk_start + len(chunk)] += ld.sum(1).double().cpu()
            forwards += 1
    clean_mean = float(torch.cat(clean_ld).double().mean())
    corrupted_mean = float(torch.cat(corrupted_ld).double().mean())
    gap = check_gap(clean_mean, corrupted_mean, contrast.task)
    scores = (clean_mean - patched / len(contrast)) / gap
    return HeadScores(method=f"patching-{ablation}", scores=scores.reshape(n_layers, n_heads),
                      seconds=time.perf_counter() - start, clean_logit_diff=clean_mean,
                      corrupted_logit_diff=corrupted_mean, forwards=forwards)


def _patched_logit_diff(hf: nn.Module, ids: Tensor, mask: Tensor, answer: Tensor, other: Tensor,
                        chunk: list[tuple[int, int]], source: list[Tensor], head_dim: int) -> Float[Tensor, "copy item"]:
    """Logit differences of ``len(chunk)`` copies of the batch, copy ``c`` with head ``chunk[c]``
    replaced by its value in ``source`` (per layer ``[item, pos, heads*head_dim]``)."""
    n_copies, n_items = len(chunk), len(ids)

    def patch(layer: int, x: Tensor) -> Tensor | None:
        mine = [(c, head) for c, (at, head) in enumerate(chunk) if at == layer]
        if not mine:
            return None
        x = x.clone()  # (copy*item, pos, heads*head_dim)
        for c, head in mine:
            cols = slice(head * head_dim, (head + 1) * head_dim)
            x[c * n_items : (c + 1) * n_items, :, cols] = source[layer][:, :, cols].to(x)
        return x

    with torch.no_grad(), head_input_hooks(hf, patch):
        logits = forward_logits(hf, ids.repeat(n_copies, 1), mask.repeat(n_copies, 1))
    return logit_diff(logits, answer.repeat(n_copies), other.repeat(n_copies)).reshape(n_copies, n_items)


def check_inputs(model, contrast: ContrastSet, **sizes: int) -> nn.Module:
    """The HF model of ``model`` (or the ``HookedTransformer`` itself) after checking sizes (each a
    positive integer), the set's size and its vocabulary; raises :class:`InputError` naming the fix."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if len(contrast) == 0:
        raise InputError(f"task {contrast.task!r} has no items")
    hf = getattr(model, "hf", model)
    vocab = vocabulary_size(hf)
    largest = max(int(t.max()) for t in (contrast.clean, contrast.corrupted, contrast.answer, contrast.contrast))
    if largest >= vocab:
        raise InputError(f"task {contrast.task!r}: token id {largest} is beyond the vocabulary of "
                         f"{getattr(model, 'name', type(hf).__name__)!r} ({vocab} tokens); the set was built with "
                         "another tokenizer: build it with circuits.discovery.tasks.load_task(task, model.tokenizer)")
    return hf


def check_gap(clean: float, corrupted: float, task: str) -> float:
    """``clean - corrupted``, refused when it is too small to normalise by."""
    gap = clean - corrupted
    if not math.isfinite(gap) or abs(gap) < 1e-6:
        raise InputError(f"task {task!r}: the mean logit difference is {clean:+.4g} clean and {corrupted:+.4g} "
                         "corrupted; with no gap between them no head can be scored (does the model do the task, "
                         "and do the corrupted prompts remove its cue?)")
    return gap
