"""Direct logit attribution: how much of the last position's logit difference each head writes.

Context:
    The residual stream at the last position, right before the final norm, is a sum of parts:
    the embeddings, and per layer each attention head's output through its slice of the output
    projection (``z_h W_O^h``), the projection's bias, and the MLP's output. The logits are
    ``W_U norm(x)``. The final norm is not linear, so, as is standard (Elhage et al. 2021;
    TransformerLens' ``cache.apply_ln_to_stack``), its scale is **frozen at the attributed run**:
    ``1 / rms(x)`` (RMSNorm) or ``1 / std(x)`` (LayerNorm, whose centring is linear and applied
    to each part) is read from that forward's own ``x`` and applied to every part. Each part's
    attribution is then

        ``(norm weight * part * frozen scale) . (W_U[target] - W_U[foil])``

    and the parts, with the final norm's bias and the unembedding's bias, sum exactly to the
    logit difference of that forward (``DirectAttribution.total`` against ``logit_diff``).
    "Direct" means the path through the residual stream only: what a head changes in later
    heads and MLPs is not counted here (the ablation sweep counts it).

    Edits (the dashboard's ACT calibration and head scales) apply to the attributed forward: the
    parts are those of the edited model, and a head scaled by 0 attributes 0.

    MLP parts are each layer's whole residual update minus its attention output, which is the
    MLP in the supported families (pre-norm decoders whose attention output is added to the
    stream as it is). Families with norms on the attention output (Gemma 2/3, OLMo-2) or a
    soft-capped output (Gemma) have no such additive split and are refused.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from circuits.discovery.heads import forward_logits
from circuits.heads.target_foil import TargetFoil, logit_difference
from probe.capture.inputs import tokenize
from probe.edits import apply_edits
from probe.edits.spec import Edit
from probe.errors import InputError
from probe.models.families import family_of
from probe.models.loading import LoadedModel


@dataclass(frozen=True)
class FinalNorm:
    """Where a family keeps its final norm, and which kind it is (``"rms"`` or ``"layer"``)."""

    path: str
    kind: str


FINAL_NORMS = MappingProxyType({
    **{t: FinalNorm("model.norm", "rms") for t in ("llama", "mistral", "qwen2", "qwen3", "phi3")},
    "gpt2": FinalNorm("transformer.ln_f", "layer"),
})
"""Model types with an additive residual split, and their final norm."""


@dataclass(frozen=True)
class DirectAttribution:
    """Each part's direct contribution to ``logit(target) - logit(foil)`` at the last position.

    Attributes:
        heads: ``[layer, head]`` per-head attributions.
        head_bias: ``[layer]`` the output projection's bias (0 without one).
        mlps: ``[layer]`` each MLP.
        embeddings: the token (and, for GPT-2, position) embeddings.
        bias: the final norm's bias and the unembedding's bias (0 for RMSNorm models).
        logit_diff: the forward's own logit difference, for comparison with :attr:`total`.
    """

    heads: Float[Tensor, "layer head"]
    head_bias: Float[Tensor, " layer"]
    mlps: Float[Tensor, " layer"]
    embeddings: float
    bias: float
    logit_diff: float

    @property
    def total(self) -> float:
        """The sum of every part: equals :attr:`logit_diff` up to rounding."""
        return float(self.heads.sum() + self.head_bias.sum() + self.mlps.sum()) + self.embeddings + self.bias


def direct_logit_attribution(model: LoadedModel, prompt: str, pair: TargetFoil,
                             edits: Sequence[Edit] = ()) -> DirectAttribution:
    """Direct logit attribution of every head on ``prompt``'s last position (module docstring).

    Args:
        model: a loaded text model of a family in :data:`FINAL_NORMS`.
        prompt: the text, tokenized as a capture tokenizes it.
        pair: the target and foil tokens.
        edits: :mod:`probe.edits` edits applied to the forward (the dashboard's current ones).

    Raises:
        InputError: an unsupported family, a prompt over the context window.
    """
    hf = model.hf
    norm_spec = _final_norm(hf)
    batch = tokenize(model.tokenizer, prompt, model.geometry.context_length)
    with torch.no_grad(), apply_edits(model, list(edits)), _residual_parts(hf, norm_spec.path) as parts:
        logits = forward_logits(hf, batch.input_ids, batch.attention_mask)
    direction = _unembedding_direction(hf, pair)
    frozen = _frozen_norm(parts.final_input, _module(hf, norm_spec.path), norm_spec.kind)
    heads, head_bias, mlps = [], [], []
    for layer_in, layer_out, proj, proj_in, proj_out in zip(parts.layer_inputs, parts.layer_outputs,
                                                          family_of(hf).output_projections(hf),
                                                          parts.proj_inputs, parts.proj_outputs):
        per_head, bias = _head_parts(proj, proj_in, model.geometry.n_heads)
        heads.append(frozen.project(per_head, direction))
        head_bias.append(frozen.project(bias, direction))
        mlps.append(frozen.project(layer_out - layer_in - proj_out, direction))
    return DirectAttribution(
        heads=torch.stack(heads), head_bias=torch.stack(head_bias), mlps=torch.stack(mlps),
        embeddings=float(frozen.project(parts.layer_inputs[0], direction)),
        bias=float(frozen.bias_part(direction) + _unembedding_bias(hf, pair)),
        logit_diff=float(logit_difference(logits[0].double(), pair)),
    )


@dataclass
class _Parts:
    """Last-position vectors recorded during one forward."""

    layer_inputs: list[Tensor]
    layer_outputs: list[Tensor]
    proj_inputs: list[Tensor]
    proj_outputs: list[Tensor]
    final_input: Tensor | None = None


@contextlib.contextmanager
def _residual_parts(hf: nn.Module, norm_path: str) -> Iterator[_Parts]:
    """Hooks recording, at the last position, each layer's input and output, each output
    projection's input and output, and the final norm's input."""
    parts = _Parts([], [], [], [])
    family = family_of(hf)

    def last(x: Tensor) -> Tensor:
        return x[0, -1].detach().double()

    def layer_pre(module, args, kwargs):
        parts.layer_inputs.append(last(args[0] if args else kwargs["hidden_states"]))

    def layer_post(module, args, kwargs, output):
        parts.layer_outputs.append(last(output[0] if isinstance(output, tuple) else output))

    def proj_post(module, args, output):
        parts.proj_inputs.append(last(args[0]))
        parts.proj_outputs.append(last(output))

    def norm_pre(module, args):
        parts.final_input = last(args[0])

    handles = [layer.register_forward_pre_hook(layer_pre, with_kwargs=True) for layer in family.layers(hf)]
    handles += [layer.register_forward_hook(layer_post, with_kwargs=True) for layer in family.layers(hf)]
    handles += [proj.register_forward_hook(proj_post) for proj in family.output_projections(hf)]
    handles.append(_module(hf, norm_path).register_forward_pre_hook(norm_pre))
    try:
        yield parts
    finally:
        for handle in handles:
            handle.remove()


def _head_parts(proj: nn.Module, proj_in: Float[Tensor, " hd"], n_heads: int
                ) -> tuple[Float[Tensor, "head d_model"], Float[Tensor, " d_model"]]:
    """Each head's ``z_h W_O^h`` and the projection's bias, through the projection module itself
    (``nn.Linear`` or GPT-2's ``Conv1D``): row ``h`` feeds only head ``h``'s slice."""
    head_dim = proj_in.shape[0] // n_heads
    blocks = torch.zeros(n_heads + 1, proj_in.shape[0], dtype=proj_in.dtype)
    for head in range(n_heads):
        cols = slice(head * head_dim, (head + 1) * head_dim)
        blocks[head, cols] = proj_in[cols]
    weight = next(proj.parameters())
    with torch.no_grad():
        out = proj(blocks.to(weight)).double()
    bias = out[n_heads]  # the all-zero row: the bias alone
    return out[:n_heads] - bias, bias


@dataclass(frozen=True)
class _FrozenNorm:
    """The final norm as a linear map with its scale read from one forward."""

    weight: Float[Tensor, " d_model"]
    scale: float
    centre: bool
    norm_bias: Float[Tensor, " d_model"] | None

    def apply(self, part: Float[Tensor, "*n d_model"]) -> Float[Tensor, "*n d_model"]:
        if self.centre:
            part = part - part.mean(-1, keepdim=True)
        return self.weight * part * self.scale

    def project(self, part: Float[Tensor, "*n d_model"], direction: Float[Tensor, " d_model"]) -> Float[Tensor, "*n"]:
        return self.apply(part) @ direction

    def bias_part(self, direction: Float[Tensor, " d_model"]) -> float:
        return 0.0 if self.norm_bias is None else float(self.norm_bias @ direction)


def _frozen_norm(x: Float[Tensor, " d_model"], norm: nn.Module, kind: str) -> _FrozenNorm:
    """The norm's weight and frozen scale at ``x``, checked against the module's own output."""
    eps = float(next(getattr(norm, name) for name in ("variance_epsilon", "eps", "epsilon") if hasattr(norm, name)))
    weight = norm.weight.detach().double()
    if kind == "rms":
        frozen = _FrozenNorm(weight, float((x.pow(2).mean() + eps).rsqrt()), False, None)
    else:
        bias = norm.bias.detach().double() if getattr(norm, "bias", None) is not None else None
        frozen = _FrozenNorm(weight, float((x.var(unbiased=False) + eps).rsqrt()), True, bias)
    with torch.no_grad():
        actual = norm(x[None].to(norm.weight)).double()[0]
    mine = frozen.apply(x) + (frozen.norm_bias if frozen.norm_bias is not None else 0.0)
    if not torch.allclose(mine, actual, rtol=1e-3, atol=1e-4 * float(actual.abs().max()) + 1e-6):
        raise InputError(f"the final norm {type(norm).__name__} does not compute a plain {kind} norm here; "
                         "direct logit attribution supports the families in "
                         "circuits.heads.direct_attribution.FINAL_NORMS")
    return frozen


def _unembedding_direction(hf: nn.Module, pair: TargetFoil) -> Float[Tensor, " d_model"]:
    weight = hf.get_output_embeddings().weight.detach().double()
    return weight[pair.target_id] - weight[pair.foil_id]


def _unembedding_bias(hf: nn.Module, pair: TargetFoil) -> float:
    bias = getattr(hf.get_output_embeddings(), "bias", None)
    return 0.0 if bias is None else float(bias[pair.target_id].double() - bias[pair.foil_id].double())


def _final_norm(hf: nn.Module) -> FinalNorm:
    model_type = getattr(hf.config, "model_type", None)
    if model_type not in FINAL_NORMS:
        raise InputError(f"direct logit attribution needs a model whose heads add to the residual stream as they are; "
                         f"model type {model_type!r} is not one (supported: {', '.join(sorted(FINAL_NORMS))})")
    return FINAL_NORMS[model_type]


def _module(root: nn.Module, path: str) -> nn.Module:
    node = root
    for part in path.split("."):
        node = getattr(node, part)
    return node
