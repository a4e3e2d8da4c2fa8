"""Pure plotly figure builders: tensors and tokens in, ``go.Figure`` out, no Dash, no model.

Conventions:
    Token axes are numeric positions with the tokens as tick labels (repeated tokens would
    collapse on a categorical axis); past ``MAX_TICK_LABELS`` tokens only every n-th is
    labelled. Query axes run top to bottom like a matrix. Future keys of a causal pattern are
    blank (NaN), not zero, so "masked" and "ignored" look different.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from probe.capture.record import AttentionRecord

MAX_TICK_LABELS = 64
PATTERN_COLORSCALE = "Blues"
BEFORE, AFTER = "#1f77b4", "#d62728"


def display_token(token: str) -> str:
    """A token as a tick label: control characters made visible, empty tokens marked."""
    shown = token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return shown if shown else "∅"


def token_axis(tokens: list[str], max_labels: int = MAX_TICK_LABELS) -> dict:
    """Plotly axis settings labelling positions with tokens (every n-th past ``max_labels``)."""
    step = max(1, math.ceil(len(tokens) / max_labels))
    positions = list(range(0, len(tokens), step))
    return dict(tickmode="array", tickvals=positions, ticktext=[display_token(tokens[i]) for i in positions])


MESSAGE_META = "headscope-message"
"""``layout.meta`` of a :func:`message_figure`, so a page can hide its toolbar (:func:`graph_config`)."""


def message_figure(text: str) -> go.Figure:
    """An empty figure carrying one line of text (loading, nothing selected, a placeholder)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), height=260, margin=dict(l=10, r=10, t=10, b=10),
                      meta=MESSAGE_META, modebar=_NO_MODEBAR)
    return fig


_NO_MODEBAR = dict(remove=["zoom", "pan", "select", "lasso", "zoomIn", "zoomOut", "autoScale", "resetScale",
                           "toImage", "toimage", "sendDataToCloud", "hoverClosestCartesian", "hoverCompareCartesian",
                           "toggleSpikelines"],
                   bgcolor="rgba(0,0,0,0)", color="rgba(0,0,0,0)", activecolor="rgba(0,0,0,0)")
"""A message figure's toolbar, for graphs whose ``config`` the page does not set (the analysis panels'):
its buttons removed and the rest (the plotly logo) drawn transparent."""


def graph_config(fig: go.Figure) -> dict:
    """``dcc.Graph.config`` for ``fig``: no toolbar on a message figure, the usual one otherwise."""
    if fig.layout.meta == MESSAGE_META:
        return {"displayModeBar": False}
    return {"displaylogo": False}


def head_grid_figure(
    values: Float[Tensor, "layer head"],
    layers: list[int],
    label: str,
    *,
    colorscale: str = "Viridis",
    selected: tuple[int, int] | None = None,
) -> go.Figure:
    """Layers x heads heatmap of one metric; ``selected`` (layer, head) gets a red frame.

    x is the head index and y the layer index (layer 0 on top), so a click's ``x``/``y`` are
    the head and layer directly.
    """
    heads = list(range(values.shape[1]))
    fig = go.Figure(
        go.Heatmap(
            z=values.tolist(), x=heads, y=layers, colorscale=colorscale, colorbar=dict(title=dict(text=label, side="right")),
            hovertemplate="layer %{y}, head %{x}<br>" + label + ": %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis=dict(title="head", dtick=1), yaxis=dict(title="layer", autorange="reversed", tickmode="array", tickvals=layers),
        height=max(320, 18 * len(layers) + 120), margin=dict(l=50, r=20, t=30, b=40), clickmode="event",
        title=dict(text=label, font=dict(size=14)),
    )
    if selected is not None:
        fig.add_shape(**selection_frame(*selected))
    return fig


def selection_frame(layer: int, head: int) -> dict:
    """The red frame around the selected (layer, head) cell of a heads heatmap (a layout shape)."""
    return dict(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5, line=dict(color="red", width=3))


def _causal_blank(pattern: Float[Tensor, "q k"]) -> list[list[float | None]]:
    """The pattern as nested lists with future keys set to NaN (drawn blank)."""
    q, k = pattern.shape
    future = torch.ones(q, k, dtype=torch.bool).triu(1 + k - q)
    return pattern.float().masked_fill(future, float("nan")).tolist()


def _pattern_trace(pattern: Float[Tensor, "q k"], **kwargs) -> go.Heatmap:
    positions = list(range(pattern.shape[-1]))
    return go.Heatmap(
        z=_causal_blank(pattern), x=positions, y=list(range(pattern.shape[0])), zmin=0.0, zmax=1.0,
        colorscale=PATTERN_COLORSCALE, hovertemplate="query %{y} → key %{x}<br>attention %{z:.3f}<extra></extra>", **kwargs,
    )


def pattern_figure(pattern: Float[Tensor, "q k"], tokens: list[str], title: str) -> go.Figure:
    """One head's attention pattern: queries down, keys across, tokens on both axes."""
    if pattern.shape != (len(tokens), len(tokens)):
        raise ValueError(f"pattern of shape {tuple(pattern.shape)} does not match {len(tokens)} tokens")
    fig = go.Figure(_pattern_trace(pattern, colorbar=dict(title="attention")))
    axis = token_axis(tokens)
    side = min(760, max(360, 14 * len(tokens) + 160))
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)), height=side, margin=dict(l=90, r=20, t=40, b=90),
        xaxis=dict(title="key", tickangle=-60, **axis), yaxis=dict(title="query", autorange="reversed", **axis),
    )
    return fig


def summary_figure(
    received: Float[Tensor, "k"], entropy: Float[Tensor, "q"], tokens: list[str], title: str
) -> go.Figure:
    """Long-input view of one head: mean attention received per key (top), entropy per query (bottom)."""
    return summary_comparison_figure([("", received, entropy, BEFORE)], tokens, title)


def summary_comparison_figure(
    series: list[tuple[str, Tensor, Tensor, str]], tokens: list[str], title: str
) -> go.Figure:
    """Summary views of one or more variants overlaid: ``series`` holds (name, received, entropy, colour)."""
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("mean attention received per key", "entropy per query (nats)"),
    )
    positions = list(range(len(tokens)))
    for name, received, entropy, colour in series:
        shown = bool(name)
        fig.add_trace(go.Bar(x=positions, y=received.tolist(), name=name or "received", marker_color=colour,
                             opacity=0.7 if len(series) > 1 else 1.0, showlegend=shown, legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=positions, y=entropy.tolist(), name=name or "entropy", mode="lines",
                                 line=dict(color=colour), showlegend=False, legendgroup=name), row=2, col=1)
    axis = token_axis(tokens)
    fig.update_xaxes(**axis, tickangle=-60, row=2, col=1)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=520, barmode="overlay",
                      margin=dict(l=60, r=20, t=60, b=90))
    return fig


def head_figure(record: AttentionRecord, prompt: int, layer: int, head: int) -> go.Figure:
    """The selected head: its pattern when the record has patterns, else the summary view."""
    tokens = record.tokens[prompt]
    title = f"layer {layer}, head {head}"
    if layer in record.patterns:
        return pattern_figure(record.pattern(layer, prompt)[head], tokens, title)
    received, entropy = head_summary(record, prompt, layer, head)
    return summary_figure(received, entropy, tokens, title + " (summary: long input)")


def head_summary(record: AttentionRecord, prompt: int, layer: int, head: int) -> tuple[Tensor, Tensor]:
    """``received_mean[k]`` and ``entropy[q]`` of one head (the long-input view's data)."""
    return record.stat(layer, "received_mean", prompt)[head], record.stat(layer, "entropy", prompt)[head]


def comparison_figure(
    before: AttentionRecord, after: AttentionRecord, prompt: int, layer: int, head: int, edit_label: str
) -> go.Figure:
    """The selected head before and after an edit, and what changed.

    With patterns: before, after (shared 0..1 scale) and after minus before on a diverging scale
    centred on 0, its largest absolute change in the title; an edit that leaves this head's
    pattern as it was (scaling a head changes its output, not its own pattern) says so instead
    of showing two identical pictures. Without patterns (long input): the summaries overlaid.
    """
    tokens = before.tokens[prompt]
    title = f"layer {layer}, head {head}: before / after {edit_label}"
    if layer not in before.patterns or layer not in after.patterns:
        series = [("before", *head_summary(before, prompt, layer, head), BEFORE),
                  ("after", *head_summary(after, prompt, layer, head), AFTER)]
        return summary_comparison_figure(series, tokens, title)
    old, new = before.pattern(layer, prompt)[head].float(), after.pattern(layer, prompt)[head].float()
    diff = new - old
    largest = float(diff.abs().max()) if diff.numel() else 0.0
    change = ("this head's pattern is unchanged by the edit (largest change < 1e-6; scaling a head changes its "
              "output, not its pattern): see the next-token bars, or a later layer's head" if largest < 1e-6
              else f"largest change {largest:.3g}")
    fig = make_subplots(rows=1, cols=3, subplot_titles=("before", f"after: {edit_label}", "after − before"),
                        horizontal_spacing=0.07)
    fig.add_trace(_pattern_trace(old, coloraxis="coloraxis"), row=1, col=1)
    fig.add_trace(_pattern_trace(new, coloraxis="coloraxis"), row=1, col=2)
    bound = max(largest, 1e-6)
    fig.add_trace(go.Heatmap(z=_causal_blank(diff), x=list(range(len(tokens))), y=list(range(len(tokens))),
                             coloraxis="coloraxis2",
                             hovertemplate="query %{y} → key %{x}<br>change %{z:+.4f}<extra></extra>"), row=1, col=3)
    axis = token_axis(tokens, max_labels=32)
    fig.update_xaxes(tickangle=-60, **axis)
    fig.update_yaxes(autorange="reversed", **axis)
    fig.update_layout(title=dict(text=f"{title}<br><sup>{change}</sup>", font=dict(size=14)), height=500,
                      margin=dict(l=90, r=20, t=80, b=90),
                      coloraxis=dict(colorscale=PATTERN_COLORSCALE, cmin=0.0, cmax=1.0,
                                     colorbar=dict(title="attention", x=1.0, len=0.45, y=0.78)),
                      coloraxis2=dict(colorscale="RdBu", reversescale=True, cmin=-bound, cmax=bound,
                                      colorbar=dict(title="change", x=1.0, len=0.45, y=0.22)))
    return fig


def next_token_figure(tokens: list[str], before: list[float], after: list[float], edit_label: str) -> go.Figure:
    """Grouped bars: probability of each candidate next token before and after the edit."""
    positions = list(range(len(tokens)))
    fig = go.Figure([
        go.Bar(x=positions, y=before, name="before", marker_color=BEFORE),
        go.Bar(x=positions, y=after, name=f"after: {edit_label}", marker_color=AFTER),
    ])
    fig.update_layout(
        barmode="group", height=340, title=dict(text="next-token probability", font=dict(size=14)),
        xaxis=dict(tickmode="array", tickvals=positions, ticktext=[repr(t)[1:-1] or "∅" for t in tokens], tickangle=-45),
        yaxis=dict(title="probability", rangemode="tozero"), margin=dict(l=60, r=20, t=40, b=80),
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return fig


def token_colours(tokens: list[str], values: Float[Tensor, "k"]) -> list[tuple[str, str, float]]:
    """Each token with a background colour whose opacity is its value over the largest value.

    Returns ``(shown token, css colour, value)`` triples for the layout to render as spans.
    """
    values = values.float().nan_to_num(0.0)
    top = float(values.max()) if values.numel() and float(values.max()) > 0 else 1.0
    return [(display_token(t), f"rgba(31, 119, 180, {float(v) / top:.3f})", float(v)) for t, v in zip(tokens, values)]
