"""GRPO with rhythm credit: TRL's ``GRPOTrainer`` with per-token advantages ``gamma_t A``.

Context:
    Li et al. (arXiv 2510.13554, section 5) multiply each token's GRPO advantage by a credit
    weight read off the policy's own attention (:mod:`circuits.rhythm.credit`), on both signs,
    and keep the clipped objective otherwise unchanged. :class:`RhythmCreditGRPOTrainer` does
    that inside TRL. Import this module directly (it imports ``trl``; ``import circuits.rhythm``
    does not). Install with ``pip install -e ".[rl]"``.

The hook (written against TRL 1.16.0):
    ``GRPOTrainer._generate_and_score_completions`` returns, per generation batch, a dict with
    ``prompt_ids`` / ``prompt_mask`` (left-padded), ``completion_ids`` / ``completion_mask``
    (right-padded) and ``advantages`` of shape ``[batch]``; ``_prepare_inputs`` shuffles and
    splits that dict along its first axis, and ``GRPOTrainer._compute_loss`` reads
    ``inputs["advantages"]``, unsqueezing it to ``[batch, 1]`` *only when it is 1-d* ("To
    support subclasses that provide advantages with shape (B, T)"). The override therefore
    replaces ``advantages`` by the ``[batch, completion]`` tensor ``advantages[:, None] *
    gamma`` (0 on padding) right after generation and scoring, and leaves the loss to TRL: every
    loss type (``grpo``, ``bnpo``, ``dr_grpo``, ``dapo``, ``cispo``, ``sapo``, ``luspo``,
    ``vespo``) then uses the shaped per-token advantage where it used ``A``. The weights come
    from one statistics capture of the unwrapped policy (eval mode, no gradients) over each
    prompt + completion -- the paper's "actor_attn" forward, here on the policy itself.

    It relies on those keys and shapes, and on ``_compute_loss`` accepting 2-d advantages;
    :func:`check_trl_internals` refuses a TRL without them at construction, and the override
    checks the keys and shapes on every batch, each with a :class:`TRLInternalsError` naming the
    TRL version this was written against.

Not covered: PEFT-wrapped or sharded (ZeRO-3 / FSDP) policies (the capture needs the plain HF
model's attention modules), and vision-language prompts.

Example:
    >>> from trl import GRPOConfig
    >>> from circuits.rhythm.credit import CreditConfig
    >>> from circuits.rhythm.grpo import RhythmCreditGRPOTrainer
    >>> trainer = RhythmCreditGRPOTrainer(model=policy, reward_funcs=reward, args=GRPOConfig(...),
    ...                                   train_dataset=dataset, processing_class=tokenizer,
    ...                                   credit=CreditConfig(strategy="coupled"))
    >>> trainer.train()
"""

from __future__ import annotations

import inspect
from typing import Any

import trl
from jaxtyping import Float
from torch import Tensor
from trl import GRPOTrainer

from circuits.rhythm.credit import CreditConfig, rhythm_credit, shape_advantages, stack_weights
from circuits.rhythm.metrics import RhythmConfig
from probe.models import LoadedModel

TRL_VERSION = "1.16.0"
"""The TRL release the override was written against."""

OUTPUT_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages")
"""What the override reads from ``_generate_and_score_completions``' result."""

PER_TOKEN_MARK = "advantages.dim() == 1"
"""The line of ``GRPOTrainer._compute_loss`` that lets ``[batch, completion]`` advantages through."""


class TRLInternalsError(RuntimeError):
    """The installed TRL lacks an internal the override relies on."""


def _incompatible(what: str) -> TRLInternalsError:
    return TRLInternalsError(f"RhythmCreditGRPOTrainer was written against trl=={TRL_VERSION} and needs {what}; "
                             f"installed: trl {trl.__version__}. Install trl=={TRL_VERSION} "
                             "(pip install -e '.[rl]') or adapt circuits/rhythm/grpo.py")


def check_trl_internals(trainer: type = GRPOTrainer) -> None:
    """Raise :class:`TRLInternalsError` unless ``trainer`` has the hooks the override uses."""
    for name in ("_generate_and_score_completions", "_compute_loss"):
        if not callable(getattr(trainer, name, None)):
            raise _incompatible(f"GRPOTrainer.{name}")
    try:
        source = inspect.getsource(trainer._compute_loss)
    except (OSError, TypeError):
        source = ""
    if PER_TOKEN_MARK not in source:
        raise _incompatible("GRPOTrainer._compute_loss to accept [batch, completion] advantages "
                            f"(the `if {PER_TOKEN_MARK}` unsqueeze)")


class RhythmCreditGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose per-token advantages are ``gamma_t A`` (rhythm credit, Li et al. section 5).

    Args:
        *args, **kwargs: as for ``trl.GRPOTrainer``.
        credit: the credit strategy and parameters (default: coupled, gamma_amp 1.5, q 0.4).
        rhythm: the rhythm settings of the capture (None: the paper's RL settings for the
            policy, :func:`~circuits.rhythm.credit.paper_credit_rhythm`: W 10, band 10..100,
            5 middle layers).

    Raises:
        TRLInternalsError: the installed TRL lacks the internals named in the module docstring.
    """

    def __init__(self, *args: Any, credit: CreditConfig = CreditConfig(), rhythm: RhythmConfig | None = None,
                 **kwargs: Any) -> None:
        check_trl_internals()
        super().__init__(*args, **kwargs)
        self.credit = credit
        self.rhythm = rhythm

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's generation and scoring, then ``advantages`` [batch] -> shaped [batch, completion]."""
        output = super()._generate_and_score_completions(inputs)
        missing = [key for key in OUTPUT_KEYS if key not in output]
        if missing:
            raise _incompatible(f"_generate_and_score_completions to return {', '.join(missing)}")
        advantages, completion_mask = output["advantages"], output["completion_mask"]
        if advantages.dim() != 1 or advantages.shape[0] != completion_mask.shape[0]:
            raise _incompatible(f"[batch] advantages from _generate_and_score_completions (got shape "
                                f"{tuple(advantages.shape)} for {completion_mask.shape[0]} completions)")
        weights = self.credit_weights(output).to(device=advantages.device)
        output["advantages"] = shape_advantages(advantages, weights, completion_mask)
        return output

    def credit_weights(self, output: dict[str, Any]) -> Float[Tensor, "batch completion"]:
        """``[batch, completion]`` credit weights of a generation batch (1 on padding)."""
        policy = LoadedModel(name="policy", hf=self.accelerator.unwrap_model(self.model),
                             tokenizer=self.processing_class)
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(output["prompt_ids"], output["prompt_mask"])]
        completions = [ids[mask.bool()].tolist()
                       for ids, mask in zip(output["completion_ids"], output["completion_mask"])]
        weights = rhythm_credit(policy, prompts, completions, self.credit, self.rhythm)
        return stack_weights(weights, output["completion_ids"].shape[1])
