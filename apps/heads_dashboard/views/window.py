"""The windowed full pattern of a long input: every key, for a chosen range of queries.

Context:
    Long prompts are captured as statistics (no ``tokens x tokens`` patterns). To look at what a
    few queries do, the user types a query range (``-32:`` the last 32 queries, ``100:140``) and
    presses "windowed pattern": a background job runs :func:`probe.capture.window.capture_window`
    for the selected layer under the session's committed edits and writes the rows (``[head,
    window, tokens]``) to a :class:`WindowStore` (safetensors; no pickle). The figure then shows
    the selected head's rows (:func:`.token_views.window_figure`), with the page's log-scale and
    hide-the-first-token options; other heads of that layer need no new job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate
from safetensors.torch import load_file, save_file

from apps.heads_dashboard import figures
from apps.heads_dashboard.callback_tools import internal_error, job_options, new_request, show_cancelled, user_message
from apps.heads_dashboard.ids import ID, MESSAGE, PROGRESS, ROW
from apps.heads_dashboard.settings import EditSettings
from apps.heads_dashboard.token_views import window_figure
from apps.heads_dashboard.views.scores import session_edits
from apps.heads_dashboard.workbench import Source, Workbench
from probe.capture.window import capture_window, window_bounds
from probe.errors import InputError

RANGE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")
KEY = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_RANGE = "-32:"


def parse_range(text: str | None, n_tokens: int) -> tuple[int, int]:
    """``start:stop`` (either side optional, negative from the end) as ``0 <= start < stop <= n``."""
    match = RANGE.match(text or DEFAULT_RANGE)
    if match is None:
        raise InputError(f"the query range {text!r} is not START:STOP; e.g. -32: (the last 32 queries) or 100:140")
    start = int(match.group(1)) if match.group(1) else 0
    stop = int(match.group(2)) if match.group(2) else None
    return window_bounds(start + n_tokens if start < 0 else start, stop, n_tokens)


class WindowStore:
    """Window rows (``[head, window, tokens]`` of one layer) as safetensors files keyed by a hash."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        if not KEY.match(key or ""):
            raise InputError("this window is not known to the server; press 'windowed pattern' again")
        return self.folder / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str):
        path = self.path(key)
        if not path.exists():
            raise InputError("this window is no longer stored; press 'windowed pattern' again")
        return load_file(str(path))["rows"]

    def put(self, key: str, rows) -> None:
        path = self.path(key)
        partial = path.with_suffix(".partial")
        save_file({"rows": rows.contiguous()}, str(partial))
        partial.replace(path)


def submit_window(workbench: Workbench, windows: WindowStore, source, edit_session, text, layer):
    """(window or no_update, request or no_update, message) for the 'windowed pattern' button."""
    try:
        src = Source.from_store(source)
        if src.prompt is None:
            raise InputError("a windowed pattern needs a typed prompt: type one and press Run")
        edits = session_edits(edit_session, source)
        plan = workbench.plan(src, edits)
        start, stop = parse_range(text, plan.n_tokens)
        if layer is None or not 0 <= int(layer) < workbench.holder.get().geometry.n_layers:
            raise InputError(f"layer {layer} does not exist; choose a layer in the head panel")
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, no_update, user_message("submit_window", err)
    window = {"key": windows.key(plan.model, plan.prompt, edits.to_store(), start, stop, int(layer)),
              "prompt": plan.prompt, "start": start, "stop": stop, "layer": int(layer)}
    if window["key"] in windows:
        return window, no_update, ""
    return no_update, new_request(window=window, edits=edits.to_store()), ""


def window_job(workbench: Workbench, windows: WindowStore, request: dict | None, progress=None):
    """(window, message): capture the requested rows (in a background job)."""
    if not request:
        raise PreventUpdate
    window = request["window"]
    try:
        model = workbench.holder.get()
        if progress is not None:
            progress(f"capturing queries {window['start']}..{window['stop'] - 1} of layer {window['layer']}…")
        edits = EditSettings.from_store(request["edits"]).to_edits(model.geometry.n_layers)
        captured = capture_window(model, window["prompt"], window["start"], window["stop"], layers=[window["layer"]],
                                  edits=edits)
        windows.put(window["key"], captured.rows[window["layer"]])
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, user_message("window_job", err)
    return window, ""


def window_view(workbench: Workbench, windows: WindowStore, window: dict | None, source, head, scale, hide_first):
    """(figure, config): the selected head's rows of the stored window."""
    try:
        if not window:
            fig = figures.message_figure("type a query range (e.g. -32:) and press 'windowed pattern'")
        elif window.get("prompt") != Source.from_store(source).prompt:
            fig = figures.message_figure("the window is of another prompt; press 'windowed pattern' again")
        else:
            rows = windows.get(window["key"])
            view = workbench.cached_view(Source.from_store(source))
            if head is None or not 0 <= int(head) < rows.shape[0]:
                raise InputError(f"head {head} does not exist; choose a head in the head panel")
            fig = window_figure(rows[int(head)], view.tokens, window["start"],
                                f"layer {window['layer']}, head {head} (window)", scale=scale or "linear",
                                hide_first=bool(hide_first))
    except InputError as err:
        fig = figures.message_figure(str(err))
    except Exception as err:  # noqa: BLE001 - the UI boundary
        fig = figures.message_figure(internal_error("window_view", err))
    return fig, figures.graph_config(fig)


def controls() -> html.Div:
    return html.Div(
        [
            dcc.Store(id=ID.WINDOW_REQUEST),
            dcc.Store(id=ID.WINDOW),
            html.Div(
                [
                    html.Label("long inputs: queries ", htmlFor=ID.WINDOW_RANGE),
                    dcc.Input(id=ID.WINDOW_RANGE, type="text", value=DEFAULT_RANGE, debounce=True,
                              style={"width": "80px", "margin": "0 8px"}),
                    html.Button("windowed pattern", id=ID.WINDOW_RUN, n_clicks=0, style={"marginRight": "6px"}),
                    html.Button("Cancel", id=ID.WINDOW_CANCEL, n_clicks=0, disabled=True),
                    html.Span("(the selected layer's full rows for those queries)", style={"color": "#777",
                                                                                         "marginLeft": "6px"}),
                ],
                style={**ROW, "alignItems": "center", "marginTop": "8px"},
            ),
            html.Div(id=ID.WINDOW_PROGRESS, style=PROGRESS),
            html.Div(id=ID.WINDOW_MESSAGE, style=MESSAGE),
            dcc.Graph(id=ID.WINDOW_GRAPH, figure=figures.message_figure("no window yet"),
                      config=figures.graph_config(figures.message_figure("")), style={"display": "block"}),
        ]
    )


def register_callbacks(app: Dash, workbench: Workbench, windows: WindowStore) -> None:
    @app.callback(Output(ID.WINDOW, "data"), Output(ID.WINDOW_REQUEST, "data"), Output(ID.WINDOW_MESSAGE, "children"),
                  Input(ID.WINDOW_RUN, "n_clicks"), State(ID.SESSION, "data"), State(ID.EDIT_SESSION, "data"),
                  State(ID.WINDOW_RANGE, "value"), State(ID.LAYER, "value"), prevent_initial_call=True)
    def _submit(_, source, edit_session, text, layer):
        return submit_window(workbench, windows, source, edit_session, text, layer)

    @app.callback(Output(ID.WINDOW, "data", allow_duplicate=True),
                  Output(ID.WINDOW_MESSAGE, "children", allow_duplicate=True), Input(ID.WINDOW_REQUEST, "data"),
                  **job_options(workbench, ID.WINDOW_RUN, ID.WINDOW_CANCEL, ID.WINDOW_PROGRESS))
    def _job(set_progress, request):
        workbench.enter_job()
        return window_job(workbench, windows, request, set_progress)

    @app.callback(Output(ID.WINDOW_GRAPH, "figure"), Output(ID.WINDOW_GRAPH, "config"),
                  Input(ID.WINDOW, "data"), Input(ID.HEAD, "value"), Input(ID.SCALE, "value"),
                  Input(ID.HIDE_FIRST, "value"), State(ID.SESSION, "data"))
    def _view(window, head, scale, hide_first, source):
        if not window and ctx.triggered_id != ID.WINDOW:
            raise PreventUpdate  # no window yet: the placeholder stays, nothing to redraw
        return window_view(workbench, windows, window, source, head, scale, hide_first)

    show_cancelled(app, ID.WINDOW_CANCEL, ID.WINDOW_MESSAGE)
