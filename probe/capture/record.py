"""The typed result of a capture, and its file format (safetensors + JSON).

Context:
    An :class:`AttentionRecord` holds, for a batch of prompts, per recorded layer: the reduced
    statistics (always), the full patterns (pattern mode) and per-head outputs at chosen
    positions (when asked). On disk it is two files written atomically: ``NAME.safetensors``
    (every tensor, keys like ``stats.3.entropy``; no pickle) and ``NAME.json`` (model, tokens,
    config, shapes), readable by any safetensors/JSON reader.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from probe.capture.config import CaptureConfig
from probe.files import atomic_path, write_text_atomic

FORMAT_VERSION = 1


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

    def pattern(self, layer: int, prompt: int = 0) -> Float[Tensor, "head q k"]:
        """Full pattern of one prompt without padding rows/columns (pattern mode only)."""
        if layer not in self.patterns:
            raise KeyError(f"layer {layer} has no pattern; capture with mode='pattern' (recorded: {sorted(self.patterns)})")
        start = self.offset(prompt)
        return self.patterns[layer][prompt, :, start:, start:]

    def save(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``path.safetensors`` and ``path.json`` atomically; returns both paths."""
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
        tensors = _flatten(self)
        meta = self.metadata()
        tensor_path, json_path = base.with_suffix(".safetensors"), base.with_suffix(".json")
        with atomic_path(tensor_path) as tmp:
            save_file(tensors, str(tmp), metadata={"headscope": json.dumps(meta)})
        write_text_atomic(json_path, json.dumps(meta, indent=1))
        return tensor_path, json_path

    def metadata(self) -> dict:
        return {
            "format": "headscope.attention_record",
            "version": FORMAT_VERSION,
            "model": self.model,
            "config": self.config.to_dict(),
            "tokens": self.tokens,
            "n_heads": self.n_heads,
            "layers": self.layers,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AttentionRecord":
        """Read a record written by :meth:`save` (either file's path, or the common stem)."""
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".safetensors", ".json") else base
        json_path, tensor_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
        try:
            meta = json.loads(json_path.read_text())
            tensors = load_file(str(tensor_path))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read attention record {base}: {err}") from err
        if meta.get("format") != "headscope.attention_record":
            raise ValueError(f"{json_path} is not a headscope attention record")
        return _unflatten(meta, tensors)


def _flatten(record: AttentionRecord) -> dict[str, Tensor]:
    flat = {"input_ids": record.input_ids, "attention_mask": record.attention_mask}
    if record.last_logits is not None:
        flat["last_logits"] = record.last_logits
    for layer, stats in record.stats.items():
        flat.update({f"stats.{layer}.{name}": value for name, value in stats.items()})
    flat.update({f"patterns.{layer}": value for layer, value in record.patterns.items()})
    flat.update({f"head_outputs.{layer}": value for layer, value in record.head_outputs.items()})
    return {key: value.detach().contiguous().cpu() for key, value in flat.items()}


def _unflatten(meta: dict, tensors: dict[str, Tensor]) -> AttentionRecord:
    stats: dict[int, dict[str, Tensor]] = {layer: {} for layer in meta["layers"]}
    patterns, head_outputs = {}, {}
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "stats":
            layer, _, name = rest.partition(".")
            stats.setdefault(int(layer), {})[name] = value
        elif kind == "patterns":
            patterns[int(rest)] = value
        elif kind == "head_outputs":
            head_outputs[int(rest)] = value
    return AttentionRecord(
        model=meta["model"],
        config=CaptureConfig.from_dict(meta["config"]),
        tokens=meta["tokens"],
        input_ids=tensors["input_ids"],
        attention_mask=tensors["attention_mask"],
        n_heads=meta["n_heads"],
        stats=stats,
        patterns=patterns,
        head_outputs=head_outputs,
        last_logits=tensors.get("last_logits"),
    )

