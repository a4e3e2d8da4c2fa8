"""Declarative, composable attention edits.

Context:
    An edit says *which* layers and heads, *which* keys, and *what* to do. Three kinds:

    - :class:`ScaleKeys`: scale the attention paid to chosen keys by ``factor`` and hand the freed
      mass to the other keys in proportion to their weight (ACT's calibration; rows still sum
      to one). Keys are explicit :class:`Positions` or :class:`Sinks` found per input by ACT's
      criterion.
    - :class:`BiasKeys`: add ``bias`` to the logits of chosen keys before the softmax
      (``bias = log(a)`` multiplies those keys' unnormalised weight by ``a``).
    - :class:`ScaleHeads`: multiply chosen heads' outputs, before the output projection (VHR).

    Edits compose: biases add, key scalings apply in order, head scales multiply. Apply them
    with :func:`probe.edits.apply_edits`.

Example:
    >>> from probe.edits import apply_edits, act_calibration, ScaleHeads
    >>> with apply_edits(model, [act_calibration(layers=range(2, 30)), ScaleHeads(2.0, layers=[5], heads=[3])]):
    ...     out = model.hf.generate(**inputs)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

from probe.attention.spec import SinkRule


def _as_tuple(values: Iterable[int] | int | None) -> tuple[int, ...] | None:
    if values is None:
        return None
    if isinstance(values, int):
        return (values,)
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class Positions:
    """Token positions in each prompt (0 = first real token; negative counts from the end)."""

    positions: tuple[int, ...]

    def __init__(self, positions: Iterable[int] | int):
        object.__setattr__(self, "positions", _as_tuple(positions))
        if not self.positions:
            raise ValueError("Positions needs at least one position")


@dataclass(frozen=True)
class Sinks:
    """Keys chosen per input and head by ACT's sink criterion (see :class:`SinkRule`)."""

    rule: SinkRule = SinkRule()


KeySelector = Union[Positions, Sinks]


@dataclass(frozen=True)
class _Targeted:
    layers: tuple[int, ...] | None
    heads: tuple[int, ...] | None

    def _init_targets(self, layers, heads) -> None:
        object.__setattr__(self, "layers", _as_tuple(layers))
        object.__setattr__(self, "heads", _as_tuple(heads))

    def applies_to(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers


@dataclass(frozen=True)
class ScaleKeys(_Targeted):
    """Scale attention to ``keys`` by ``factor`` (0..1) and redistribute the freed mass."""

    keys: KeySelector
    factor: float

    def __init__(self, keys: KeySelector, factor: float, layers=None, heads=None):
        if not 0.0 <= factor <= 1.0:
            raise ValueError(
                f"ScaleKeys factor must lie in [0, 1] (it moves mass away from the keys), got {factor}; "
                "to raise attention to keys use BiasKeys with a positive bias"
            )
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "factor", float(factor))
        self._init_targets(layers, heads)


@dataclass(frozen=True)
class BiasKeys(_Targeted):
    """Add ``bias`` to the pre-softmax logits of ``keys``."""

    keys: Positions
    bias: float

    def __init__(self, keys: Positions, bias: float, layers=None, heads=None):
        if not isinstance(keys, Positions):
            raise TypeError("BiasKeys takes explicit Positions; for sinks use ScaleKeys(Sinks(...), factor)")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "bias", float(bias))
        self._init_targets(layers, heads)


@dataclass(frozen=True)
class ScaleHeads(_Targeted):
    """Multiply the chosen heads' outputs by ``factor`` before the output projection."""

    factor: float

    def __init__(self, factor: float, layers=None, heads=None):
        object.__setattr__(self, "factor", float(factor))
        self._init_targets(layers, heads)


Edit = Union[ScaleKeys, BiasKeys, ScaleHeads]


def act_calibration(tau: float = 0.1, beta: float = 0.4, layers=None, heads=None, min_visible: int = 1) -> ScaleKeys:
    """ACT (Yu et al. 2024): shrink each input's non-initial sinks by ``beta``, redistribute.

    Defaults are ACT's (``tau=0.1``, ``beta=0.4``); the first sink found is kept.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}; ACT uses 0.4")
    return ScaleKeys(Sinks(SinkRule(tau=tau, min_visible=min_visible)), beta, layers=layers, heads=heads)
