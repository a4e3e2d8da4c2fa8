"""Option log-likelihood scoring, batched, with a shortcut for single-token options.

Context:
    The score of option ``k`` of an item is ``sum_t log p(c_t | prompt, c_<t)`` over the tokens
    ``c`` of the continuation (prompt and continuation tokenised separately, as in
    lm-evaluation-harness). The predicted option is the argmax.

    When every option of an item is one token, all options are read from the logits at the
    prompt's last position: one row, one forward, exact. Otherwise each option is its own row
    (prompt + continuation). Rows are left-padded, so every continuation ends at the last column
    and only the last ``max continuation + 1`` positions need logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.evaluation.tasks import Item
from probe.capture.hf import padded_positions


@dataclass(frozen=True)
class Row:
    """One sequence of a scoring batch.

    Attributes:
        ids: token ids (the continuation included when ``appended``).
        item: index of its item.
        options: option indices this row scores.
        continuations: token ids of each scored option.
        appended: the (single) continuation is part of ``ids``; else the options are single
            tokens read at the last position.
    """

    ids: tuple[int, ...]
    item: int
    options: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    appended: bool


@dataclass(frozen=True)
class RowBatch:
    """Left-padded rows ready for a forward."""

    rows: tuple[Row, ...]
    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    position_ids: Int[Tensor, "batch pos"]

    @property
    def keep(self) -> int:
        """Trailing positions whose logits the rows need."""
        return max(len(r.continuations[0]) + 1 if r.appended else 1 for r in self.rows)


def item_tokens(tokenizer, item: Item) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The prompt's token ids and each option's continuation ids."""
    prompt = tuple(tokenizer(item.prompt, add_special_tokens=True)["input_ids"])
    return prompt, [tuple(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in item.options]


def scored_length(tokenizer, item: Item) -> int:
    """Tokens of the longest row that scores ``item`` (prompt plus its longest continuation;
    single-token options are read at the prompt's last position)."""
    prompt, conts = item_tokens(tokenizer, item)
    longest = max(len(c) for c in conts)
    return len(prompt) + (longest if longest > 1 else 0)


def build_rows(tokenizer, items: Sequence[Item], context_length: int | None = None) -> list[Row]:
    """Rows for ``items``: one per item when its options are single tokens, else one per option.

    Raises:
        ValueError: an option that tokenises to nothing, or a row longer than ``context_length``
            (drop such items first, e.g. with :func:`circuits.evaluation.harness.fit_context`).
    """
    rows = []
    for index, item in enumerate(items):
        prompt, conts = item_tokens(tokenizer, item)
        if any(not c for c in conts):
            raise ValueError(f"item {index}: an option tokenises to nothing: {item.options}")
        length = scored_length(tokenizer, item)
        if context_length is not None and length > context_length:
            raise ValueError(f"item {index} needs {length} tokens, more than the model's context of {context_length}; "
                             "leave it out (act eval skips such items and lists them in its report)")
        if all(len(c) == 1 for c in conts):
            rows.append(Row(prompt, index, tuple(range(len(conts))), tuple(conts), appended=False))
        else:
            rows += [Row(prompt + c, index, (k,), (c,), appended=True) for k, c in enumerate(conts)]
    return rows


def batch_rows(rows: Sequence[Row], batch_size: int, pad_id: int) -> list[RowBatch]:
    """Group rows of similar length (less padding) into left-padded batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ordered = sorted(rows, key=lambda r: len(r.ids))
    return [_pad(ordered[i : i + batch_size], pad_id) for i in range(0, len(ordered), batch_size)]


def _pad(rows: Sequence[Row], pad_id: int) -> RowBatch:
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
        mask[i, width - len(row.ids) :] = 1
    positions = padded_positions(mask)
    return RowBatch(tuple(rows), ids, mask, positions)


def row_scores(batch: RowBatch, logits: Float[Tensor, "batch keep vocab"]) -> Iterator[tuple[int, int, float]]:
    """``(item, option, log-likelihood)`` for every option scored by the batch's rows."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    for i, row in enumerate(batch.rows):
        if not row.appended:
            for option, cont in zip(row.options, row.continuations):
                yield row.item, option, float(logp[i, -1, cont[0]])
            continue
        cont = row.continuations[0]
        steps = logp[i, -len(cont) - 1 : -1]  # position t predicts token t + 1
        value = steps.gather(-1, torch.tensor(cont)[:, None]).sum()
        yield row.item, row.options[0], float(value)


def collect(scores: Iterator[tuple[int, int, float]], items: Sequence[Item]) -> list[list[float]]:
    """Per item, the list of option scores (NaN where an option was not scored)."""
    table = [[float("nan")] * len(item.options) for item in items]
    for item, option, value in scores:
        table[item][option] = value
    return table


def run_batch(model, batch: RowBatch, **extra):
    """One HF forward over ``batch``, unembedding only the trailing positions it needs."""
    with torch.no_grad():
        return model.hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            logits_to_keep=batch.keep,
            use_cache=False,
            **extra,
        )


def forward_logits(model, batch: RowBatch) -> Float[Tensor, "batch keep vocab"]:
    """Logits at the trailing positions the batch needs (a plain HF forward)."""
    return run_batch(model, batch).logits


def score_items(model, items: Sequence[Item], batch_size: int = 8) -> list[list[float]]:
    """Option log-likelihoods of ``items`` under ``model`` (edits active in the caller apply)."""
    rows = build_rows(model.tokenizer, items, model.geometry.context_length)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    scores = []
    for batch in batch_rows(rows, batch_size, pad):
        scores += list(row_scores(batch, forward_logits(model, batch)))
    return collect(iter(scores), items)


def correct(table: Sequence[Sequence[float]], items: Sequence[Item]) -> list[bool]:
    """Whether each item's highest-scoring option is its answer."""
    return [max(range(len(s)), key=lambda k: s[k]) == item.answer for s, item in zip(table, items)]
