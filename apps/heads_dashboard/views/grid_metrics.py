"""Heatmap metrics that are not per-record registry metrics: attention query → key, and the
target/foil head scores (direct logit attribution, ablation effect).

Context:
    The registry's metrics (:mod:`.metrics`) are functions of a record. These depend on the
    session too: the query and key clicked in the token strip (:mod:`.tokens`), or head scores a
    background job computed for the session's prompt, edits and target/foil pair
    (:mod:`.scores`, kept in the :data:`ID.SCORES` store). :data:`GRID_METRICS` maps each name
    to a function of (view, typed prompt, query/key store, scores store) returning a :class:`Grid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from apps.heads_dashboard.head_metrics import conditioned_grid, conditioned_metric
from apps.heads_dashboard.workbench import View
from probe.errors import InputError


@dataclass(frozen=True)
class Grid:
    """What the heatmap draws: ``values[layer, head]``, the colour bar's label, signed or not."""

    values: Float[Tensor, "layer head"]
    label: str
    signed: bool = False


def attention_qk(view: View, prompt: str | None, qk: dict | None, scores: dict | None) -> Grid:
    qk = qk or {}
    query, key = qk.get("query", -1), qk.get("key")
    if key is None:
        raise InputError("click a key token in the strip under the head's pattern (the query is the last token "
                         "unless you click one with 'clicks set: query')")
    values = conditioned_grid(view.record, view.prompt, query, key)
    return Grid(values, conditioned_metric(query, key, view.tokens).label)


def score_grid(field: str, what: str) -> Callable[[View, str | None, dict | None, dict | None], Grid]:
    def grid(view: View, prompt: str | None, qk: dict | None, scores: dict | None) -> Grid:
        if not scores or field not in scores:
            raise InputError("type a target and a foil token and press 'head scores' (Target and foil panel)")
        if not view.live or scores.get("prompt") != prompt:
            raise InputError("these head scores are for another prompt: press 'head scores' again")
        values = torch.tensor(scores[field], dtype=torch.float32)
        if values.shape[0] != len(view.record.layers):
            raise InputError("these head scores are for another model; press 'head scores' again")
        # the ablation's mode is the job's (stores from before the mode was offered: zero)
        shown = f"{scores.get('ablation_mode', 'zero')}-{what}" if field == "ablation" else what
        return Grid(values, f"{shown}: logit({scores['target']!r}) − logit({scores['foil']!r})"
                            + (f" under {scores['edits_label']}" if scores.get("edits_label") else ""), signed=True)

    return grid


GRID_METRICS: dict[str, tuple[str, Callable[[View, str | None, dict | None, dict | None], Grid]]] = {
    "attention_qk": ("attention query → key (click tokens)", attention_qk),
    "dla": ("direct logit attribution (target − foil)", score_grid("dla", "direct logit attribution")),
    "ablation": ("ablation effect (zero or mean, target − foil)", score_grid("ablation", "ablation effect")),
}
"""Metric name -> (dropdown label, grid function)."""


def session_grid(name: str, view: View, prompt: str | None, qk: dict | None, scores: dict | None) -> Grid:
    """The grid of session metric ``name`` for ``view`` (``prompt``: the session's typed prompt)."""
    return GRID_METRICS[name][1](view, prompt, qk, scores)
