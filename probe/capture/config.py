"""Capture settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from probe.attention.spec import StatRequest
from probe.capture.inputs import InputError, integer_indices

Mode = Literal["pattern", "stats"]
PATTERN_BYTES_LIMIT = 4 * 2**30


@dataclass(frozen=True)
class CaptureConfig:
    """What a capture records.

    Attributes:
        mode: ``"pattern"`` keeps full post-softmax patterns (quadratic memory: short inputs)
            as well as the statistics; ``"stats"`` keeps only the reductions, computed one
            block of queries at a time, so long inputs fit.
        layers: layer indices to record (None: all; negative ones count from the end). Only these
            layers appear in the record; an empty list or a non-integer index is an error.
        received, entropy, distance, first_token, block_size: which statistics
            (see :mod:`probe.attention.spec`); all but block summaries are on by default because
            they cost little next to the attention itself.
        head_output_positions: token positions (per prompt, negative counts from the end) at
            which to keep each head's output before the output projection. Empty by default:
            it is ``layers x positions x heads x head_dim`` floats.
        backend: attention backend for recorded layers (``"reference"`` on CPU; GPU kernels
            register other names).
        chunk_size: query rows per block of the reference backend (memory is ``chunk_size x keys``
            per head).
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
        if self.layers is not None:
            object.__setattr__(self, "layers", integer_indices(self.layers, "layers"))
        object.__setattr__(self, "head_output_positions", tuple(self.head_output_positions))
        if self.head_output_positions:
            integer_indices(self.head_output_positions, "head_output_positions")
        for name in ("chunk_size", "block_size", "pattern_bytes_limit"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"{name} must be an integer, got {value!r}")
        if self.mode not in ("pattern", "stats"):
            raise InputError(f"mode must be 'pattern' or 'stats', got {self.mode!r}")
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.block_size is not None and self.block_size < 1:
            raise InputError(f"block_size must be positive, got {self.block_size}")

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
        """The settings from :meth:`to_dict`'s form; an unknown setting is an error, not ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"capture settings must be a mapping of setting -> value, got a {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown capture setting(s) {', '.join(map(repr, unknown))}; known settings: {', '.join(known)}")
        data = dict(data)
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        data["head_output_positions"] = tuple(data.get("head_output_positions", ()))
        return cls(**data)
