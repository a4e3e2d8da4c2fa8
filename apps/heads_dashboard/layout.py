"""The page: prompt row, metric heatmap, selected head, edits panel, target/foil and data-set panels,
then the analysis panels (:mod:`.panels`). Component ids live in :class:`ID` (:mod:`.ids`); the
feature views' widgets come from their modules (:mod:`.views`)."""

from __future__ import annotations

from typing import Sequence

from dash import dcc, html
from dash.development.base_component import Component

from apps.heads_dashboard.figures import graph_config, message_figure
from apps.heads_dashboard.metrics import registered_metrics
from apps.heads_dashboard.views.grid_metrics import GRID_METRICS
from apps.heads_dashboard.settings import ACT_DEFAULT, EXAMPLE_PROMPTS
from apps.heads_dashboard.views import dataset, display, scores, tokens, url, window

from apps.heads_dashboard.ids import ID, MESSAGE, PANEL, PROGRESS, ROW, WARNING  # noqa: F401 - ID re-exported


def build_layout(record_prompts: list[str], initial_source: dict, panels: Sequence[Component] = ()) -> html.Div:
    """The whole page; ``record_prompts`` labels the saved record's prompts (empty: no record);
    ``panels`` (one per analysis, :mod:`.panels`) follow the edits panel."""
    return html.Div(
        [
            dcc.Store(id=ID.SESSION, storage_type="session", data=initial_source),
            dcc.Store(id=ID.MODEL_READY, data=False),
            dcc.Store(id=ID.CAPTURE_REQUEST),
            dcc.Store(id=ID.EDIT_REQUEST),
            dcc.Store(id=ID.EDIT_SESSION),
            dcc.Interval(id=ID.MODEL_POLL, interval=500),
            *url.location(),
            html.H2("headscope · heads dashboard", style={"margin": "6px"}),
            html.Div(id=ID.MODEL_STATUS, style={"margin": "0 6px", "color": "#555"}),
            _prompt_panel(record_prompts),
            html.Div([html.Div([_grid_panel(), scores.panel()], style={"flex": "1 1 420px", "minWidth": "380px"}),
                      _head_panel()], style=ROW),
            _edits_panel(),
            dataset.panel(),
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
                    html.Button("Run", id=ID.RUN, n_clicks=0, style={"marginRight": "6px"}),
                    html.Button("Cancel", id=ID.CANCEL, n_clicks=0, disabled=True, style={"marginRight": "10px"}),
                    dcc.Dropdown(id=ID.EXAMPLES, options=list(EXAMPLE_PROMPTS), placeholder="example prompts",
                                 style={"width": "420px", "marginRight": "10px"}),
                    dcc.Dropdown(id=ID.RECORD_PROMPT, options=record_options, placeholder="saved record",
                                 style={"width": "320px", "display": "block" if record_options else "none"}),
                ],
                style={**ROW, "alignItems": "center", "marginTop": "6px"},
            ),
            html.Div(id=ID.PROGRESS, style=PROGRESS),
            html.Div(id=ID.PROMPT_MESSAGE, style=MESSAGE),
            html.Div(id=ID.PROMPT_INFO, style={"color": "#555"}),
        ],
        style=PANEL,
    )


def _grid_panel() -> html.Div:
    metrics = [{"label": m.label, "value": m.name} for m in registered_metrics()]
    metrics += [{"label": label, "value": name} for name, (label, _) in GRID_METRICS.items()]
    return html.Div(
        [
            dcc.Dropdown(id=ID.METRIC, options=metrics, value=metrics[0]["value"], clearable=False),
            _graph(ID.GRID, "type a prompt and press Run"),
        ],
        style=PANEL,
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
            display.controls(),
            html.Div(id=ID.HEAD_MESSAGE, style=MESSAGE),
            _graph(ID.HEAD_GRAPH, "no head selected yet"),
            tokens.controls(),
            html.Div(id=ID.QK_INFO, style={"color": "#555", "margin": "2px 0"}),
            html.Div(id=ID.HEAD_TOKENS, style={"lineHeight": "1.9em", "fontFamily": "monospace", "maxHeight": "200px", "overflowY": "auto"}),
            window.controls(),
        ],
        style={**PANEL, "flex": "1 1 560px", "minWidth": "420px"},
    )


def _graph(graph_id: str, placeholder: str) -> dcc.Graph:
    """A graph showing ``placeholder`` (no toolbar) until a callback draws it."""
    figure = message_figure(placeholder)
    return dcc.Graph(id=graph_id, figure=figure, config=graph_config(figure))


def _edits_panel() -> html.Div:
    text = {"type": "text", "debounce": True}
    return html.Div(
        [
            html.H4("Edits", style={"margin": "2px 0 8px"}),
            html.Div(
                [
                    dcc.Checklist(id=ID.EDIT_ACT, options=[{"label": " ACT calibration (tau 0.1, beta 0.4) on heads", "value": "act"}],
                                  value=[], style={"marginRight": "6px"}),
                    dcc.Input(id=ID.EDIT_ACT_HEADS, placeholder="all of layers 2+", style={"width": "150px", "marginRight": "6px"}, **text),
                    dcc.Upload(html.Button("load act search result"), id=ID.EDIT_ACT_FILE, multiple=False,
                               style={"display": "inline-block", "marginRight": "20px"}),
                    html.Label("scale heads ", htmlFor=ID.EDIT_HEADS),
                    dcc.Input(id=ID.EDIT_HEADS, placeholder="e.g. 3.4, 5.1", style={"width": "140px", "margin": "0 8px"}, **text),
                    html.Label("by ", htmlFor=ID.EDIT_FACTOR),
                    dcc.Input(id=ID.EDIT_FACTOR, value="0", style={"width": "70px", "margin": "0 8px"}, **text),
                    html.Button("Apply", id=ID.EDIT_APPLY, n_clicks=0, style={"marginRight": "6px"}),
                    html.Button("Cancel", id=ID.EDIT_CANCEL, n_clicks=0, disabled=True),
                ],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div(id=ID.EDIT_ACT_NOTE, style={"color": "#555", "margin": "4px 0"},
                     children=f"ACT heads: empty = {ACT_DEFAULT}, which can move a small model's prediction a lot; "
                              "type heads as LAYER.HEAD or load the file `headscope act search --out FILE` wrote "
                              "(its selected heads)."),
            html.Div(id=ID.EDIT_PROGRESS, style=PROGRESS),
            html.Div(id=ID.EDIT_MESSAGE, style=MESSAGE),
            html.Div(id=ID.EDIT_WARNING, style=WARNING),
            html.Div(
                [
                    html.Div(_graph(ID.EDIT_NEXT, "choose an edit"), style={"flex": "1 1 380px"}),
                    html.Div(_graph(ID.EDIT_COMPARE, "choose an edit"), style={"flex": "2 1 640px"}),
                ],
                style=ROW,
            ),
        ],
        style=PANEL,
    )
