"""Capture settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from jaxtyping import Bool
from torch import Tensor

from probe.attention.spec import Band, KeySpan, StatRequest
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
        lookback_window: when set (an integer W >= 1), the ``lookback`` statistic: each query's
            attention distance clipped at W, WAAD's per-head term (Li et al. 2025 use W = 10).
            Off by default: it is a parameter of one analysis, not a general summary.
        band_lo, band_hi, band_first_rows: when ``band_lo`` is set, the ``band_sum``,
            ``band_count`` and ``band_mean`` statistics of :class:`~probe.attention.spec.Band`
            ``(band_lo, band_hi, band_first_rows)``: attention each key receives from the
            queries ``band_lo..band_hi`` tokens later (FAI's per-head term). ``band_hi`` None
            (the default) runs to the end of the input; the paper's RL setting is 10 and 100.
            ``band_first_rows``, one per prompt and counted from its first token (e.g. each
            prompt's response start), keeps earlier queries out; None counts every query.
            Off by default, like ``lookback_window``.
        image_span: the ``span_mass`` statistic over the record's image tokens (a capture with
            images on a vision-language model): each query's attention to the image, per head.
            Off by default; VHD and PAINT read its mean over queries.
        head_output_positions: token positions (per prompt, negative counts from the end) at
            which to keep each head's output before the output projection. Empty by default:
            it is ``layers x positions x heads x head_dim`` floats.
        backend: attention backend for recorded layers: ``"fast"`` (the default: the
            reference's results with fewer passes over memory on CPU, the reference itself
            elsewhere, :mod:`probe.attention.fast`), ``"reference"`` (the plain definition) or
            a name GPU kernels register (``"triton"``).
        chunk_size: query rows per block of the reference backend (memory is ``chunk_size x keys``
            per head); the fast backend uses at most this many (fewer on long inputs).
        pattern_bytes_limit: pattern mode refuses inputs whose patterns would exceed this.
    """

    mode: Mode = "stats"
    layers: tuple[int, ...] | None = None
    received: bool = True
    entropy: bool = True
    distance: bool = True
    first_token: bool = True
    block_size: int | None = None
    lookback_window: int | None = None
    band_lo: int | None = None
    band_hi: int | None = None
    band_first_rows: tuple[int, ...] | None = None
    image_span: bool = False
    head_output_positions: tuple[int, ...] = ()
    backend: str = "fast"
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
        if not isinstance(self.image_span, bool):
            raise InputError(f"image_span must be True or False, got {self.image_span!r}")
        if self.mode not in ("pattern", "stats"):
            raise InputError(f"mode must be 'pattern' or 'stats', got {self.mode!r}")
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.block_size is not None and self.block_size < 1:
            raise InputError(f"block_size must be positive, got {self.block_size}")
        self._check_rhythm_settings()

    def _check_rhythm_settings(self) -> None:
        """The lookback window and the band are valid (the request builds), or one InputError."""
        if self.band_lo is None and (self.band_hi is not None or self.band_first_rows is not None):
            raise InputError("band_hi and band_first_rows need band_lo (the band's first look-ahead, e.g. 10); "
                             "set band_lo, or leave all three unset for no band statistics")
        try:
            want = self.request()
        except ValueError as err:
            raise InputError(str(err)) from None
        object.__setattr__(self, "lookback_window", want.lookback_window)  # plain ints, for to_dict's JSON
        if want.band is not None:
            for name in ("lo", "hi", "first_rows"):
                object.__setattr__(self, f"band_{name}", getattr(want.band, name))

    def band(self) -> Band | None:
        """The band of the FAI statistics, or None when ``band_lo`` is unset."""
        if self.band_lo is None:
            return None
        return Band(lo=self.band_lo, hi=self.band_hi, first_rows=self.band_first_rows)

    def request(self, image_mask: Bool[Tensor, "batch pos"] | None = None) -> StatRequest:
        """The statistics of each recorded layer; ``image_mask`` (True at image tokens) is the
        key span of ``span_mass`` when ``image_span`` is set."""
        return StatRequest(
            pattern=self.mode == "pattern",
            received=self.received,
            entropy=self.entropy,
            distance=self.distance,
            first_token=self.first_token,
            block_size=self.block_size,
            lookback_window=self.lookback_window,
            band=self.band(),
            span=KeySpan(image_mask.bool()) if self.image_span and image_mask is not None else None,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = list(self.layers) if self.layers is not None else None
        data["head_output_positions"] = list(self.head_output_positions)
        data["band_first_rows"] = list(self.band_first_rows) if self.band_first_rows is not None else None
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
        if isinstance(data.get("band_first_rows"), list):
            data["band_first_rows"] = tuple(data["band_first_rows"])
        return cls(**data)
