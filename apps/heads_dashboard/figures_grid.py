"""Figures of many heads at once and of changes: small multiples, diffs, log scale, signed scores.

Conventions (as :mod:`.figures`): tensors in, ``go.Figure`` out, no Dash, no model; queries run
top to bottom; keys a causal query cannot see are blank (NaN).

- :func:`layer_grid_figure`: every head of one layer as a small pattern (circuitsvis's grid),
  on one shared colour scale, so heads compare by eye.
- :func:`pattern_diff_figure` / :func:`layer_diff_grid_figure`: after minus before, on a
  diverging scale centred on 0 and symmetric (red = more attention after the edit).
- ``scale="log"``: log10 of the probabilities, floored at :data:`LOG_FLOOR`, with the colour bar
  labelled in probabilities; small attention (1e-3 against 1e-5) becomes visible.
- :func:`signed_head_grid_figure`: a layers x heads heatmap of a signed score (direct logit
  attribution, ablation effect) on a diverging scale centred on 0.
- :func:`logit_diff_figure`: the logit difference before and after the edits.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from apps.heads_dashboard.figures import BEFORE, AFTER, PATTERN_COLORSCALE, head_grid_figure, token_axis

DIFF_COLORSCALE = "RdBu_r"
LOG_FLOOR = 1e-6
SCALES = ("linear", "log")


def causal_blank(pattern: Float[Tensor, "*head q k"]) -> Float[Tensor, "*head q k"]:
    """``pattern`` with the keys after each query set to NaN (the last ``q`` keys are the queries)."""
    q, k = pattern.shape[-2:]
    future = torch.ones(q, k, dtype=torch.bool).triu(1 + k - q)
    return pattern.float().masked_fill(future, float("nan"))


def scaled(pattern: Float[Tensor, "*head q k"], scale: str) -> Float[Tensor, "*head q k"]:
    """The values drawn: probabilities as they are, or ``log10(max(p, LOG_FLOOR))``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return pattern if scale == "linear" else pattern.clamp_min(LOG_FLOOR).log10()


def _colour_axis(scale: str) -> dict:
    if scale == "linear":
        return dict(colorscale=PATTERN_COLORSCALE, cmin=0.0, cmax=1.0, colorbar=dict(title="attention"))
    low = round(math.log10(LOG_FLOOR))
    ticks = list(range(low, 1))
    return dict(colorscale=PATTERN_COLORSCALE, cmin=low, cmax=0.0,
                colorbar=dict(title="attention", tickvals=ticks, ticktext=[f"1e{t}" if t else "1" for t in ticks]))


def grid_shape(n: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a small-multiples grid for ``n`` panels: near-square unless ``columns`` is set."""
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def layer_grid_figure(patterns: Float[Tensor, "head q k"], tokens: list[str], layer: int, *, scale: str = "linear",
                      columns: int | None = None, selected_head: int | None = None) -> go.Figure:
    """Every head of ``layer`` as a small pattern on one colour scale; ``selected_head`` is framed."""
    n_heads = patterns.shape[0]
    if patterns.shape[1:] != (len(tokens), len(tokens)):
        raise ValueError(f"patterns of shape {tuple(patterns.shape)} do not match {len(tokens)} tokens")
    rows, cols = grid_shape(n_heads, columns)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(n_heads)],
                        horizontal_spacing=0.02, vertical_spacing=0.06)
    values = scaled(causal_blank(patterns), scale)
    positions = list(range(len(tokens)))
    for head in range(n_heads):
        fig.add_trace(go.Heatmap(
            z=values[head].tolist(), x=positions, y=positions, coloraxis="coloraxis",
            hovertemplate=f"head {head}<br>query %{{y}} → key %{{x}}<br>%{{z:.3g}}<extra></extra>",
        ), row=head // cols + 1, col=head % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    if selected_head is not None:
        fig.update_xaxes(showline=True, linecolor="red", linewidth=3, mirror=True,
                         row=selected_head // cols + 1, col=selected_head % cols + 1)
        fig.update_yaxes(showline=True, linecolor="red", linewidth=3, mirror=True,
                         row=selected_head // cols + 1, col=selected_head % cols + 1)
    fig.update_layout(title=dict(text=f"layer {layer}: all heads" + (" (log scale)" if scale == "log" else ""),
                                 font=dict(size=14)),
                      coloraxis=_colour_axis(scale), height=max(360, 190 * rows + 80),
                      margin=dict(l=20, r=20, t=70, b=20))
    return fig


def pattern_difference(before: Float[Tensor, "*head q k"], after: Float[Tensor, "*head q k"]
                       ) -> Float[Tensor, "*head q k"]:
    """``after - before`` with future keys blank; the shapes must agree."""
    if before.shape != after.shape:
        raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} patterns differ in shape")
    return causal_blank(after) - causal_blank(before)


def _diff_range(diff: Tensor) -> float:
    finite = diff[torch.isfinite(diff)]
    top = float(finite.abs().max()) if finite.numel() else 0.0
    return top if top > 0 else 1e-9  # all-zero diffs still get a valid, centred scale


def pattern_diff_figure(before: Float[Tensor, "q k"], after: Float[Tensor, "q k"], tokens: list[str],
                        title: str) -> go.Figure:
    """One head's change of attention: after minus before, diverging scale centred on 0."""
    diff = pattern_difference(before, after)
    if diff.shape != (len(tokens), len(tokens)):
        raise ValueError(f"patterns of shape {tuple(diff.shape)} do not match {len(tokens)} tokens")
    top = _diff_range(diff)
    positions = list(range(len(tokens)))
    fig = go.Figure(go.Heatmap(
        z=diff.tolist(), x=positions, y=positions, colorscale=DIFF_COLORSCALE, zmid=0.0, zmin=-top, zmax=top,
        colorbar=dict(title="after − before"),
        hovertemplate="query %{y} → key %{x}<br>change %{z:+.3f}<extra></extra>",
    ))
    axis = token_axis(tokens)
    side = min(760, max(360, 14 * len(tokens) + 160))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=side, margin=dict(l=90, r=20, t=40, b=90),
                      xaxis=dict(title="key", tickangle=-60, **axis),
                      yaxis=dict(title="query", autorange="reversed", **axis))
    return fig


def layer_diff_grid_figure(before: Float[Tensor, "head q k"], after: Float[Tensor, "head q k"], tokens: list[str],
                           layer: int, columns: int | None = None) -> go.Figure:
    """Every head's change in ``layer`` (after minus before) as small multiples on one diverging scale."""
    diff = pattern_difference(before, after)
    rows, cols = grid_shape(diff.shape[0], columns)
    top = _diff_range(diff)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(diff.shape[0])],
                        horizontal_spacing=0.02, vertical_spacing=0.06)
    positions = list(range(len(tokens)))
    for head in range(diff.shape[0]):
        fig.add_trace(go.Heatmap(z=diff[head].tolist(), x=positions, y=positions, coloraxis="coloraxis",
                                 hovertemplate=f"head {head}<br>query %{{y}} → key %{{x}}<br>change %{{z:+.3f}}"
                                               "<extra></extra>"),
                      row=head // cols + 1, col=head % cols + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(title=dict(text=f"layer {layer}: after − before", font=dict(size=14)),
                      coloraxis=dict(colorscale=DIFF_COLORSCALE, cmid=0.0, cmin=-top, cmax=top,
                                     colorbar=dict(title="after − before")),
                      height=max(360, 190 * rows + 80), margin=dict(l=20, r=20, t=70, b=20))
    return fig


def scaled_pattern_figure(pattern: Float[Tensor, "q k"], tokens: list[str], title: str,
                          scale: str = "linear") -> go.Figure:
    """One head's pattern, on a linear or log colour scale (log: probabilities floored at ``LOG_FLOOR``)."""
    if pattern.shape != (len(tokens), len(tokens)):
        raise ValueError(f"pattern of shape {tuple(pattern.shape)} does not match {len(tokens)} tokens")
    values = scaled(causal_blank(pattern), scale)
    axis = _colour_axis(scale)
    positions = list(range(len(tokens)))
    fig = go.Figure(go.Heatmap(z=values.tolist(), x=positions, y=positions, zmin=axis["cmin"], zmax=axis["cmax"],
                               colorscale=axis["colorscale"], colorbar=axis["colorbar"],
                               hovertemplate="query %{y} → key %{x}<br>%{z:.3g}<extra></extra>"))
    tick = token_axis(tokens)
    side = min(760, max(360, 14 * len(tokens) + 160))
    fig.update_layout(title=dict(text=title + (" (log10 attention)" if scale == "log" else ""), font=dict(size=14)),
                      height=side, margin=dict(l=90, r=20, t=40, b=90),
                      xaxis=dict(title="key", tickangle=-60, **tick),
                      yaxis=dict(title="query", autorange="reversed", **tick))
    return fig


def signed_head_grid_figure(values: Float[Tensor, "layer head"], layers: list[int], label: str, *,
                            selected: tuple[int, int] | None = None) -> go.Figure:
    """A layers x heads heatmap of a signed score on a diverging scale centred on 0 (symmetric range)."""
    fig = head_grid_figure(values, layers, label, colorscale=DIFF_COLORSCALE, selected=selected)
    top = _diff_range(values.float())
    fig.update_traces(zmid=0.0, zmin=-top, zmax=top,
                      hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:+.3f}<extra></extra>")
    return fig


def logit_diff_figure(target: str, foil: str, before: float, after: float | None, edit_label: str) -> go.Figure:
    """Bars of ``logit(target) - logit(foil)`` before (and after, when given) the edits."""
    names, values, colours = ["before"], [before], [BEFORE]
    if after is not None:
        names.append(f"after: {edit_label}")
        values.append(after)
        colours.append(AFTER)
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=colours, text=[f"{v:+.3f}" for v in values],
                           textposition="auto"))
    fig.update_layout(title=dict(text=f"logit({target!r}) − logit({foil!r})", font=dict(size=14)), height=300,
                      yaxis=dict(title="logit difference", zeroline=True), margin=dict(l=60, r=20, t=40, b=40))
    return fig
