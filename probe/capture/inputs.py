"""Turn prompts into a padded batch, refusing bad input with a message that says the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from probe.errors import InputError
from probe.models.families import HeadGeometry

__all__ = ["Batch", "InputError", "batch_from_ids", "check_heads", "check_layers", "integer_indices", "position_columns",
           "tokenize"]


@dataclass(frozen=True)
class Batch:
    """A checked, left-padded batch.

    Attributes:
        input_ids, attention_mask: ``[batch, pos]``.
        tokens: per prompt, its token strings (no padding).
        model_inputs: further inputs of the model's forward (a VLM's ``pixel_values`` ...).
        image_mask: True at image-token positions (captures with images), else None.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    tokens: list[list[str]]
    model_inputs: dict[str, Tensor] = field(default_factory=dict)
    image_mask: Bool[Tensor, "batch pos"] | None = None


def tokenize(tokenizer, prompts: object, context_length: int | None) -> Batch:
    """Left-padded batch of ``prompts``; every prompt must be non-empty and fit the context."""
    prompts = _prompt_list(prompts)
    if not prompts:
        raise InputError("no prompts given; pass at least one non-empty prompt")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"prompt {index} is empty; every prompt needs some text")
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    for index, ids in enumerate(encoded):
        if context_length is not None and len(ids) > context_length:
            raise InputError(
                f"prompt {index} has {len(ids)} tokens, longer than the model's context window of "
                f"{context_length}; shorten it or split it"
            )
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in encoded]
    return Batch(input_ids=input_ids, attention_mask=attention_mask, tokens=[_readable(t, tokenizer) for t in tokens])


def batch_from_ids(tokenizer, input_ids: Tensor, attention_mask: Tensor, context_length: int | None,
                   vocab_size: int | None = None) -> Batch:
    """A batch of token ids the caller already has (left-padded), checked like :func:`tokenize`'s.

    Args:
        tokenizer: names the tokens (``Batch.tokens``); nothing is re-tokenized.
        input_ids: ``[batch, pos]`` integer ids, each row's padding on the left.
        attention_mask: ``[batch, pos]``, 0 on the padding and 1 on the tokens; each row's ones
            form one block that ends at the last column.
        context_length: the model's context window (None: unbounded).
        vocab_size: ids must lie in ``0 .. vocab_size - 1`` (None: unchecked).

    Raises:
        InputError: shapes that differ or are not 2-d, ids that are not integers or lie outside
            the vocabulary, a mask that is not 0/1 left padding, an empty row, or a row longer
            than the context.
    """
    input_ids, attention_mask = _checked_id_tensors(input_ids, attention_mask)
    lengths = attention_mask.sum(1).tolist()
    width = input_ids.shape[1]
    for row, length in enumerate(lengths):
        if length == 0:
            raise InputError(f"prompt {row} is empty (its attention mask is all 0); every row needs at least one token")
        if not bool(attention_mask[row, width - length:].all()):
            raise InputError(f"prompt {row}'s attention mask is not left padding (0s, then 1s to the last column); "
                             "pad on the left, e.g. tokenizer.padding_side = 'left'")
        if context_length is not None and length > context_length:
            raise InputError(f"prompt {row} has {length} tokens, longer than the model's context window of "
                             f"{context_length}; shorten it or split it")
    real = input_ids[attention_mask.bool()]
    if vocab_size is not None and real.numel() and not (0 <= int(real.min()) and int(real.max()) < vocab_size):
        raise InputError(f"token ids must lie in 0..{vocab_size - 1} (the model's vocabulary), got ids from "
                         f"{int(real.min())} to {int(real.max())}; were they made by another tokenizer?")
    ids = [input_ids[row, width - length:].tolist() for row, length in enumerate(lengths)]
    tokens = [_readable(tokenizer.convert_ids_to_tokens(row), tokenizer) for row in ids]
    return Batch(input_ids=input_ids, attention_mask=attention_mask, tokens=tokens)


def _checked_id_tensors(input_ids, attention_mask) -> tuple[Tensor, Tensor]:
    """``input_ids`` and ``attention_mask`` as 2-d long tensors of one shape, the mask 0/1."""
    if not isinstance(input_ids, Tensor) or not isinstance(attention_mask, Tensor):
        raise InputError("input_ids and attention_mask must be torch tensors [batch, pos]; "
                         "circuits.rhythm.traces.left_pad builds both from lists of ids")
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape or input_ids.shape[1] == 0:
        raise InputError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both be [batch, pos], of the same non-empty shape")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise InputError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise InputError("attention_mask must hold only 0 (padding) and 1 (token)")
    return input_ids.long().cpu(), attention_mask.long().cpu()


def _prompt_list(prompts) -> list:
    """``prompts`` as a list, refusing types that are not text (bytes would iterate as integers)."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (bytes, bytearray)):
        raise InputError("prompts are bytes; decode them first, e.g. prompts.decode('utf-8')")
    if not isinstance(prompts, (list, tuple)):
        raise InputError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {index} is a {type(prompt).__name__}, not a string; pass text")
    return list(prompts)


def _readable(tokens: list[str], tokenizer) -> list[str]:
    """Token strings as text (byte-level BPE markers like 'Ġ' turned back into spaces)."""
    convert = getattr(tokenizer, "convert_tokens_to_string", None)
    if convert is None:
        return tokens
    return [convert([t]) for t in tokens]


def check_layers(layers: object, geometry: HeadGeometry) -> tuple[int, ...]:
    """Validate layer indices (negative ones count from the end); None means all layers.

    Returns the sorted, de-duplicated non-negative indices. An empty selection is an error (it
    would record nothing), and so is an index that is not an integer.
    """
    if layers is None:
        return tuple(range(geometry.n_layers))
    layers = integer_indices(layers, "layers")
    checked = []
    for layer in layers:
        if not -geometry.n_layers <= layer < geometry.n_layers:
            raise InputError(
                f"layer {layer} is out of range: the model has {geometry.n_layers} layers (0..{geometry.n_layers - 1})"
            )
        checked.append(layer % geometry.n_layers)
    return tuple(sorted(set(checked)))


def integer_indices(values, what: str) -> tuple[int, ...]:
    """``values`` as a non-empty tuple of integers; anything else is an :class:`InputError`.

    Accepts Python and NumPy/torch integers; refuses floats (``1.5``, even ``1.0``), booleans and
    strings, which would otherwise be truncated or compared silently.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(f"{what} must be a list of integers, got {values!r}")
    values = tuple(values)
    if not values:
        raise InputError(f"{what} is empty; pass at least one index, or None for all")
    for value in values:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise InputError(f"{what} must be integers, got {value!r}")
    return tuple(int(value.__index__()) for value in values)


def check_heads(heads: object, geometry: HeadGeometry) -> tuple[int, ...]:
    """Validate head indices; None means all heads."""
    if heads is None:
        return tuple(range(geometry.n_heads))
    heads = integer_indices(heads, "heads")
    for head in heads:
        if not 0 <= head < geometry.n_heads:
            raise InputError(
                f"head {head} is out of range: each layer has {geometry.n_heads} heads (0..{geometry.n_heads - 1})"
            )
    return tuple(sorted(set(heads)))


def position_columns(positions: tuple[int, ...], attention_mask: Tensor) -> Int[Tensor, "batch p"]:
    """Columns of per-prompt token positions in a left-padded batch (negative from the end)."""
    lengths = attention_mask.sum(1)
    width = attention_mask.shape[1]
    cols = []
    for pos in positions:
        if pos >= 0 and bool((pos >= lengths).any()):
            raise InputError(f"position {pos} is beyond the shortest prompt ({int(lengths.min())} tokens)")
        if pos < 0 and bool((-pos > lengths).any()):
            raise InputError(f"position {pos} is before the start of the shortest prompt ({int(lengths.min())} tokens)")
        cols.append(width - lengths + pos if pos >= 0 else torch.full_like(lengths, width + pos))
    return torch.stack(cols, dim=1) if cols else torch.zeros(len(lengths), 0, dtype=torch.long)
