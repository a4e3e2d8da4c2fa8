"""Attribution patching per head: EAP (one forward, one backward) and EAP with integrated gradients.

Context:
    Activation patching (:mod:`circuits.discovery.patching`) needs a forward per head. Attribution
    patching (Nanda 2023; Syed, Rager & Conmy 2023, "EAP") replaces each patch by its first-order
    Taylor term around the clean run: with ``o_h`` a head's output (its slice of the output
    projection's input, ``[item, pos, head_dim]``) and ``g_h = dLD/do_h`` the *total* gradient of
    the clean logit difference (through every later head and MLP),

        LD_patched(h) - LD_clean  ~  sum_{item, pos} (o_h^corrupted - o_h^clean) . g_h

    so one corrupted forward (to read ``o^corrupted``), one clean forward and one backward score
    every head. The score is that estimate with patching's sign and normalisation:

        eap(h) = mean_items sum_pos (o_h^clean - o_h^corrupted) . g_h  /  (LD_clean - LD_corrupted)

    (means over items), directly comparable with ``activation_patching(ablation="corrupted")``;
    higher = more important.

EAP-IG:
    The gradient at the clean end can be flat (saturated softmaxes), so Hanna, Pezzelle & Belinkov
    (2024) average it along a path from corrupted to clean, in ``steps`` points ``alpha = k/steps``,
    ``k = 1..steps`` (right Riemann sum; ``steps=1`` is EAP), and score
    ``(o_h^clean - o_h^corrupted) . mean_alpha g_h(alpha)``. Two paths (``interpolate``):

    - ``"inputs"`` (Hanna et al.'s EAP-IG, the default): the token embeddings go from the
      corrupted to the clean ones, the model runs as usual, ``g_h`` is the total gradient. What
      is exact here (as ``steps`` grows) is completeness *for the embeddings*: the embedding
      attributions sum to ``LD_clean - LD_corrupted``; the head scores need not sum to it.
    - ``"heads"``: every head's output of every layer is set to ``o^corrupted + alpha (o^clean -
      o^corrupted)`` at once (the clean tokens feed embeddings and MLPs), and ``g_h`` is the
      gradient of that function, with the other heads held at their set values. Completeness is
      exact in the limit of steps (the Riemann error is O(1/steps)):
      ``sum_h raw(h) -> LD_clean - LD(clean tokens, every head's output replaced by its corrupted
      value)``, which is ``LD_clean - LD_corrupted`` only when the tokens reach the logits through
      the heads alone. Effects a head has *through later heads* are not seen on this path.
"""

from __future__ import annotations

import time

import torch
from jaxtyping import Float
from torch import Tensor, nn

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.heads import (forward_logits, head_geometry, head_input_hooks, input_embedding, logit_diff,
                                      record_head_inputs)
from circuits.discovery.patching import HeadScores, check_gap, check_inputs
from probe.errors import InputError

PATHS = ("inputs", "heads")


def attribution_patching(model, contrast: ContrastSet, *, batch_size: int = 8) -> HeadScores:
    """EAP scores per head (module docstring): one corrupted forward, one clean forward and one
    backward per item batch.

    Raises:
        InputError: ``batch_size`` below 1, an empty set, ids beyond the vocabulary, no gap.
    """
    return _attribute(model, contrast, steps=1, interpolate="inputs", batch_size=batch_size, method="eap")


def eap_ig(model, contrast: ContrastSet, *, steps: int = 5, interpolate: str = "inputs",
           batch_size: int = 8) -> HeadScores:
    """EAP-IG scores per head (module docstring): ``steps`` forwards and backwards per item batch.

    Args:
        steps: points on the path (5 in Hanna et al. 2024); 1 gives EAP.
        interpolate: ``"inputs"`` (token embeddings, Hanna et al.) or ``"heads"`` (every head's
            output at once; exact completeness over heads).

    Raises:
        InputError: ``steps`` or ``batch_size`` below 1, an unknown path, an empty set, ids
            beyond the vocabulary, no gap.
    """
    if interpolate not in PATHS:
        raise InputError(f"interpolate must be one of {PATHS}, got {interpolate!r}")
    return _attribute(model, contrast, steps=steps, interpolate=interpolate, batch_size=batch_size, method="eap-ig")


def _attribute(model, contrast: ContrastSet, *, steps: int, interpolate: str, batch_size: int,
               method: str) -> HeadScores:
    hf = check_inputs(model, contrast, steps=steps, batch_size=batch_size)
    start = time.perf_counter()
    n_layers, n_heads, _ = head_geometry(hf)
    raw = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    clean_ld, corrupted_ld, forwards = [], [], 0
    for first in range(0, len(contrast), batch_size):
        rows = slice(first, first + batch_size)
        batch = _Batch(contrast, rows)
        clean, clean_logits = record_head_inputs(hf, batch.clean, batch.mask)
        corrupted, corrupted_logits = record_head_inputs(hf, batch.corrupted, batch.mask)
        clean_ld.append(logit_diff(clean_logits, batch.answer, batch.other))
        corrupted_ld.append(logit_diff(corrupted_logits, batch.answer, batch.other))
        grads = [torch.zeros_like(x) for x in clean]
        for k in range(1, steps + 1):
            step = _gradients(hf, batch, clean, corrupted, k / steps, interpolate)
            grads = [g + s for g, s in zip(grads, step)]
        forwards += 2 + steps
        for layer, (a, b, g) in enumerate(zip(clean, corrupted, grads)):
            mask = batch.mask.to(a)[:, :, None].to(a.device)
            product = ((a - b) * mask * g / steps).reshape(*a.shape[:2], n_heads, -1)
            raw[layer] += product.sum((0, 1, 3)).double().cpu()  # (item, pos, head, head_dim) -> (head,)
    clean_mean = float(torch.cat(clean_ld).double().mean())
    corrupted_mean = float(torch.cat(corrupted_ld).double().mean())
    gap = check_gap(clean_mean, corrupted_mean, contrast.task)
    return HeadScores(method=method, scores=raw / len(contrast) / gap, seconds=time.perf_counter() - start,
                      clean_logit_diff=clean_mean, corrupted_logit_diff=corrupted_mean, forwards=forwards)


class _Batch:
    """One item batch of a contrast set."""

    def __init__(self, contrast: ContrastSet, rows: slice):
        self.clean, self.corrupted = contrast.clean[rows], contrast.corrupted[rows]
        self.mask, self.answer, self.other = contrast.attention_mask[rows], contrast.answer[rows], contrast.contrast[rows]


def _gradients(hf: nn.Module, batch: _Batch, clean: list[Tensor], corrupted: list[Tensor], alpha: float,
               interpolate: str) -> list[Float[Tensor, "item pos hd"]]:
    """d(sum of logit differences)/d(each layer's head outputs) at ``alpha`` on the path."""
    seen: list[Tensor] = []

    def at_heads(layer: int, x: Tensor) -> Tensor:
        point = (corrupted[layer] + alpha * (clean[layer] - corrupted[layer])).to(x).requires_grad_(True)
        seen.append(point)
        return point

    def observe(layer: int, x: Tensor) -> None:
        seen.append(x)

    with torch.enable_grad(), _embeddings_between(hf, batch, alpha if interpolate == "inputs" else 1.0), \
            head_input_hooks(hf, at_heads if interpolate == "heads" else observe):
        logits = forward_logits(hf, batch.clean, batch.mask)
        total = logit_diff(logits, batch.answer, batch.other).sum()
        return [g.detach() for g in torch.autograd.grad(total, seen)]


class _embeddings_between:
    """Inside the block the input embeddings are ``corrupted + alpha (clean - corrupted)``
    (a leaf that requires grad, so the graph exists even on a frozen model)."""

    def __init__(self, hf: nn.Module, batch: _Batch, alpha: float):
        self.embed, self.batch, self.alpha, self.handle = input_embedding(hf), batch, alpha, None

    def __enter__(self):
        device = next(self.embed.parameters()).device
        with torch.no_grad():
            clean = self.embed(self.batch.clean.to(device))
            corrupted = self.embed(self.batch.corrupted.to(device))
        point = (corrupted + self.alpha * (clean - corrupted)).requires_grad_(True)
        self.handle = self.embed.register_forward_hook(lambda module, args, out: point)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False
