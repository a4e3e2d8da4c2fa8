"""How the selected head is drawn: one pattern, every head of its layer, or after minus before.

Context:
    The head panel's figure depends on the record, the selected (layer, head) and a
    :class:`Display` read from three widgets: the view (``pattern``, ``layer``: small multiples of
    every head of the layer on one colour scale, ``diff``: after minus the edit, every head of the
    layer, diverging scale), the scale (``linear`` or ``log``: log10 of the probabilities, so small
    attention shows) and "hide the first token" (the attention sink's column and row left out; values
    not renormalised). Records without patterns (long inputs) get the summary view with the
    few-query guard (:func:`.token_views.guarded_summary_figure`) whatever the view.

    :data:`VIEWS` maps a view name to its figure builder; the default display of a pattern is the
    original :func:`.figures.head_figure`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import plotly.graph_objects as go
from dash import dcc, html

from apps.heads_dashboard import figures
from apps.heads_dashboard.figures_grid import layer_diff_grid_figure, layer_grid_figure, scaled_pattern_figure
from apps.heads_dashboard.ids import ID, ROW
from apps.heads_dashboard.token_views import guarded_summary_figure, hide_first_token
from probe.capture.record import AttentionRecord
from probe.errors import InputError

NEEDS_EDIT = "the diff view shows after minus before an edit: tick ACT or scale heads in the Edits panel"


@dataclass(frozen=True)
class Display:
    """The head panel's drawing options (see the module docstring)."""

    view: str = "pattern"
    scale: str = "linear"
    hide_first: bool = False

    @classmethod
    def from_ui(cls, view: str | None, scale: str | None, hide_first: list[str] | None) -> "Display":
        return cls(view or "pattern", scale or "linear", bool(hide_first))

    @property
    def is_default(self) -> bool:
        return self == Display()


@dataclass(frozen=True)
class Shown:
    """What a builder draws: the record (and the edited one, if any) at one head."""

    record: AttentionRecord
    prompt: int
    layer: int
    head: int
    display: Display
    after: AttentionRecord | None = None


def _tokens_and(patterns, shown: Shown):
    tokens = shown.record.tokens[shown.prompt]
    return hide_first_token(patterns, tokens) if shown.display.hide_first else (patterns, tokens)


def _title(shown: Shown) -> str:
    return f"layer {shown.layer}, head {shown.head}" + (" · first token hidden" if shown.display.hide_first else "")


def one_head(shown: Shown) -> go.Figure:
    if shown.display.is_default:
        return figures.head_figure(shown.record, shown.prompt, shown.layer, shown.head)
    pattern, tokens = _tokens_and(shown.record.pattern(shown.layer, shown.prompt)[shown.head], shown)
    return scaled_pattern_figure(pattern, tokens, _title(shown), shown.display.scale)


def layer_heads(shown: Shown) -> go.Figure:
    patterns, tokens = _tokens_and(shown.record.pattern(shown.layer, shown.prompt), shown)
    return layer_grid_figure(patterns, tokens, shown.layer, scale=shown.display.scale, selected_head=shown.head)


def layer_diff(shown: Shown) -> go.Figure:
    if shown.after is None or shown.layer not in shown.after.patterns:
        raise InputError(NEEDS_EDIT)
    before, tokens = _tokens_and(shown.record.pattern(shown.layer, shown.prompt), shown)
    after, _ = _tokens_and(shown.after.pattern(shown.layer, shown.prompt), shown)
    return layer_diff_grid_figure(before, after, tokens, shown.layer)


VIEWS: dict[str, Callable[[Shown], go.Figure]] = {"pattern": one_head, "layer": layer_heads, "diff": layer_diff}


def summary(shown: Shown) -> go.Figure:
    """The long-input view with the few-query guard (keys seen by < 4 queries blank, counts shown)."""
    record, prompt, layer, head = shown.record, shown.prompt, shown.layer, shown.head
    received, entropy = figures.head_summary(record, prompt, layer, head)
    counts = record.stat(layer, "visible_count", prompt)
    return guarded_summary_figure(received, counts, entropy, record.tokens[prompt],
                                  f"layer {layer}, head {head} (summary: long input)", hide_first=shown.display.hide_first)


def display_figure(shown: Shown) -> go.Figure:
    """The head panel's figure for ``shown`` (InputError with the fix when the view cannot be drawn)."""
    if shown.display.view not in VIEWS:
        raise InputError(f"unknown view {shown.display.view!r}; choose one of {', '.join(VIEWS)}")
    if shown.layer not in shown.record.patterns:
        return summary(shown)
    return VIEWS[shown.display.view](shown)


def controls() -> html.Div:
    """The view, scale and hide-first widgets (in the head panel, above its figure)."""
    radio = {"inline": True, "inputStyle": {"marginRight": "3px"}, "labelStyle": {"marginRight": "10px"}}
    return html.Div(
        [
            dcc.RadioItems(id=ID.VIEW, value="pattern", options=[
                {"label": "this head", "value": "pattern"}, {"label": "all heads of the layer", "value": "layer"},
                {"label": "after − before (edit)", "value": "diff"}], **radio),
            html.Span("│", style={"margin": "0 8px", "color": "#bbb"}),
            dcc.RadioItems(id=ID.SCALE, value="linear", options=[
                {"label": "linear", "value": "linear"}, {"label": "log", "value": "log"}], **radio),
            dcc.Checklist(id=ID.HIDE_FIRST, value=[], options=[{"label": " hide the first token", "value": "hide"}],
                          style={"marginLeft": "8px"}),
        ],
        style={**ROW, "alignItems": "center", "margin": "4px 0"},
    )
