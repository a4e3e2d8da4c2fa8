"""The typed result of a capture, and its file format: one self-describing safetensors file.

Context:
    An :class:`AttentionRecord` holds, for a batch of prompts, per recorded layer: the reduced
    statistics (always), the full patterns (pattern mode) and per-head outputs at chosen
    positions (when asked), and, for captures with images on a vision-language model, the
    ``image_mask`` of the image-token positions. On disk it is ONE file, ``NAME.safetensors``,
    written atomically (:func:`probe.files.atomic_path`): every tensor (keys like
    ``stats.3.entropy``; no pickle), and in the header metadata, readable by any safetensors
    reader,

    * ``"headscope"``: the JSON description (format, version 2, model, capture config, tokens,
      n_heads, layers);
    * ``"headscope.digest"``: ``blake2b:<hex>`` over that JSON text and every tensor's name,
      dtype, shape and bytes in sorted key order, so a changed byte anywhere is noticed.

    The image mask is stored as the boolean tensor ``image_mask`` (absent for text-only captures).

    :meth:`AttentionRecord.load` checks the header, the shapes against the description (see the
    table in :mod:`probe.attention.spec`) and the digest, and refuses a damaged, edited or
    mismatched file with one ``ValueError`` naming the file, the problem and the fix. Records of
    format version 1 (``NAME.safetensors`` + ``NAME.json``, no digest) still load; the
    description in the tensor file's header is preferred over the ``.json`` beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jaxtyping import Bool, Float, Int
from torch import Tensor

from probe.capture.config import CaptureConfig
from probe.capture.record_file import (
    FORMAT,
    FORMAT_VERSION,
    check_config,
    check_digest,
    check_metadata,
    checked_fields,
    read_stored,
    write_record,
)


@dataclass(frozen=True)
class AttentionRecord:
    """Attention captured from one batch of prompts.

    Attributes:
        model: model name.
        config: the capture settings.
        tokens: per prompt, its token strings (no padding).
        input_ids, attention_mask: ``[batch, pos]``, left-padded.
        n_heads: query heads per layer.
        stats: layer -> statistic name -> tensor (shapes in :mod:`probe.attention.spec`).
        patterns: layer -> ``[batch, head, query, key]`` (pattern mode only).
        head_outputs: layer -> ``[batch, position, head, head_dim]`` at ``config.head_output_positions``.
        last_logits: ``[batch, vocab]`` logits at each prompt's last token.
        image_mask: ``[batch, pos]``, True at image-token positions (captures with images on a
            vision-language model); None for text-only captures.
    """

    model: str
    config: CaptureConfig
    tokens: list[list[str]]
    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    n_heads: int
    stats: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    patterns: dict[int, Float[Tensor, "batch head q k"]] = field(default_factory=dict)
    head_outputs: dict[int, Float[Tensor, "batch p head d"]] = field(default_factory=dict)
    last_logits: Float[Tensor, "batch vocab"] | None = None
    image_mask: Bool[Tensor, "batch pos"] | None = None

    @property
    def layers(self) -> list[int]:
        return sorted(self.stats)

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def offset(self, prompt: int) -> int:
        """Column of prompt ``prompt``'s first token (left padding)."""
        return int(self.input_ids.shape[1] - len(self.tokens[prompt]))

    def stat(self, layer: int, name: str, prompt: int = 0) -> Tensor:
        """One statistic for one prompt, padding columns removed (``[head, ...]``)."""
        try:
            value = self.stats[layer][name][prompt]
        except KeyError:
            raise KeyError(f"no statistic {name!r} for layer {layer}; recorded layers {self.layers}, "
                           f"statistics {sorted(self.stats.get(layer, {}))}") from None
        if name.startswith("block_"):
            return value
        start = self.offset(prompt)
        return value[..., start:]

    def image_positions(self, prompt: int = 0) -> list[int]:
        """Positions (0 = the prompt's first token) of prompt ``prompt``'s image tokens; [] without images."""
        if self.image_mask is None:
            return []
        row = self.image_mask[prompt, self.offset(prompt):]
        return [int(i) for i in row.nonzero().flatten()]

    def pattern(self, layer: int, prompt: int = 0) -> Float[Tensor, "head q k"]:
        """Full pattern of one prompt without padding rows/columns (pattern mode only)."""
        if layer not in self.patterns:
            raise KeyError(f"layer {layer} has no pattern; capture with mode='pattern' (recorded: {sorted(self.patterns)})")
        start = self.offset(prompt)
        return self.patterns[layer][prompt, :, start:, start:]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record to one file, atomically; returns its path.

        Args:
            path: ``NAME.safetensors``, or a stem ``NAME`` (``.safetensors`` is appended).
        """
        return write_record(path, _flatten(self), self.metadata())

    def metadata(self) -> dict:
        """The JSON description stored in the file's header."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.model,
            "config": self.config.to_dict(),
            "tokens": self.tokens,
            "n_heads": self.n_heads,
            "layers": self.layers,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AttentionRecord":
        """Read and check a record written by :meth:`save`.

        Args:
            path: the ``.safetensors`` file, its stem, or (old two-file records) the ``.json``.

        Raises:
            ValueError: the file is missing, unreadable, not a record, or its tensors, description
                and checksum disagree; the message names the file, the problem and the fix.
        """
        stored = read_stored(path)
        meta = check_metadata(stored)
        config = check_config(meta, stored.source)
        record = cls(**checked_fields(meta, config, stored))
        check_digest(stored, meta)
        return record


def _flatten(record: AttentionRecord) -> dict[str, Tensor]:
    flat = {"input_ids": record.input_ids, "attention_mask": record.attention_mask}
    if record.last_logits is not None:
        flat["last_logits"] = record.last_logits
    if record.image_mask is not None:
        flat["image_mask"] = record.image_mask
    for layer, stats in record.stats.items():
        flat.update({f"stats.{layer}.{name}": value for name, value in stats.items()})
    flat.update({f"patterns.{layer}": value for layer, value in record.patterns.items()})
    flat.update({f"head_outputs.{layer}": value for layer, value in record.head_outputs.items()})
    return {key: value.detach().contiguous().cpu() for key, value in flat.items()}
