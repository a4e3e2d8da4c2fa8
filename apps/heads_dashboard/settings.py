"""Frozen settings: how the app runs, and the edits a user asked for in the UI."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from probe.capture.inputs import InputError
from probe.edits import ScaleHeads, act_calibration
from probe.edits.spec import Edit
from probe.models import DEFAULT_MODEL

EXAMPLE_PROMPTS = (
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is Paris. The capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
)


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard runs.

    Attributes:
        model: model name for :func:`probe.load_model` (registered name, folder or hub id).
        host, port: where the server listens; localhost by default because the app runs
            arbitrary prompts through a model and has no authentication.
        record: a saved :class:`~probe.AttentionRecord` (either file or the stem) to show
            besides live prompts.
        long_input_tokens: prompts longer than this are captured in statistics mode and shown
            as summaries (attention received per key, entropy per query): full patterns grow as
            ``layers x heads x tokens^2`` and a 512x512 heatmap is unreadable anyway.
        cache_entries: captures kept in the LRU cache (a 256-token pattern capture of
            SmolLM2 holds about 70 MB of patterns).
        top_tokens: next-token candidates shown in the edits panel.
        vision_model: the vision panel's own vision-language model (loaded on its first run, not
            at start-up; the main ``model`` stays a text LM).
    """

    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 8050
    record: Path | None = None
    long_input_tokens: int = 256
    cache_entries: int = 8
    top_tokens: int = 10
    vision_model: str = "synth-llava"

    def __post_init__(self) -> None:
        if self.long_input_tokens < 1:
            raise ValueError(f"long_input_tokens must be positive, got {self.long_input_tokens}")
        if self.cache_entries < 1:
            raise ValueError(f"cache_entries must be positive, got {self.cache_entries}")


ACT_FIRST_LAYER = 2


@dataclass(frozen=True)
class EditSettings:
    """The edits chosen in the edits panel; hashable, so it can key the capture cache.

    Attributes:
        act: apply ACT calibration (Yu et al. 2024) with its default tau and beta to every head of
            layers ``ACT_FIRST_LAYER`` and up (ACT's code calibrates layers 2.. of Llama-2; the
            first two layers have no sinks to spare).
        scaled_heads: ``(layer, head)`` pairs whose outputs are multiplied by ``factor``.
        factor: head-output multiplier (0 ablates the heads).
    """

    act: bool = False
    scaled_heads: tuple[tuple[int, int], ...] = ()
    factor: float = 0.0

    def __post_init__(self) -> None:
        ScaleHeads(self.factor)  # the edit's own check: a finite factor of sensible size (InputError)

    @property
    def is_empty(self) -> bool:
        return not self.act and not self.scaled_heads

    def to_edits(self, n_layers: int) -> list[Edit]:
        """The :mod:`probe.edits` edits these settings stand for, on a model of ``n_layers``."""
        edits: list[Edit] = [act_calibration(layers=range(ACT_FIRST_LAYER, n_layers))] if self.act else []
        edits += [ScaleHeads(self.factor, layers=[layer], heads=[head]) for layer, head in self.scaled_heads]
        return edits

    def describe(self) -> str:
        parts = ["ACT calibration"] if self.act else []
        if self.scaled_heads:
            heads = ", ".join(f"L{layer}.H{head}" for layer, head in self.scaled_heads)
            parts.append(f"heads {heads} x {self.factor:g}")
        return " + ".join(parts) or "no edit"

    def check(self, n_layers: int, n_heads: int) -> None:
        """Raise :class:`InputError` if a scaled head does not exist in the model."""
        for layer, head in self.scaled_heads:
            if not 0 <= layer < n_layers:
                raise InputError(f"layer {layer} does not exist: the model has {n_layers} layers (0..{n_layers - 1})")
            if not 0 <= head < n_heads:
                raise InputError(f"head {head} does not exist: each layer has {n_heads} heads (0..{n_heads - 1})")

    @classmethod
    def from_ui(cls, act: list[str] | None, heads_text: str | None, factor: float | None) -> "EditSettings":
        """Parse the panel's widgets; a malformed head list raises :class:`InputError`."""
        return cls(
            act=bool(act),
            scaled_heads=parse_heads(heads_text or ""),
            factor=0.0 if factor is None else float(factor),
        )


_HEAD = re.compile(r"^\s*L?(\d+)\s*[.:]\s*H?(\d+)\s*$", re.IGNORECASE)


def parse_heads(text: str) -> tuple[tuple[int, int], ...]:
    """``"3.4, L5.H1"`` -> ``((3, 4), (5, 1))``; empty text -> no heads."""
    pairs = []
    for part in filter(str.strip, text.split(",")):
        match = _HEAD.match(part)
        if match is None:
            raise InputError(f"cannot read head {part.strip()!r}: write heads as LAYER.HEAD, e.g. 3.4, 5.1")
        pairs.append((int(match.group(1)), int(match.group(2))))
    return tuple(dict.fromkeys(pairs))
