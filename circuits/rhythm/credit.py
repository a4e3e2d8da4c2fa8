"""Rhythm credit: per-token advantage multipliers from WAAD and FAI (the paper's RL section).

Context:
    Li et al. (arXiv 2510.13554, section 5; methods dossier section d) shape a GRPO/PPO advantage
    token by token, ``A~_t = gamma_t A_t``, on both signs of ``A``, and leave the clipped
    objective otherwise unchanged. Attention comes from one extra forward over prompt + response,
    from 5 evenly spaced middle layers (:func:`~circuits.rhythm.metrics.paper_rl_layers`), with
    FAI's RL band ``H_lo = 10``, ``H_hi = 100``. Three strategies, each with ``gamma_amp = 1.5``
    and ``q = 0.4`` (the registry :data:`CREDIT_STRATEGIES`):

    - ``local_chunk``: ``Delta_t = |WAAD_t - WAAD_{t+1}|``, ``T_loc = TopQ(Delta, q)``,
      ``gamma_t = 1 + (gamma_amp - 1) 1[t in T_loc]``;
    - ``global_anchor``: ``T_glob = TopQ(FAI, q)``, the same form of gamma;
    - ``coupled`` (the paper's best): an anchor ``t in T_glob`` is *locally dominated*
      (``t in D``) when ``WAAD_t <= tau_waad`` and ``max_{u in [t-k, t-1]} Delta_u >= tau_delta``;
      ``gamma_t = 1 + (gamma_amp-1) 1[t in T_glob \\ D] + (1-alpha)(gamma_amp-1) 1[t in D]
      + alpha (gamma_amp-1) 1[t in I(D)]``, with ``I(D)`` the anchors' introductory tokens.

Definitions (where the paper is silent, the choice is ours and named here):
    - ``TopQ(x, q)``: the ``ceil(q n)`` largest *finite* values of ``x``, ``n`` the number of
      finite values (``q n`` rounded to 9 decimals first, so 0.3 x 10 selects 3, not 4). NaN is
      never selected (FAI is NaN on the last ``H_lo`` tokens, where its band is empty). Exactly
      that many are selected: ties at the threshold go to the earlier token.
    - ``Delta`` at the last token is NaN (there is no ``WAAD_{t+1}``), so it is never in
      ``T_loc``; ``Delta_t`` is the jump between tokens ``t`` and ``t + 1``, as written.
    - The window ``[t-k, t-1]`` is cut at the response's start; an anchor on the first token has
      an empty window and is never dominated.
    - ``tau_waad`` and ``tau_delta`` (not given by the paper) are quantiles of the trace's own
      WAAD (all tokens) and finite ``Delta`` (``torch.quantile``, linear interpolation); default
      the medians. ``alpha = 0.5`` and ``k = 3`` follow a third-party reimplementation (the
      paper: ``k in {1, 2, 3}``).
    - ``I(D)``: for each ``t in D``, the token of highest WAAD in its window ``[t-k, t-1]`` (ties:
      the one nearest ``t``) -- the WAAD peak before the drop that made ``t`` dominated. One token
      per dominated anchor; a token is in ``I(D)`` once however many anchors it introduces.
    - The indicators add up as the formula is written: a token both in ``T_glob \\ D`` and in
      ``I(D)`` gets ``1 + (gamma_amp-1) + alpha (gamma_amp-1)``.

Alignment:
    ``waad[i]``, ``fai[i]`` and ``gamma[i]`` belong to response token ``i`` (its own attention
    row / column, :mod:`circuits.rhythm.metrics`); ``gamma[i]`` multiplies the advantage of the
    log-probability of *choosing* token ``i`` (computed from the logits of the row before it).

Responses of at most ``H_lo`` tokens have no FAI anywhere (the analysis refuses them);
:func:`rhythm_credit` gives them weight 1 on every token (no shaping) instead of failing a
training step.

Example (plain PyTorch, one GRPO group; ``policy`` is the HF model being trained):
    >>> from circuits.rhythm.credit import CreditConfig, rhythm_credit, stack_weights
    >>> from circuits.rhythm.credit import shape_advantages, policy_gradient_loss
    >>> weights = rhythm_credit(LoadedModel("policy", policy, tokenizer), prompts, responses)
    >>> gamma = stack_weights(weights, width)                      # [batch, width], 1 on padding
    >>> shaped = shape_advantages(advantages, gamma, mask)         # advantages: [batch] (GRPO)
    >>> logits = policy(input_ids=ids, attention_mask=attention).logits[:, -width - 1 : -1]
    >>> logprobs = logits.log_softmax(-1).gather(-1, response_ids[..., None])[..., 0]
    >>> loss = policy_gradient_loss(logprobs, shaped, mask, old_logprobs=old_logprobs)
    >>> loss.backward()

    (``ids`` is prompt + right-padded response, so the last ``width + 1`` rows predict the
    response; ``old_logprobs`` are those of the policy that sampled, or None when on-policy.)
    :mod:`circuits.rhythm.grpo` does the same inside TRL's ``GRPOTrainer``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Iterator, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from circuits.rhythm.analysis import analyse_batch, check_traces
from circuits.rhythm.metrics import RhythmConfig, paper_rl_layers
from circuits.rhythm.traces import Trace
from probe.models import LoadedModel


@dataclass(frozen=True)
class CreditConfig:
    """How the credit weights are computed (defaults: the paper's, and our named choices).

    Attributes:
        strategy: a key of :data:`CREDIT_STRATEGIES`: ``"local_chunk"``, ``"global_anchor"`` or
            ``"coupled"`` (the paper's best; default).
        gamma_amp: the largest single multiplier, >= 1 (paper: 1.5; 1 turns shaping off).
        q: the share of tokens TopQ selects, in (0, 1] (paper: 0.4).
        alpha: the share of a dominated anchor's extra credit moved to its introductory token,
            in [0, 1] (0.5, from a third-party reimplementation; not in the paper).
        k: the look-back window of the coupled rule, an integer >= 1 (3; paper: 1, 2 or 3).
        waad_quantile: ``tau_waad`` as this quantile of the trace's WAAD, in [0, 1] (0.5: the
            median; the paper gives no value).
        delta_quantile: ``tau_delta`` as this quantile of the trace's finite Delta, in [0, 1]
            (0.5; the paper gives no value).
    """

    strategy: str = "coupled"
    gamma_amp: float = 1.5
    q: float = 0.4
    alpha: float = 0.5
    k: int = 3
    waad_quantile: float = 0.5
    delta_quantile: float = 0.5

    def __post_init__(self) -> None:
        if self.strategy not in CREDIT_STRATEGIES:
            raise ValueError(f"unknown credit strategy {self.strategy!r}; choose one of {sorted(CREDIT_STRATEGIES)}")
        if not _is_number(self.gamma_amp) or not 1.0 <= self.gamma_amp < math.inf:
            raise ValueError(f"gamma_amp must be a number >= 1 (1 leaves the advantages unchanged), got "
                             f"{self.gamma_amp!r}; the paper uses 1.5")
        if not _is_number(self.q) or not 0.0 < self.q <= 1.0:
            raise ValueError(f"q (TopQ's share of tokens) must lie in (0, 1], got {self.q!r}; the paper uses 0.4")
        for name in ("alpha", "waad_quantile", "delta_quantile"):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}; the default is "
                                 f"{getattr(CreditConfig, name)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (the coupled rule's look-back window) must be an integer >= 1, got {self.k!r}; "
                             "the paper uses 1, 2 or 3")


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


# --- the pieces of the three rules ------------------------------------------------------------


def top_q(values: Float[Tensor, " response"], q: float) -> Bool[Tensor, " response"]:
    """``TopQ(values, q)``: the ``ceil(q n)`` largest finite values, ``n`` = number of finite values.

    NaN is never selected; ties at the threshold go to the earlier token (a stable sort), so
    exactly ``ceil(q n)`` tokens are selected (``q n`` rounded to 9 decimals before the ceiling).

    Example:
        >>> top_q(torch.tensor([0.1, 0.9, 0.5, float("nan"), 0.5]), 0.5)    # ceil(0.5 x 4) = 2
        tensor([False,  True,  True, False, False])
    """
    finite = torch.isfinite(values)
    count = math.ceil(round(q * int(finite.sum()), 9))
    keyed = torch.where(finite, values.double(), -math.inf)
    order = torch.sort(keyed, descending=True, stable=True).indices[:count]
    chosen = torch.zeros_like(finite)
    chosen[order] = True
    return chosen


def waad_jumps(waad: Float[Tensor, " response"]) -> Float[Tensor, " response"]:
    """``Delta_t = |WAAD_t - WAAD_{t+1}|``; NaN at the last token (no ``WAAD_{t+1}``)."""
    delta = torch.full_like(waad, math.nan, dtype=torch.float64)
    delta[:-1] = (waad[:-1].double() - waad[1:].double()).abs()
    return delta


def window_max(delta: Float[Tensor, " response"], k: int) -> Float[Tensor, " response"]:
    """``max_{u in [t-k, t-1]} Delta_u`` for each ``t``, the window cut at the start (-inf when empty)."""
    out = torch.full_like(delta, -math.inf)
    for back in range(1, min(k, len(delta) - 1) + 1):
        out[back:] = torch.maximum(out[back:], delta[:-back])
    return out


@dataclass(frozen=True)
class CoupledSets:
    """The token sets of the coupled rule, as ``[response]`` masks.

    Attributes:
        anchors: ``T_glob = TopQ(FAI, q)``.
        dominated: ``D``, the locally dominated anchors.
        introductory: ``I(D)``, the dominated anchors' introductory tokens.
        tau_waad: the WAAD threshold used.
        tau_delta: the Delta threshold used.
    """

    anchors: Bool[Tensor, " response"]
    dominated: Bool[Tensor, " response"]
    introductory: Bool[Tensor, " response"]
    tau_waad: float
    tau_delta: float


def coupled_sets(waad: Float[Tensor, " response"], fai: Float[Tensor, " response"], config: CreditConfig) -> CoupledSets:
    """``T_glob``, ``D`` and ``I(D)`` of one response (see the module docstring's definitions)."""
    waad, fai = _checked_signals(waad, fai)
    delta = waad_jumps(waad)
    finite_delta = delta[torch.isfinite(delta)]
    tau_waad = float(torch.quantile(waad, config.waad_quantile))
    tau_delta = float(torch.quantile(finite_delta, config.delta_quantile)) if finite_delta.numel() else math.inf
    anchors = top_q(fai, config.q)
    dominated = anchors & (waad <= tau_waad) & (window_max(delta, config.k) >= tau_delta)
    introductory = torch.zeros_like(dominated)
    for t in dominated.nonzero().flatten().tolist():
        lo = max(0, t - config.k)
        window = waad[lo:t].flip(0)                     # nearest first, so argmax's first hit is the nearest
        introductory[t - 1 - int(torch.argmax(window))] = True
    return CoupledSets(anchors, dominated, introductory, tau_waad, tau_delta)


# --- the strategies --------------------------------------------------------------------------


def local_chunk_weights(waad: Float[Tensor, " response"], fai: Float[Tensor, " response"],
                        config: CreditConfig) -> Float[Tensor, " response"]:
    """Local-chunk credit: ``1 + (gamma_amp - 1) 1[t in TopQ(Delta, q)]`` (FAI unused)."""
    waad, _ = _checked_signals(waad, fai)
    return 1.0 + (config.gamma_amp - 1.0) * top_q(waad_jumps(waad), config.q).double()


def global_anchor_weights(waad: Float[Tensor, " response"], fai: Float[Tensor, " response"],
                          config: CreditConfig) -> Float[Tensor, " response"]:
    """Global-anchor credit: ``1 + (gamma_amp - 1) 1[t in TopQ(FAI, q)]`` (WAAD unused)."""
    _, fai = _checked_signals(waad, fai)
    return 1.0 + (config.gamma_amp - 1.0) * top_q(fai, config.q).double()


def coupled_weights(waad: Float[Tensor, " response"], fai: Float[Tensor, " response"],
                    config: CreditConfig) -> Float[Tensor, " response"]:
    """Coupled rhythm credit: undominated anchors get the full extra credit, dominated ones
    ``1 - alpha`` of it, their introductory tokens ``alpha`` of it (indicators add up)."""
    sets = coupled_sets(waad, fai, config)
    extra = config.gamma_amp - 1.0
    return (1.0 + extra * (sets.anchors & ~sets.dominated).double() + (1.0 - config.alpha) * extra
            * sets.dominated.double() + config.alpha * extra * sets.introductory.double())


Strategy = Callable[[Tensor, Tensor, CreditConfig], Tensor]

CREDIT_STRATEGIES: dict[str, Strategy] = {
    "local_chunk": local_chunk_weights,
    "global_anchor": global_anchor_weights,
    "coupled": coupled_weights,
}
"""The paper's three credit strategies, by name: ``f(waad, fai, config) -> gamma``."""


def credit_weights(waad: Float[Tensor, " response"], fai: Float[Tensor, " response"],
                   config: CreditConfig = CreditConfig()) -> Float[Tensor, " response"]:
    """Per-token multipliers ``gamma_t`` (float64) of one response by ``config.strategy``.

    Args:
        waad: ``[response]`` WAAD, finite (:attr:`~circuits.rhythm.metrics.TokenRhythm.waad`).
        fai: ``[response]`` FAI, NaN where its band is empty (never selected).
        config: strategy and parameters.

    Raises:
        ValueError: vectors that are not 1-d, of different lengths, empty, a non-finite WAAD or
            an infinite FAI.
    """
    return CREDIT_STRATEGIES[config.strategy](waad, fai, config)


def _checked_signals(waad: Tensor, fai: Tensor) -> tuple[Float[Tensor, " response"], Float[Tensor, " response"]]:
    """WAAD and FAI as float64 vectors of one length, or a ValueError naming the fix."""
    if not isinstance(waad, Tensor) or not isinstance(fai, Tensor) or waad.dim() != 1 or fai.dim() != 1:
        raise ValueError("waad and fai must be 1-d tensors, one value per response token (a TokenRhythm's "
                         "waad and fai)")
    if waad.shape != fai.shape:
        raise ValueError(f"waad has {waad.shape[0]} values and fai {fai.shape[0]}; give one value of each per "
                         "response token (the waad and fai of one TokenRhythm)")
    if waad.numel() == 0:
        raise ValueError("waad and fai are empty; credit weights need at least one response token")
    if not torch.isfinite(waad).all() or torch.isinf(fai).any():
        raise ValueError("waad must be finite and fai finite or NaN (NaN only where its band is empty); "
                         "recompute them with circuits.rhythm.metrics.rhythm_metrics")
    return waad.double(), fai.double()


# --- from a model ----------------------------------------------------------------------------


def paper_credit_rhythm(model: LoadedModel) -> RhythmConfig:
    """The paper's RL rhythm settings for ``model``: W = 10, band 10..100, its 5 middle layers."""
    return RhythmConfig(band_lo=10, band_hi=100, layers=paper_rl_layers(model.geometry.n_layers))


def rhythm_credit(model: LoadedModel, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                  config: CreditConfig = CreditConfig(), rhythm: RhythmConfig | None = None,
                  batch_size: int | None = None) -> list[Float[Tensor, " response"]]:
    """Credit weights of each response from one statistics capture of prompt + response.

    The model is switched to eval mode (no dropout) for the capture and restored afterwards;
    no token entropy is computed. Responses of at most ``rhythm.band_lo`` tokens (no FAI
    anywhere) get weight 1 on every token.

    Args:
        model: the policy (or a copy synced to it; the paper's "actor_attn").
        prompt_ids: per response, its prompt's token ids (no padding, at least one).
        response_ids: per response, its token ids (no padding; may be empty).
        config: the credit strategy and parameters.
        rhythm: window, band, head fractions and layers; None: :func:`paper_credit_rhythm`.
        batch_size: responses per capture (None: all in one).

    Returns:
        One float64 ``[len(response)]`` tensor per response, in order.

    Raises:
        ValueError: as :func:`circuits.rhythm.analysis.check_traces` (a prompt + response longer
            than the context), different numbers of prompts and responses, an empty prompt.
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts for {len(response_ids)} responses; give one prompt per response")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive or None, got {batch_size}")
    rhythm = paper_credit_rhythm(model) if rhythm is None else rhythm
    weights = [torch.ones(len(r), dtype=torch.float64) for r in response_ids]
    traces = [bare_trace(i, p, r) for i, (p, r) in enumerate(zip(prompt_ids, response_ids))]
    scored = [t for t in traces if len(t.response_ids) > rhythm.band_lo]
    if not scored:
        return weights
    check_traces(scored, model.geometry.context_length, rhythm)
    step = batch_size or len(scored)
    with eval_mode(model.hf):
        for first in range(0, len(scored), step):
            batch = scored[first:first + step]
            for trace, metrics in zip(batch, analyse_batch(model, batch, rhythm, entropy=False), strict=True):
                weights[trace.index] = credit_weights(metrics.waad, metrics.fai, config)
    return weights


def bare_trace(index: int, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> Trace:
    """A bare trace (ids only) for :func:`~circuits.rhythm.analysis.analyse_batch`."""
    return Trace(index=index, question=None, prompt="", prompt_ids=tuple(int(i) for i in prompt_ids), response="",
                 response_ids=tuple(int(i) for i in response_ids), reference=None, predicted=None, correct=None,
                 stopped_at_eos=None, generation=None)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; every submodule's own mode restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def stack_weights(weights: Sequence[Float[Tensor, " response"]], width: int) -> Float[Tensor, "batch width"]:
    """Per-response weights as one right-padded ``[batch, width]`` tensor (1 on the padding)."""
    long = [i for i, w in enumerate(weights) if len(w) > width]
    if long:
        raise ValueError(f"responses {long} have more than width={width} weights; pass the padded response width")
    out = torch.ones(len(weights), width, dtype=torch.float64)
    for row, w in enumerate(weights):
        out[row, :len(w)] = w
    return out


# --- shaped advantages and the policy-gradient loss ------------------------------------------


def shape_advantages(advantages: Float[Tensor, "batch *response"], weights: Float[Tensor, "batch response"],
                     mask: Tensor | None = None) -> Float[Tensor, "batch response"]:
    """``A~_t = gamma_t A_t`` on signed advantages; 0 outside ``mask``.

    Args:
        advantages: ``[batch]`` per-sequence (GRPO) or ``[batch, response]`` per-token advantages.
        weights: ``[batch, response]`` credit weights (:func:`stack_weights`).
        mask: ``[batch, response]``, nonzero on response tokens (None: every position).

    Returns:
        ``[batch, response]`` shaped advantages, in ``advantages``' dtype.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    if weights.dim() != 2 or advantages.dim() != 2 or advantages.shape[0] != weights.shape[0] \
            or advantages.shape[1] not in (1, weights.shape[1]):
        raise ValueError(f"advantages of shape {tuple(advantages.shape)} do not fit weights of shape "
                         f"{tuple(weights.shape)}; give advantages as [batch] or [batch, response] and weights as "
                         "[batch, response]")
    shaped = advantages * weights.to(advantages.dtype)
    if mask is None:
        return shaped
    if mask.shape != weights.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, weights {tuple(weights.shape)}; give one mask value "
                         "per response position")
    return torch.where(mask.bool(), shaped, torch.zeros((), dtype=shaped.dtype, device=shaped.device))


def _sequence_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def _token_mean(per_token: Tensor, mask: Tensor) -> Tensor:
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


NORMALISATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "sequence": _sequence_mean,  # GRPO: mean over each response's tokens, then over responses (TRL "grpo")
    "token": _token_mean,        # one mean over all tokens of the batch (TRL "bnpo")
}
"""How :func:`policy_gradient_loss` averages the per-token losses."""


def policy_gradient_loss(logprobs: Float[Tensor, "batch response"], advantages: Float[Tensor, "batch response"],
                         mask: Tensor, old_logprobs: Float[Tensor, "batch response"] | None = None,
                         epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                         normalise: str = "sequence") -> Float[Tensor, ""]:
    """The GRPO/PPO clipped surrogate with per-token (shaped) advantages.

    ``loss_t = -min(r_t A~_t, clip(r_t, 1 - epsilon_low, 1 + epsilon_high) A~_t)``, ``r_t =
    exp(logprobs_t - old_logprobs_t)``, averaged by ``normalise`` over ``mask``. No KL or
    entropy term (the paper trains without them).

    Args:
        logprobs: ``[batch, response]`` log-probabilities of the response tokens under the policy
            being trained (with gradients).
        advantages: ``[batch, response]`` shaped advantages (:func:`shape_advantages`).
        mask: ``[batch, response]``, 1 on response tokens, 0 on padding.
        old_logprobs: the sampling policy's log-probabilities (None: on-policy, ``r_t = 1``
            with the gradient of ``logprobs``).
        epsilon_low, epsilon_high: the clip range.
        normalise: a key of :data:`NORMALISATIONS`.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"unknown normalise {normalise!r}; choose one of {sorted(NORMALISATIONS)}")
    if not logprobs.shape == advantages.shape == mask.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)}, advantages {tuple(advantages.shape)} and mask "
                         f"{tuple(mask.shape)} must have one shape [batch, response]; shape [batch] advantages with "
                         "shape_advantages first")
    old = logprobs.detach() if old_logprobs is None else old_logprobs
    ratio = torch.exp(logprobs - old)
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    return NORMALISATIONS[normalise](per_token, mask.to(per_token.dtype))
