"""Conditions of an evaluation: the model as it is (``none``) and under named attention edits.

Context:
    ``headscope vlm eval --edit NAME`` adds the condition ``NAME``: every item is answered once
    without edits and once inside :func:`probe.edits.apply_edits` with the edits the registered
    builder returns for the loaded model. Builders are registered by name, as a callable or as
    ``"module:function"`` imported on first use, so checking a name imports nothing heavy; issue
    25's mitigations (VHR, PAINT) register theirs here.

    Edits that depend on each input (VHR picks heads per image and prompt, PAINT image tokens
    per image: :mod:`circuits.vision.paint`, conditions ``paint`` and ``paint-random``) come back from the
    builder as :class:`PerInputEdits`: a function of one batch's prompts and images returning
    edits for that batch's rows (``prompts=(row,)`` edits), called by the answerer before each
    ``generate`` (:func:`batch_edits`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probe.cli_options import UsageError

BASELINE = "none"
"""The condition without edits; every run has it, first."""

EditBuilder = Callable[[object], "Sequence[object] | PerInputEdits"]
"""``builder(loaded_model) -> edits`` (:mod:`probe.edits.spec` edits for that model), or
:class:`PerInputEdits` when the edits depend on each input."""


@dataclass(frozen=True)
class PerInputEdits:
    """Edits chosen per input: ``select(prompts, images)`` returns the edits of one batch whose
    row ``r`` is ``(prompts[r], images[r])``, for a ``generate`` over exactly those rows."""

    select: Callable[[Sequence[str], Sequence[object]], Sequence[object]]


def batch_edits(edits: "Sequence[object] | PerInputEdits", prompts: Sequence[str], images: Sequence[object]) -> list:
    """The edits to apply around one batch: fixed edits as they are, per-input ones selected."""
    if isinstance(edits, PerInputEdits):
        return list(edits.select(prompts, images))
    return list(edits)

_EDITS: dict[str, EditBuilder | str] = {}


def register_edit(name: str, builder: EditBuilder | str, *, overwrite: bool = False) -> None:
    """Make ``--edit NAME`` a condition; ``builder`` is a callable or ``"module:function"``."""
    if name == BASELINE or not name or name.startswith("-"):
        raise ValueError(f"{name!r} cannot name an edit condition")
    if name in _EDITS and not overwrite:
        raise ValueError(f"edit condition {name!r} is already registered")
    _EDITS[name] = builder


def edit_names() -> tuple[str, ...]:
    return tuple(sorted(_EDITS))


def conditions(edits: Sequence[str]) -> tuple[str, ...]:
    """``none`` then each named edit once, in the order given.

    Raises:
        UsageError: an unknown name, listing the registered ones.
    """
    unknown = [name for name in edits if name not in _EDITS]
    if unknown:
        raise UsageError(f"--edit: unknown edit {unknown[0]!r}; registered edits: {', '.join(edit_names()) or 'none'}")
    return (BASELINE, *dict.fromkeys(edits))


def edits_for(name: str, model: object) -> "list | PerInputEdits":
    """The edits of condition ``name`` for ``model`` (none for the baseline); per-input edits
    stay a :class:`PerInputEdits` (resolve them per batch with :func:`batch_edits`)."""
    if name == BASELINE:
        return []
    builder = _EDITS[name]
    if isinstance(builder, str):
        module, _, function = builder.partition(":")
        builder = _EDITS[name] = getattr(importlib.import_module(module), function)
    built = builder(model)
    return built if isinstance(built, PerInputEdits) else list(built)


def act_edits(model) -> list:
    """ACT calibration (Yu et al. 2024) as the README applies it: tau 0.1, beta 0.4, every layer
    after the first two."""
    from probe.edits import act_calibration

    n_layers = model.geometry.n_layers
    return [act_calibration(tau=0.1, beta=0.4, layers=range(min(2, n_layers - 1), n_layers))]


register_edit("act", "circuits.hallucination.conditions:act_edits")


def vhr_edits(model) -> PerInputEdits:
    """VHR (He et al. 2025): per input, the heads above their layer's median VHD in layer 1 and
    the last 14/32 of the layers, scaled by 2 (:mod:`circuits.vision.vhr`)."""
    from circuits.vision.vhr import VHRCondition

    return PerInputEdits(VHRCondition(model))


def vhr_random_edits(model) -> PerInputEdits:
    """VHR's control: as many heads per layer as VHR chooses for the input, drawn at random (seed 0)."""
    from circuits.vision.vhr import VHRCondition

    return PerInputEdits(VHRCondition(model, control=True))


register_edit("vhr", "circuits.hallucination.conditions:vhr_edits")
register_edit("vhr-random", "circuits.hallucination.conditions:vhr_random_edits")

register_edit("paint", "circuits.vision.paint:paint_condition")
register_edit("paint-random", "circuits.vision.paint:paint_random_condition")
