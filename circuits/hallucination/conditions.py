"""Conditions of an evaluation: the model as it is (``none``) and under named attention edits.

Context:
    ``headscope vlm eval --edit NAME`` adds the condition ``NAME``: every item is answered once
    without edits and once inside :func:`probe.edits.apply_edits` with the edits the registered
    builder returns for the loaded model. Builders are registered by name, as a callable or as
    ``"module:function"`` imported on first use, so checking a name imports nothing heavy; issue
    25's mitigations (VHR, PAINT) register theirs here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from probe.cli_options import UsageError

BASELINE = "none"
"""The condition without edits; every run has it, first."""

EditBuilder = Callable[[object], Sequence[object]]
"""``builder(loaded_model) -> edits`` (:mod:`probe.edits.spec` edits for that model)."""

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


def edits_for(name: str, model: object) -> list:
    """The edits of condition ``name`` for ``model`` (none for the baseline)."""
    if name == BASELINE:
        return []
    builder = _EDITS[name]
    if isinstance(builder, str):
        module, _, function = builder.partition(":")
        builder = _EDITS[name] = getattr(importlib.import_module(module), function)
    return list(builder(model))


def act_edits(model) -> list:
    """ACT calibration (Yu et al. 2024) as the README applies it: tau 0.1, beta 0.4, every layer
    after the first two."""
    from probe.edits import act_calibration

    n_layers = model.geometry.n_layers
    return [act_calibration(tau=0.1, beta=0.4, layers=range(min(2, n_layers - 1), n_layers))]


register_edit("act", "circuits.hallucination.conditions:act_edits")
