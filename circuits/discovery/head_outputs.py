"""Each head's contribution to the residual stream, reduced over positions: the SAE method's input.

Context:
    O'Neill & Bui (methods dossier section c) read TransformerLens' per-head result
    ``z_h W_O^h`` (``cache.stack_head_results()``, without the output bias), a ``d_model`` vector
    per head and position, and average it over the prompt's positions. Here ``z_h`` is read at the
    output projection's input (:mod:`circuits.discovery.heads`), reduced over positions first
    and then multiplied by the head's slice of the projection, which is the same number since
    both steps are linear.

    Positions (``position``):

    - ``"mean"`` (the reference's default): the mean over the prompt's own tokens; left padding
      is left out (the reference pads nothing: its prompts of one task have one length);
    - ``"last"``: the last token, where the answer is predicted.

    The shape is ``[example, layer * head, d_model]``, heads in layer-major order (head ``h`` of
    layer ``l`` at ``l * n_heads + h``), as the reference's 144 x 768 for GPT-2 small.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.heads import head_geometry, is_lens, logit_diff, record_head_inputs
from probe.errors import InputError
from probe.models.families import family_of

POSITIONS = ("mean", "last")


@dataclass(frozen=True)
class HeadOutputs:
    """Per-head outputs of a task's clean (positive) and corrupted (negative) prompts.

    Attributes:
        positives: ``[item, layer*head, d_model]`` on the clean prompts.
        negatives: ``[item, layer*head, d_model]`` on the corrupted prompts.
        n_layers: layers of the model.
        n_heads: heads per layer.
        clean_logit_diff: mean logit difference on the clean prompts (of the same forwards).
        corrupted_logit_diff: the same on the corrupted prompts.
        position: ``"mean"`` or ``"last"``.
    """

    positives: Float[Tensor, "item head d_model"]
    negatives: Float[Tensor, "item head d_model"]
    n_layers: int
    n_heads: int
    clean_logit_diff: float
    corrupted_logit_diff: float
    position: str


def head_output_matrices(model: nn.Module) -> list[Float[Tensor, "head head_dim d_model"]]:
    """Per layer, each head's slice of the output projection: ``z_h @ W[h]`` is its contribution."""
    n_layers, n_heads, head_dim = head_geometry(model)
    if is_lens(model):
        return [block.attn.W_O.detach() for block in model.blocks]
    out = []
    for proj in family_of(model).output_projections(model):
        weight = _input_major(proj)  # [heads*head_dim, d_model]
        out.append(weight.reshape(n_heads, head_dim, weight.shape[-1]))
    return out


def _input_major(proj: nn.Module) -> Float[Tensor, "hd d_model"]:
    """The projection's weight as ``[in, out]`` (``nn.Linear`` keeps ``[out, in]``, GPT-2's Conv1D ``[in, out]``)."""
    if isinstance(proj, Conv1D):
        return proj.weight.detach()
    if isinstance(proj, nn.Linear):
        return proj.weight.detach().T
    raise TypeError(f"unsupported output projection {type(proj).__name__}: expected nn.Linear or Conv1D")


def record_head_outputs(model, contrast: ContrastSet, *, position: str = "mean",
                        batch_size: int = 8) -> HeadOutputs:
    """Every head's output on every clean and corrupted prompt, reduced over positions (module docstring).

    Raises:
        InputError: an unknown ``position`` or a ``batch_size`` below 1.
    """
    if position not in POSITIONS:
        raise InputError(f"position must be one of {POSITIONS}, got {position!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    hf = getattr(model, "hf", model)
    n_layers, n_heads, _ = head_geometry(hf)
    matrices = head_output_matrices(hf)
    sides, lds = [], []
    for ids in (contrast.clean, contrast.corrupted):
        rows, diffs = [], []
        for first in range(0, len(contrast), batch_size):
            batch = slice(first, first + batch_size)
            mask = contrast.attention_mask[batch]
            inputs, logits = record_head_inputs(hf, ids[batch], mask)
            rows.append(_project(inputs, matrices, mask, position, n_heads))
            diffs.append(logit_diff(logits, contrast.answer[batch], contrast.contrast[batch]).double().cpu())
        sides.append(torch.cat(rows))
        lds.append(float(torch.cat(diffs).mean()))
    return HeadOutputs(positives=sides[0], negatives=sides[1], n_layers=n_layers, n_heads=n_heads,
                       clean_logit_diff=lds[0], corrupted_logit_diff=lds[1], position=position)


def _project(inputs: list[Tensor], matrices: list[Tensor], mask: Int[Tensor, "batch pos"], position: str,
             n_heads: int) -> Float[Tensor, "batch head d_model"]:
    """Reduce each layer's ``[batch, pos, heads*head_dim]`` over positions, then project per head."""
    out = []
    for x, w in zip(inputs, matrices):
        weight = mask.to(device=x.device, dtype=torch.float32)[:, :, None]
        x = x.float()
        reduced = x[:, -1] if position == "last" else (x * weight).sum(1) / weight.sum(1).clamp_min(1)
        per_head = reduced.reshape(len(reduced), n_heads, -1)
        out.append(torch.einsum("bhd,hdm->bhm", per_head, w.float().to(x.device)).cpu())
    return torch.cat(out, dim=1)
