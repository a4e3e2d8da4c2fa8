"""Ablate each head of a model on one prompt and read the logit difference: many heads per forward.

Context:
    A head's total effect on a behaviour (through the residual stream *and* through every later
    head and MLP) is what the logit difference loses when the head is removed. The sweep runs
    the prompt once unablated and then in batches of ``heads_per_forward`` copies, copy ``c``
    with one head ablated, so a 30 x 9 model costs ``ceil(270 / heads_per_forward) + 1``
    forwards instead of 271.

    Two ablations (``mode``):

    - ``"zero"``: the head's output is multiplied by 0 before the output projection, through the
      edit :class:`probe.edits.ScaleHeads` limited to copy ``c`` (``prompts=[c]``), so it
      composes with the dashboard's own edits exactly as a user's head scaling does;
    - ``"mean"``: the head's output (the output projection's input slice) is replaced, at every
      position, by its mean over the prompt's positions in the unablated run (with the same
      edits). With one prompt there is no data set to average over; the positional mean keeps
      the head's typical output and removes what depends on the token.
      :mod:`circuits.discovery.patching` has the data-set version (mean over items per position).

    The user's edits apply to every copy (and to the unablated run): the sweep measures each
    head's effect in the edited model.

Result:
    ``effect[layer, head] = LD(head ablated) - LD(unablated)``: negative where the head supports
    the target over the foil.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.discovery.heads import forward_logits, head_input_hooks, record_head_inputs
from circuits.heads.target_foil import TargetFoil, logit_difference
from probe.capture.inputs import tokenize
from probe.edits import ScaleHeads, apply_edits
from probe.edits.spec import Edit
from probe.errors import InputError
from probe.models.loading import LoadedModel

MODES = ("zero", "mean")
Head = tuple[int, int]


@dataclass(frozen=True)
class AblationSweep:
    """The logit difference with each head ablated.

    Attributes:
        mode: ``"zero"`` or ``"mean"``.
        base: the logit difference with nothing ablated (the edits applied).
        ablated: ``[layer, head]`` the logit difference with that head ablated.
        forwards: forwards run (the unablated one included).
    """

    mode: str
    base: float
    ablated: Float[Tensor, "layer head"]
    forwards: int

    @property
    def effect(self) -> Float[Tensor, "layer head"]:
        """``ablated - base``: negative where the head pushes towards the target."""
        return self.ablated - self.base


def ablation_sweep(model: LoadedModel, prompt: str, pair: TargetFoil, edits: Sequence[Edit] = (), *,
                   mode: str = "zero", heads_per_forward: int = 16) -> AblationSweep:
    """Every head's ablation effect on the last position's logit difference (module docstring).

    Args:
        model: a loaded text model.
        prompt: the text (tokenized as a capture tokenizes it).
        pair: the target and foil tokens.
        edits: :mod:`probe.edits` edits applied to every forward.
        mode: ``"zero"`` or ``"mean"``.
        heads_per_forward: copies of the prompt per forward, one ablated head each.

    Raises:
        InputError: an unknown mode, ``heads_per_forward`` not a positive integer, a bad prompt.
    """
    if mode not in MODES:
        raise InputError(f"ablation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(heads_per_forward, bool) or not isinstance(heads_per_forward, int) or heads_per_forward < 1:
        raise InputError(f"heads_per_forward must be a positive integer, got {heads_per_forward!r}")
    edits = list(edits)
    geometry = model.geometry
    batch = tokenize(model.tokenizer, prompt, geometry.context_length)
    ids, mask = batch.input_ids, batch.attention_mask
    with apply_edits(model, edits):
        head_inputs, logits = record_head_inputs(model.hf, ids, mask)
    base = float(logit_difference(logits[0].double(), pair))
    means = [x[0].mean(0) for x in head_inputs] if mode == "mean" else None
    heads = [(layer, head) for layer in range(geometry.n_layers) for head in range(geometry.n_heads)]
    ablated = torch.empty(len(heads), dtype=torch.float64)
    forwards = 1
    for start in range(0, len(heads), heads_per_forward):
        chunk = heads[start:start + heads_per_forward]
        ablated[start:start + len(chunk)] = _ablated_chunk(model, ids, mask, pair, edits, chunk, means,
                                                           geometry.head_dim)
        forwards += 1
    return AblationSweep(mode=mode, base=base, ablated=ablated.reshape(geometry.n_layers, geometry.n_heads),
                         forwards=forwards)


def _ablated_chunk(model: LoadedModel, ids: Tensor, mask: Tensor, pair: TargetFoil, edits: list[Edit],
                   chunk: list[Head], means: list[Tensor] | None, head_dim: int) -> Float[Tensor, " copy"]:
    """Logit differences of ``len(chunk)`` copies of the prompt, copy ``c`` with ``chunk[c]`` ablated."""
    copies = len(chunk)
    if means is None:
        knockouts = [ScaleHeads(0.0, layers=[layer], heads=[head], prompts=[c])
                     for c, (layer, head) in enumerate(chunk)]
        hooks = contextlib.nullcontext()
    else:
        knockouts = []
        hooks = head_input_hooks(model.hf, _mean_patch(chunk, means, head_dim))
    with torch.no_grad(), apply_edits(model, edits + knockouts), hooks:
        logits = forward_logits(model.hf, ids.repeat(copies, 1), mask.repeat(copies, 1))
    return logit_difference(logits.double(), pair).cpu()


def _mean_patch(chunk: list[Head], means: list[Tensor], head_dim: int):
    """A :func:`head_input_hooks` function putting head ``chunk[c]``'s mean into copy ``c``."""

    def patch(layer: int, x: Tensor) -> Tensor | None:
        mine = [(c, head) for c, (at, head) in enumerate(chunk) if at == layer]
        if not mine:
            return None
        x = x.clone()
        for c, head in mine:
            cols = slice(head * head_dim, (head + 1) * head_dim)
            x[c, :, cols] = means[layer][cols].to(x)
        return x

    return patch


def sweep_forwards(n_heads_total: int, heads_per_forward: int) -> int:
    """Forwards an :func:`ablation_sweep` runs: one unablated, then one per chunk."""
    return 1 + math.ceil(n_heads_total / heads_per_forward)
