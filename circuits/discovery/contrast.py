"""The contrast every circuit-discovery task produces and every method reads.

Context:
    Circuit discovery compares a model's behaviour on *clean* prompts (where it does the task) with
    *corrupted* prompts (the same tokens but for the cue the task depends on): IOI's third name,
    greater-than's "01" year, a docstring's wrong argument names. A method scores each head by how
    much of the clean behaviour it carries. The behaviour is the *logit difference* between the
    correct next token and a contrast token (IOI: the indirect object against the subject).

    Positives and negatives (O'Neill & Bui's SAE method, methods dossier section c) are clean and
    corrupted prompts seen as two classes.

Shape:
    One item is a clean prompt, its corrupted twin (the same number of tokens under the model's
    tokenizer, so positions line up), the correct next token and the contrast token, each a single
    token id of that tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class ContrastSet:
    """A task's items, tokenized for one model.

    Attributes:
        task: the task's name (``ioi``, ``greater_than``, ...).
        clean: ``[item, pos]`` token ids of the clean prompts, left-padded.
        corrupted: ``[item, pos]`` token ids of the corrupted prompts, padded like ``clean`` (each
            corrupted prompt has as many tokens as its clean twin).
        attention_mask: ``[item, pos]``, 0 on the padding, 1 on the tokens (shared by both).
        answer: ``[item]`` the correct next token on the clean prompt.
        contrast: ``[item]`` the token the logit difference is taken against.
        texts: the clean prompts as text (for display).
    """

    task: str
    clean: Int[Tensor, "item pos"]
    corrupted: Int[Tensor, "item pos"]
    attention_mask: Int[Tensor, "item pos"]
    answer: Int[Tensor, " item"]
    contrast: Int[Tensor, " item"]
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        n, width = self.clean.shape
        if self.corrupted.shape != (n, width) or self.attention_mask.shape != (n, width):
            raise ValueError(f"clean {tuple(self.clean.shape)}, corrupted {tuple(self.corrupted.shape)} and "
                             f"attention_mask {tuple(self.attention_mask.shape)} must have one shape")
        if self.answer.shape != (n,) or self.contrast.shape != (n,) or len(self.texts) != n:
            raise ValueError(f"answer, contrast and texts must hold one entry per item ({n})")

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def first(self, n: int) -> ContrastSet:
        """The first ``n`` items (all of them when there are fewer), without the columns that are
        padding in every one of them."""
        rows = slice(0, n)
        mask = self.attention_mask[rows]
        start = int(mask.any(0).long().argmax())
        return ContrastSet(task=self.task, clean=self.clean[rows, start:], corrupted=self.corrupted[rows, start:],
                           attention_mask=mask[:, start:], answer=self.answer[rows], contrast=self.contrast[rows],
                           texts=self.texts[rows])

    def rows(self, indices: Sequence[int]) -> ContrastSet:
        """The items at ``indices``, in that order, without the columns that are padding in every
        one of them.

        Raises:
            ValueError: no index.
        """
        if not indices:
            raise ValueError(f"task {self.task!r}: no item left to run on")
        index = torch.tensor(list(indices), dtype=torch.long)
        mask = self.attention_mask[index]
        start = int(mask.any(0).long().argmax())
        return ContrastSet(task=self.task, clean=self.clean[index, start:], corrupted=self.corrupted[index, start:],
                           attention_mask=mask[:, start:], answer=self.answer[index], contrast=self.contrast[index],
                           texts=tuple(self.texts[i] for i in indices))

    @classmethod
    def left_padded(
        cls,
        task: str,
        clean: Sequence[Sequence[int]],
        corrupted: Sequence[Sequence[int]],
        answer: Sequence[int],
        contrast: Sequence[int],
        texts: Sequence[str],
        pad_id: int,
    ) -> ContrastSet:
        """A set from unpadded token-id rows, left-padded with ``pad_id`` to the longest row.

        Raises:
            ValueError: a corrupted row whose length differs from its clean twin's, or no rows.
        """
        if not clean:
            raise ValueError(f"task {task!r}: a contrast set needs at least one item")
        if len(corrupted) != len(clean):
            raise ValueError(f"{len(clean)} clean rows but {len(corrupted)} corrupted ones")
        for i, (a, b) in enumerate(zip(clean, corrupted)):
            if len(a) != len(b):
                raise ValueError(f"item {i}: the clean prompt has {len(a)} tokens, the corrupted one {len(b)}")
        width = max(len(row) for row in clean)
        ids = torch.full((2, len(clean), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(clean), width), dtype=torch.long)
        for i, (a, b) in enumerate(zip(clean, corrupted)):
            start = width - len(a)
            ids[0, i, start:], ids[1, i, start:], mask[i, start:] = torch.tensor(a), torch.tensor(b), 1
        return cls(task=task, clean=ids[0], corrupted=ids[1], attention_mask=mask,
                   answer=torch.tensor(list(answer), dtype=torch.long),
                   contrast=torch.tensor(list(contrast), dtype=torch.long), texts=tuple(texts))
