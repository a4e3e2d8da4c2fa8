"""Capture settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from probe.attention.spec import StatRequest

Mode = Literal["pattern", "stats"]
PATTERN_BYTES_LIMIT = 4 * 2**30


@dataclass(frozen=True)
class CaptureConfig:
    """What a capture records.

    Attributes:
        mode: ``"pattern"`` keeps full post-softmax patterns (quadratic memory: short inputs)
            as well as the statistics; ``"stats"`` keeps only the reductions, computed one
            block of queries at a time, so long inputs fit.
        layers: layer indices to record (None: all).
        received, entropy, distance, first_token, block_size: which statistics
            (see :mod:`probe.attention.spec`); all but block summaries are on by default because
            they cost little next to the attention itself.
        head_output_positions: token positions (per prompt, negative counts from the end) at
            which to keep each head's output before the output projection. Empty by default:
            it is ``layers x positions x heads x head_dim`` floats.
        backend: attention backend for recorded layers (``"reference"`` on CPU; GPU kernels
            register other names).
        chunk_size: query rows per block in statistics mode.
        pattern_bytes_limit: pattern mode refuses inputs whose patterns would exceed this.
    """

    mode: Mode = "stats"
    layers: tuple[int, ...] | None = None
    received: bool = True
    entropy: bool = True
    distance: bool = True
    first_token: bool = True
    block_size: int | None = None
    head_output_positions: tuple[int, ...] = ()
    backend: str = "reference"
    chunk_size: int = 256
    pattern_bytes_limit: int = PATTERN_BYTES_LIMIT

    def __post_init__(self) -> None:
        if self.mode not in ("pattern", "stats"):
            raise ValueError(f"mode must be 'pattern' or 'stats', got {self.mode!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block_size must be positive, got {self.block_size}")

    def request(self) -> StatRequest:
        return StatRequest(
            pattern=self.mode == "pattern",
            received=self.received,
            entropy=self.entropy,
            distance=self.distance,
            first_token=self.first_token,
            block_size=self.block_size,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = list(self.layers) if self.layers is not None else None
        data["head_output_positions"] = list(self.head_output_positions)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "CaptureConfig":
        data = dict(data)
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        data["head_output_positions"] = tuple(data.get("head_output_positions", ()))
        return cls(**data)
