"""Pure figure and text builders of the vision panel: arrays and strings in, plotly figures and
marked-up caption pieces out; no Dash, no model.

Conventions:
    Image tokens are in the vision tower's patch order, row by row from the top left (LLaVA's
    order), so reshaping a head's attention to the image tokens to ``(rows, cols)`` lays it over
    the patches it read. The overlay draws the heatmap in the image's own pixel coordinates, cell
    ``(r, c)`` covering patch ``(r, c)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from jaxtyping import Float, UInt8
from plotly.subplots import make_subplots

from circuits.hallucination.chair import ChairVocabulary
from circuits.hallucination.words import caption_tokens

from apps.heads_dashboard.figures import head_grid_figure

OVERLAY_OPACITY = 0.8
OVERLAY_COLORSCALE = [[0.0, "rgba(255, 255, 0, 0)"], [0.3, "rgba(255, 200, 0, 0.35)"],
                      [0.7, "rgba(255, 90, 0, 0.7)"], [1.0, "rgba(220, 0, 0, 0.9)"]]
"""Clear at zero, so patches the head ignores show the image as it is; red where it looks most."""


def grid_shape(n_tokens: int) -> tuple[int, int]:
    """``(rows, cols)`` of ``n_tokens`` image tokens: a square grid when the count is a square
    (synth-llava's 64 tokens: 8 x 8), else one row (a model whose tokens are not a square grid)."""
    if n_tokens < 1:
        raise ValueError("there are no image tokens to lay out")
    side = math.isqrt(n_tokens)
    return (side, side) if side * side == n_tokens else (1, n_tokens)


def patch_grid(values: Float[np.ndarray, "n_image"]) -> Float[np.ndarray, "rows cols"]:
    """One value per image token, reshaped to the patch grid (row-major, top left first)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    return values.reshape(grid_shape(values.size))


def overlay_figure(image: UInt8[np.ndarray, "height width 3"], grid: Float[np.ndarray, "rows cols"], title: str,
                   *, opacity: float = OVERLAY_OPACITY) -> go.Figure:
    """The image with ``grid`` (one value per patch) drawn over it as a semi-transparent heatmap.

    The colour scale runs from 0 to the grid's largest value, so a head that gives the image
    little attention still shows where that little goes; the hover gives each patch's value.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the image must be height x width x 3, got shape {image.shape}")
    rows, cols = grid.shape
    height, width = image.shape[:2]
    cell_w, cell_h = width / cols, height / rows
    top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0
    fig = go.Figure(go.Image(z=image, hoverinfo="skip"))
    fig.add_trace(go.Heatmap(
        z=grid.tolist(), x0=cell_w / 2, dx=cell_w, y0=cell_h / 2, dy=cell_h, opacity=opacity,
        colorscale=OVERLAY_COLORSCALE, zmin=0.0, zmax=top if top > 0 else 1.0,
        colorbar=dict(title=dict(text="attention", side="right")),
        customdata=[[(r, c) for c in range(cols)] for r in range(rows)],
        hovertemplate="patch row %{customdata[0]}, col %{customdata[1]}<br>attention %{z:.4f}<extra></extra>",
    ))
    fig.update_layout(title=dict(text=title, font=dict(size=13), x=0.02, y=0.97), height=440,
                      margin=dict(l=10, r=10, t=60, b=10),
                      xaxis=dict(visible=False, range=[0, width]),
                      yaxis=dict(visible=False, range=[height, 0], scaleanchor="x"))
    return fig


def overlays_figure(image: UInt8[np.ndarray, "height width 3"], grids: list[Float[np.ndarray, "rows cols"]],
                    titles: list[str], *, columns: int = 4, opacity: float = OVERLAY_OPACITY) -> go.Figure:
    """Several heads' grids over the same image, side by side (one colour scale per panel, each
    from 0 to its own largest value; the hover gives the values)."""
    if len(grids) != len(titles) or not grids:
        raise ValueError("give one title per grid, and at least one grid")
    columns = min(columns, len(grids))
    rows = math.ceil(len(grids) / columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.08)
    height, width = np.asarray(image).shape[:2]
    for i, grid in enumerate(grids):
        one = overlay_figure(image, grid, titles[i], opacity=opacity)
        heat = one.data[1].update(showscale=False)
        row, col = i // columns + 1, i % columns + 1
        fig.add_trace(one.data[0], row=row, col=col)
        fig.add_trace(heat, row=row, col=col)
        fig.update_xaxes(visible=False, range=[0, width], row=row, col=col)
        fig.update_yaxes(visible=False, range=[height, 0], scaleanchor=f"x{i + 1 if i else ''}", row=row, col=col)
    fig.update_layout(height=260 * rows + 40, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_annotations(font_size=11)
    return fig


def patch_boxes(fig: go.Figure, tokens: list[int] | tuple[int, ...], grid: tuple[int, int], size: tuple[int, int],
                colour: str, name: str, *, first_token: int = 0) -> go.Figure:
    """Frame image tokens ``tokens`` (indices among the image tokens, ``first_token`` being patch 0)
    on an image of ``size`` = (width, height) laid out in ``grid`` = (rows, cols) patches; one legend
    entry ``name`` for the set. Returns ``fig``."""
    rows, cols = grid
    width, height = size
    cell_w, cell_h = width / cols, height / rows
    xs, ys = [], []
    for token in tokens:
        r, c = divmod(token - first_token, cols)
        if not (0 <= r < rows):
            raise ValueError(f"image token {token} is outside the {rows} x {cols} grid")
        x0, y0 = c * cell_w, r * cell_h
        xs += [x0, x0 + cell_w, x0 + cell_w, x0, x0, None]
        ys += [y0, y0, y0 + cell_h, y0 + cell_h, y0, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=2), name=name, hoverinfo="skip"))
    fig.update_layout(showlegend=True)
    return fig


def overlay_title(layer: int, head: int | None, mass: float) -> str:
    """The overlay's title: which head (or the layer's mean) and its total attention on the image."""
    who = f"layer {layer}, mean over heads" if head is None else f"layer {layer}, head {head}"
    return f"{who}: attention to the image<br>from the last token (mass {mass:.3f})"


def span_mass_figure(mass: Float[np.ndarray, "layer head"], selected: tuple[int, int] | None = None) -> go.Figure:
    """Each head's attention mass on the image at the last prompt position, layers x heads;
    clicking a cell selects that head (the click's x and y are the head and the layer)."""
    return head_grid_figure(np.asarray(mass, dtype=float), list(range(len(mass))), "attention mass on the image",
                            selected=selected)


def vhd_figure(vhd: Float[np.ndarray, "layer head"], outliers: np.ndarray | None = None,
               selected: tuple[int, int] | None = None) -> go.Figure:
    """VHD per head (layers x heads); heads the outlier rule removed are crossed out."""
    vhd = np.asarray(vhd, dtype=float)
    fig = head_grid_figure(vhd, list(range(len(vhd))), "VHD", colorscale="Magma", selected=selected)
    if outliers is not None and np.asarray(outliers).any():
        layers, heads = np.nonzero(np.asarray(outliers))
        fig.add_trace(go.Scatter(x=heads.tolist(), y=layers.tolist(), mode="markers", name="outlier (set to 0)",
                                 marker=dict(symbol="x", color="#00c8ff", size=9), hoverinfo="skip"))
        fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.12))
    fig.update_xaxes(range=[-0.5, vhd.shape[1] - 0.5])
    fig.update_yaxes(range=[vhd.shape[0] - 0.5, -0.5], autorange=False)
    return fig


# --- captions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """An object word of a caption: its category, whether the image lacks it (None: no ground
    truth), and whether the other caption lacks the category (the edit changed it)."""

    category: str
    hallucinated: bool | None
    changed: bool


Piece = tuple[str, Mark | None]
"""A run of caption text, with its mark when it is an object word."""


def caption_categories(caption: str, vocabulary: ChairVocabulary) -> frozenset[str]:
    """The categories a caption mentions, as CHAIR finds them."""
    return frozenset(m.category for m in vocabulary.objects_in(caption))


def _token_spans(caption: str) -> list[tuple[int, int] | None]:
    """Character span of each of :func:`caption_tokens`' tokens in ``caption`` (None where the
    tokenizer rewrote a token, as it does quotes)."""
    lower, cursor, spans = caption.lower(), 0, []
    for token in caption_tokens(caption):
        start = lower.find(token, cursor)
        if start < 0:
            spans.append(None)
            continue
        spans.append((start, start + len(token)))
        cursor = start + len(token)
    return spans


def caption_pieces(caption: str, other: str, vocabulary: ChairVocabulary,
                   truth: frozenset[str] | None = None) -> list[Piece]:
    """``caption`` cut into plain text and object words, each object word marked against the
    ground truth (``truth``, the image's categories; None: unknown) and the ``other`` caption."""
    spans = _token_spans(caption)
    others = caption_categories(other, vocabulary)
    pieces: list[Piece] = []
    cursor = 0
    for mention in vocabulary.objects_in(caption):
        words = len(mention.word.split())
        first, last = spans[mention.position], spans[min(mention.position + words - 1, len(spans) - 1)]
        if first is None or last is None or first[0] < cursor:
            continue
        hallucinated = None if truth is None else mention.category not in truth
        pieces.append((caption[cursor:first[0]], None))
        pieces.append((caption[first[0]:last[1]], Mark(mention.category, hallucinated, mention.category not in others)))
        cursor = last[1]
    pieces.append((caption[cursor:], None))
    return [(text, mark) for text, mark in pieces if text]


def caption_summary(before: str, after: str, vocabulary: ChairVocabulary, truth: frozenset[str] | None) -> str:
    """One line: objects only one caption names, and hallucinated objects of each."""
    a, b = caption_categories(before, vocabulary), caption_categories(after, vocabulary)
    parts = [f"only before: {', '.join(sorted(a - b)) or 'none'}", f"only after: {', '.join(sorted(b - a)) or 'none'}"]
    if truth is not None:
        parts += [f"hallucinated before: {', '.join(sorted(a - truth)) or 'none'}",
                  f"after: {', '.join(sorted(b - truth)) or 'none'}"]
    return "; ".join(parts)
