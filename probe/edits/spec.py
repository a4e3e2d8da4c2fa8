"""Declarative, composable attention edits.

Context:
    An edit says *which* layers and heads, *which* keys, and *what* to do. Three kinds:

    - :class:`ScaleKeys`: scale the attention paid to chosen keys by ``factor`` and hand the freed
      mass to the other keys in proportion to their weight (ACT's calibration; rows still sum
      to one). Keys are explicit :class:`Positions`, :class:`Sinks` found per input by ACT's
      criterion, or a VLM's :class:`ImageKeys`.
    - :class:`BiasKeys`: add ``bias`` to the logits of chosen keys (:class:`Positions` or
      :class:`ImageKeys`) before the softmax (``bias = log(a)`` multiplies those keys'
      unnormalised weight by ``a``).
    - :class:`ScaleHeads`: multiply chosen heads' outputs, before the output projection (VHR).
    - :class:`BoostKeys`: raise the logits of chosen keys at each row's last query only,
      ``z <- z + alpha * |z|`` (PAINT, PAI): keys :class:`Positions`, :class:`ImageKeys` or
      per-prompt :class:`ImagePatches` (PAINT's informed tokens, :mod:`circuits.vision.paint`).

    Edits compose: biases add, key scalings apply in order, head scales multiply, boosts of one
    key add (``alpha + beta``; PAINT's two sets are disjoint, so its order does not matter). Apply them
    with :func:`probe.edits.apply_edits`.

Example:
    >>> from probe.edits import apply_edits, act_calibration, ScaleHeads
    >>> with apply_edits(model, [act_calibration(layers=range(2, 30)), ScaleHeads(2.0, layers=[5], heads=[3])]):
    ...     out = model.hf.generate(**inputs)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Iterable, Union

from probe.attention.spec import SinkRule
from probe.capture.inputs import integer_indices
from probe.errors import InputError

MAX_HEAD_FACTOR = 1e3  # larger head scales overflow half-precision activations and say nothing more
MAX_BIAS = 1e4  # past ~100 a logit bias already decides the softmax; larger ones overflow float16


class EditError(InputError):
    """An edit that cannot be built or applied, with the reason and the fix."""


def _as_tuple(values: Iterable[int] | int | None, what: str) -> tuple[int, ...] | None:
    """``values`` (one integer or a list) as a tuple of integers, None kept; floats, booleans and
    strings are refused (:func:`probe.capture.inputs.integer_indices`), not truncated."""
    if values is None:
        return None
    if hasattr(values, "__index__") and not isinstance(values, bool):
        return (int(values.__index__()),)
    return integer_indices(values, what)


def _number(value, what: str, limit: float) -> float:
    """``value`` as a finite float of magnitude at most ``limit``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise EditError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > limit:
        raise EditError(f"{what} must be finite and at most {limit:g} in magnitude, got {value!r}")
    return value


@dataclass(frozen=True)
class Positions:
    """Token positions in each prompt (0 = first real token; negative counts from the end)."""

    positions: tuple[int, ...]

    def __init__(self, positions: Iterable[int] | int):
        if positions is None or (hasattr(positions, "__len__") and not len(positions)):
            raise EditError("Positions needs at least one position")
        object.__setattr__(self, "positions", _as_tuple(positions, "Positions"))


@dataclass(frozen=True)
class Sinks:
    """Keys chosen per input and head by ACT's sink criterion (see :class:`SinkRule`)."""

    rule: SinkRule = SinkRule()

    def __post_init__(self) -> None:
        if not isinstance(self.rule, SinkRule):
            raise EditError(f"Sinks takes a SinkRule, got {self.rule!r}")


@dataclass(frozen=True)
class ImageKeys:
    """The image tokens of each prompt of a vision-language model (``input_ids == image_token_id``).

    Resolved at every attention call from the token ids of the forward that runs it: a plain
    forward reads its own ids; during ``generate()`` the decode steps see the prefill's image
    keys plus the generated (text) keys, which are never image keys. Needs a model with an
    image-token id (:attr:`probe.models.LoadedModel.image_token_id`).
    """


@dataclass(frozen=True)
class ImagePatches:
    """Some image tokens of each prompt: ``indices[b]`` counts prompt ``b``'s image tokens in order
    (0 = its first image token; for LLaVA's default feature selection, patch ``i`` of the image
    in raster order). Resolved like :class:`ImageKeys` from the forward's token ids, so the
    selection holds at every decode step. One tuple per row of the batch the edit is applied
    to (an empty tuple selects nothing in that row); an index past the row's image tokens is an
    :class:`EditError` when the edit resolves.
    """

    indices: tuple[tuple[int, ...], ...]

    def __init__(self, indices: Iterable[Iterable[int]]):
        if indices is None or isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
            raise EditError(f"ImagePatches takes one list of image-token indices per prompt, got {indices!r}")
        rows = tuple(_patch_row(row) for row in indices)
        if not rows:
            raise EditError("ImagePatches needs one list of indices per prompt of the batch, got none")
        if any(i < 0 for row in rows for i in row):
            raise EditError("ImagePatches indices count each prompt's image tokens from 0; got a negative index")
        object.__setattr__(self, "indices", rows)


def _patch_row(row) -> tuple[int, ...]:
    """One prompt's image-token indices as a tuple of integers (empty allowed)."""
    if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
        raise EditError(f"ImagePatches takes one list of image-token indices per prompt; got the row {row!r}")
    row = tuple(row)
    return integer_indices(row, "ImagePatches indices") if row else ()


KeySelector = Union[Positions, Sinks, ImageKeys, ImagePatches]
IMAGE_SELECTORS = (ImageKeys, ImagePatches)


@dataclass(frozen=True)
class _Targeted:
    """Where an edit applies: layers, heads, and prompts (rows of the batch), None meaning all."""

    layers: tuple[int, ...] | None
    heads: tuple[int, ...] | None
    prompts: tuple[int, ...] | None

    def _init_targets(self, layers, heads, prompts) -> None:
        object.__setattr__(self, "layers", _as_tuple(layers, "layers"))
        object.__setattr__(self, "heads", _as_tuple(heads, "heads"))
        object.__setattr__(self, "prompts", _as_tuple(prompts, "prompts"))
        for index in self.prompts or ():
            if index < 0:
                raise EditError(f"prompts are row indices of the batch, >= 0; got {index}")

    def applies_to(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers


@dataclass(frozen=True)
class ScaleKeys(_Targeted):
    """Scale attention to ``keys`` by ``factor`` (0..1) and redistribute the freed mass."""

    keys: KeySelector
    factor: float

    def __init__(self, keys: KeySelector, factor: float, layers=None, heads=None, prompts=None):
        if not isinstance(keys, (Positions, Sinks, ImageKeys, ImagePatches)):
            raise EditError(f"ScaleKeys takes Positions(...), Sinks(...), ImageKeys() or ImagePatches(...) as keys, "
                            f"got {keys!r}")
        factor = _number(factor, "ScaleKeys factor", math.inf)
        if not 0.0 <= factor <= 1.0:
            raise EditError(
                f"ScaleKeys factor must lie in [0, 1] (it moves mass away from the keys), got {factor}; "
                "to raise attention to keys use BiasKeys with a positive bias"
            )
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "factor", factor)
        self._init_targets(layers, heads, prompts)


@dataclass(frozen=True)
class BiasKeys(_Targeted):
    """Add ``bias`` to the pre-softmax logits of ``keys`` (finite; to remove keys use ScaleKeys(keys, 0))."""

    keys: Positions | ImageKeys | ImagePatches
    bias: float

    def __init__(self, keys: Positions | ImageKeys | ImagePatches, bias: float, layers=None, heads=None,
                 prompts=None):
        if not isinstance(keys, (Positions, ImageKeys, ImagePatches)):
            raise EditError("BiasKeys takes explicit Positions, ImageKeys() or ImagePatches(...); "
                            "for sinks use ScaleKeys(Sinks(...), factor)")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "bias", _number(bias, "BiasKeys bias", MAX_BIAS))
        self._init_targets(layers, heads, prompts)


@dataclass(frozen=True)
class ScaleHeads(_Targeted):
    """Multiply the chosen heads' outputs by ``factor`` before the output projection.

    ``prompts`` limits the edit to some rows of the batch, so one forward can run many ablations
    (each on its own copy of the prompts)."""

    factor: float

    def __init__(self, factor: float, layers=None, heads=None, prompts=None):
        object.__setattr__(self, "factor", _number(factor, "ScaleHeads factor", MAX_HEAD_FACTOR))
        self._init_targets(layers, heads, prompts)


MAX_BOOST = 1e3  # z + alpha|z|: past a few units the boosted keys take the whole softmax


@dataclass(frozen=True)
class BoostKeys(_Targeted):
    """PAINT's (and PAI's) edit: at each prompt's **last query row only**, raise the pre-softmax
    logit ``z`` of each chosen key to ``z + alpha * |z|`` (after scaling, soft-capping and any
    BiasKeys; masked keys stay masked).

    The last query row is, at a prefill or plain forward, each prompt's last real token, and at
    each decode step of ``generate()``, the one new token, so the boost applies at every step as
    in PAINT's code. ``alpha`` >= 0 and finite (PAINT: 0.7 for local tokens, 0.3 for summary
    tokens); ``|z|`` makes it a relative boost, not a constant bias. ``rows`` names the rows
    edited; only ``"last"`` exists.
    """

    keys: Positions | ImageKeys | ImagePatches
    alpha: float
    rows: str

    def __init__(self, keys: Positions | ImageKeys | ImagePatches, alpha: float, layers=None, heads=None,
                 prompts=None, rows: str = "last"):
        if not isinstance(keys, (Positions, ImageKeys, ImagePatches)):
            raise EditError(f"BoostKeys takes Positions(...), ImageKeys() or ImagePatches(...) as keys, got {keys!r}")
        alpha = _number(alpha, "BoostKeys alpha", MAX_BOOST)
        if alpha < 0:
            raise EditError(f"BoostKeys alpha must be >= 0 (z + alpha|z| raises the keys' logits; PAINT uses 0.7 "
                            f"and 0.3), got {alpha}; to lower attention to keys use ScaleKeys")
        if rows != "last":
            raise EditError(f"BoostKeys rows must be 'last' (each prompt's last query, as PAINT), got {rows!r}")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "rows", rows)
        self._init_targets(layers, heads, prompts)


Edit = Union[ScaleKeys, BiasKeys, ScaleHeads, BoostKeys]
EDIT_TYPES = (ScaleKeys, BiasKeys, ScaleHeads, BoostKeys)


def check_edits(edits) -> list[Edit]:
    """``edits`` as a list, each one an edit; anything else is an :class:`EditError`."""
    if isinstance(edits, EDIT_TYPES) or isinstance(edits, (str, bytes)) or not hasattr(edits, "__iter__"):
        raise EditError(f"edits must be a list of edits, got {edits!r}; wrap a single edit in a list")
    edits = list(edits)
    for index, edit in enumerate(edits):
        if not isinstance(edit, EDIT_TYPES):
            raise EditError(f"edit {index} is {edit!r}, not an edit; use ScaleKeys, BiasKeys, ScaleHeads or BoostKeys")
    return edits


def uses_image_keys(edits: list[Edit]) -> bool:
    """True when some edit selects :class:`ImageKeys` or :class:`ImagePatches` (they need the
    forward's token ids)."""
    return any(isinstance(getattr(edit, "keys", None), IMAGE_SELECTORS) for edit in edits)


def act_calibration(tau: float = 0.1, beta: float = 0.4, layers=None, heads=None, min_visible: int = 1,
                    prompts=None) -> ScaleKeys:
    """ACT (Yu et al. 2024): shrink each input's non-initial sinks by ``beta``, redistribute.

    Defaults are ACT's (``tau=0.1``, ``beta=0.4``); the first sink found is kept. During
    ``generate()`` the sinks found at the prefill are reused at every decode step (see
    :mod:`probe.attention.hf`).
    """
    beta = _number(beta, "beta", math.inf)
    if not 0.0 <= beta <= 1.0:
        raise EditError(f"beta must lie in [0, 1], got {beta}; ACT uses 0.4")
    return ScaleKeys(Sinks(SinkRule(tau=tau, min_visible=min_visible)), beta, layers=layers, heads=heads,
                     prompts=prompts)
