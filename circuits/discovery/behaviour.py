"""How well a model does a task: accuracy and logit difference on clean and corrupted prompts.

Context:
    Circuit discovery only means something where the model does the task: the heads that carry
    a behaviour the model lacks are noise. :func:`task_behaviour` runs the clean and the
    corrupted prompts of a :class:`ContrastSet` and reads the logits of the next token:

    - the logit difference ``logit(answer) - logit(contrast)`` per item, on clean prompts (large
      and positive where the model does the task) and on corrupted ones (near zero or negative:
      the cue is gone);
    - accuracy two ways: the answer is the model's top token among the whole vocabulary, and
      the answer beats the contrast (logit difference > 0).

    Items the model gets wrong are listed by index (:attr:`TaskBehaviour.wrong`), so a method
    run on "positives" can leave them out knowingly rather than by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuits.discovery.contrast import ContrastSet
from probe.capture.hf import run_forward
from probe.errors import InputError
from probe.models.loading import LoadedModel


@dataclass(frozen=True)
class TaskBehaviour:
    """A model's behaviour on a task's items.

    Attributes:
        task: the task's name.
        clean_logit_diff: ``logit(answer) - logit(contrast)`` at the last clean position, per item.
        corrupted_logit_diff: the same on the corrupted prompts.
        clean_top: whether the answer is the top token (argmax over the vocabulary) on the clean prompt.
    """

    task: str
    clean_logit_diff: Float[Tensor, " item"]
    corrupted_logit_diff: Float[Tensor, " item"]
    clean_top: Bool[Tensor, " item"]

    @property
    def accuracy(self) -> float:
        """Share of items whose answer is the top token on the clean prompt."""
        return float(self.clean_top.float().mean())

    @property
    def pairwise_accuracy(self) -> float:
        """Share of items whose answer's logit exceeds the contrast's on the clean prompt."""
        return float((self.clean_logit_diff > 0).float().mean())

    @property
    def mean_clean_logit_diff(self) -> float:
        return float(self.clean_logit_diff.mean())

    @property
    def mean_corrupted_logit_diff(self) -> float:
        return float(self.corrupted_logit_diff.mean())

    @property
    def wrong(self) -> tuple[int, ...]:
        """Items whose answer does not beat the contrast on the clean prompt."""
        return tuple(torch.nonzero(self.clean_logit_diff <= 0).flatten().tolist())

    @property
    def not_top(self) -> tuple[int, ...]:
        """Items whose answer is not the top token on the clean prompt."""
        return tuple(torch.nonzero(~self.clean_top).flatten().tolist())

    def summary(self) -> str:
        n = len(self.clean_top)
        return (f"{self.task}: {n} items; answer on top {self.accuracy:.1%}, above the contrast "
                f"{self.pairwise_accuracy:.1%} ({len(self.wrong)} wrong); mean logit difference "
                f"{self.mean_clean_logit_diff:+.3f} clean, {self.mean_corrupted_logit_diff:+.3f} corrupted")

    def to_dict(self) -> dict:
        """Plain numbers and lists (JSON-ready), the per-item values included."""
        return {
            "task": self.task,
            "items": len(self.clean_top),
            "accuracy": self.accuracy,
            "pairwise_accuracy": self.pairwise_accuracy,
            "mean_clean_logit_diff": self.mean_clean_logit_diff,
            "mean_corrupted_logit_diff": self.mean_corrupted_logit_diff,
            "wrong": list(self.wrong),
            "not_top": list(self.not_top),
            "clean_logit_diff": self.clean_logit_diff.tolist(),
            "corrupted_logit_diff": self.corrupted_logit_diff.tolist(),
            "clean_top": self.clean_top.tolist(),
        }


def task_behaviour(model: LoadedModel, contrast: ContrastSet, batch_size: int = 16) -> TaskBehaviour:
    """Accuracy and logit differences of ``model`` on ``contrast``, ``batch_size`` prompts a forward.

    Raises:
        InputError: ``batch_size`` below 1, an empty set, or token ids beyond the model's
            vocabulary (a set built with another tokenizer).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(contrast) == 0:
        raise InputError(f"task {contrast.task!r} has no items")
    _check_vocabulary(model, contrast)
    clean = _last_logits(model, contrast.clean, contrast.attention_mask, batch_size)
    corrupted = _last_logits(model, contrast.corrupted, contrast.attention_mask, batch_size)
    return TaskBehaviour(
        task=contrast.task,
        clean_logit_diff=_logit_diff(clean, contrast),
        corrupted_logit_diff=_logit_diff(corrupted, contrast),
        clean_top=clean.argmax(-1) == contrast.answer,
    )


def _last_logits(model: LoadedModel, ids: Tensor, mask: Tensor, batch_size: int) -> Float[Tensor, "item vocab"]:
    """Next-token logits at each row's last position, in batches of left-padded rows."""
    out = []
    for start in range(0, len(ids), batch_size):
        rows, rows_mask = ids[start : start + batch_size], mask[start : start + batch_size]
        first = int(rows_mask.any(0).long().argmax())  # columns before it are padding in every row
        out.append(run_forward(model.hf, rows[:, first:], rows_mask[:, first:]))
    return torch.cat(out)


def _logit_diff(logits: Float[Tensor, "item vocab"], contrast: ContrastSet) -> Float[Tensor, " item"]:
    answer = logits.gather(1, contrast.answer[:, None]).squeeze(1)
    other = logits.gather(1, contrast.contrast[:, None]).squeeze(1)
    return answer - other


def _check_vocabulary(model: LoadedModel, contrast: ContrastSet) -> None:
    vocab = model.hf.get_input_embeddings().num_embeddings
    largest = max(int(t.max()) for t in (contrast.clean, contrast.corrupted, contrast.answer, contrast.contrast))
    if largest >= vocab:
        raise InputError(f"task {contrast.task!r}: token id {largest} is beyond the vocabulary of {model.name!r} "
                         f"({vocab} tokens); the set was built with another tokenizer: build it with "
                         "circuits.discovery.tasks.load_task(task, model.tokenizer)")
