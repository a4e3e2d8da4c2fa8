"""The page: prompt row, metric heatmap, selected head, edits panel, then the analysis panels
(:mod:`.panels`). Component ids live in :class:`ID`."""

from __future__ import annotations

from typing import Sequence

from dash import dcc, html
from dash.development.base_component import Component

from apps.heads_dashboard.figures import message_figure
from apps.heads_dashboard.metrics import registered_metrics
from apps.heads_dashboard.settings import EXAMPLE_PROMPTS

PANEL = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "10px", "margin": "6px", "background": "#fff"}
MESSAGE = {"color": "#b00020", "minHeight": "1.2em", "margin": "4px 0"}
ROW = {"display": "flex", "flexWrap": "wrap", "alignItems": "flex-start"}


class ID:
    """Component ids (one place, so callbacks and browser tests agree)."""

    SESSION = "session"
    MODEL_READY = "model-ready"
    MODEL_STATUS = "model-status"
    MODEL_POLL = "model-poll"
    PROMPT = "prompt"
    EXAMPLES = "examples"
    RECORD_PROMPT = "record-prompt"
    RUN = "run"
    PROMPT_MESSAGE = "prompt-message"
    PROMPT_INFO = "prompt-info"
    METRIC = "metric"
    GRID = "grid"
    LAYER = "layer"
    HEAD = "head"
    HEAD_MESSAGE = "head-message"
    HEAD_GRAPH = "head-graph"
    HEAD_TOKENS = "head-tokens"
    EDIT_ACT = "edit-act"
    EDIT_HEADS = "edit-heads"
    EDIT_FACTOR = "edit-factor"
    EDIT_APPLY = "edit-apply"
    EDIT_MESSAGE = "edit-message"
    EDIT_NEXT = "edit-next"
    EDIT_COMPARE = "edit-compare"


def build_layout(record_prompts: list[str], initial_source: dict, panels: Sequence[Component] = ()) -> html.Div:
    """The whole page; ``record_prompts`` labels the saved record's prompts (empty: no record);
    ``panels`` (one per analysis, :mod:`.panels`) follow the edits panel."""
    return html.Div(
        [
            dcc.Store(id=ID.SESSION, storage_type="session", data=initial_source),
            dcc.Store(id=ID.MODEL_READY, data=False),
            dcc.Interval(id=ID.MODEL_POLL, interval=500),
            html.H2("headscope · heads dashboard", style={"margin": "6px"}),
            html.Div(id=ID.MODEL_STATUS, style={"margin": "0 6px", "color": "#555"}),
            _prompt_panel(record_prompts),
            html.Div([_grid_panel(), _head_panel()], style=ROW),
            _edits_panel(),
            *panels,
        ],
        style={"fontFamily": "system-ui, sans-serif", "background": "#f6f6f6", "padding": "6px"},
    )


def _prompt_panel(record_prompts: list[str]) -> html.Div:
    record_options = [{"label": f"record prompt {i}: {text[:60]}", "value": i} for i, text in enumerate(record_prompts)]
    return html.Div(
        [
            dcc.Textarea(id=ID.PROMPT, placeholder="Type a prompt…", style={"width": "100%", "height": "70px"}),
            html.Div(
                [
                    html.Button("Run", id=ID.RUN, n_clicks=0, style={"marginRight": "10px"}),
                    dcc.Dropdown(id=ID.EXAMPLES, options=list(EXAMPLE_PROMPTS), placeholder="example prompts",
                                 style={"width": "420px", "marginRight": "10px"}),
                    dcc.Dropdown(id=ID.RECORD_PROMPT, options=record_options, placeholder="saved record",
                                 style={"width": "320px", "display": "block" if record_options else "none"}),
                ],
                style={**ROW, "alignItems": "center", "marginTop": "6px"},
            ),
            html.Div(id=ID.PROMPT_MESSAGE, style=MESSAGE),
            html.Div(id=ID.PROMPT_INFO, style={"color": "#555"}),
        ],
        style=PANEL,
    )


def _grid_panel() -> html.Div:
    metrics = [{"label": m.label, "value": m.name} for m in registered_metrics()]
    return html.Div(
        [
            dcc.Dropdown(id=ID.METRIC, options=metrics, value=metrics[0]["value"], clearable=False),
            dcc.Loading(dcc.Graph(id=ID.GRID, figure=message_figure("type a prompt and press Run"))),
        ],
        style={**PANEL, "flex": "1 1 420px", "minWidth": "380px"},
    )


def _head_panel() -> html.Div:
    number = {"type": "number", "debounce": True, "style": {"width": "70px", "marginRight": "10px"}}
    return html.Div(
        [
            html.Div(
                [html.Label("layer ", htmlFor=ID.LAYER), dcc.Input(id=ID.LAYER, value=0, **number),
                 html.Label("head ", htmlFor=ID.HEAD), dcc.Input(id=ID.HEAD, value=0, **number),
                 html.Span("(or click a cell of the heatmap)", style={"color": "#777"})],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div(id=ID.HEAD_MESSAGE, style=MESSAGE),
            dcc.Loading(dcc.Graph(id=ID.HEAD_GRAPH, figure=message_figure("no head selected yet"))),
            html.Div("tokens coloured by attention received (this head):", style={"color": "#555", "marginTop": "6px"}),
            html.Div(id=ID.HEAD_TOKENS, style={"lineHeight": "1.9em", "fontFamily": "monospace", "maxHeight": "200px", "overflowY": "auto"}),
        ],
        style={**PANEL, "flex": "1 1 560px", "minWidth": "420px"},
    )


def _edits_panel() -> html.Div:
    return html.Div(
        [
            html.H4("Edits", style={"margin": "2px 0 8px"}),
            html.Div(
                [
                    dcc.Checklist(id=ID.EDIT_ACT, options=[{"label": " ACT calibration (tau 0.1, beta 0.4, layers 2 and up, as in ACT)", "value": "act"}],
                                  value=[], style={"marginRight": "20px"}),
                    html.Label("scale heads ", htmlFor=ID.EDIT_HEADS),
                    dcc.Input(id=ID.EDIT_HEADS, type="text", placeholder="e.g. 3.4, 5.1", debounce=True,
                              style={"width": "140px", "margin": "0 8px"}),
                    html.Label("by ", htmlFor=ID.EDIT_FACTOR),
                    dcc.Input(id=ID.EDIT_FACTOR, type="number", value=0.0, step=0.1, debounce=True,
                              style={"width": "70px", "margin": "0 8px"}),
                    html.Button("Apply", id=ID.EDIT_APPLY, n_clicks=0),
                ],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div(id=ID.EDIT_MESSAGE, style=MESSAGE),
            html.Div(
                [
                    html.Div(dcc.Loading(dcc.Graph(id=ID.EDIT_NEXT, figure=message_figure("choose an edit"))), style={"flex": "1 1 380px"}),
                    html.Div(dcc.Loading(dcc.Graph(id=ID.EDIT_COMPARE, figure=message_figure("choose an edit"))), style={"flex": "2 1 640px"}),
                ],
                style=ROW,
            ),
        ],
        style=PANEL,
    )


def token_spans(coloured: list[tuple[str, str, float]]) -> list[html.Span]:
    """Render :func:`~.figures.token_colours` output as inline spans with the value on hover."""
    return [
        html.Span(token, title=f"{value:.3f}", style={"background": colour, "padding": "1px 2px", "margin": "1px", "display": "inline-block",
                                                      "whiteSpace": "pre", "borderRadius": "3px"})
        for token, colour, value in coloured
    ]
