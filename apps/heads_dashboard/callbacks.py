"""Dash callbacks: read the session's choices from the browser, ask the workbench, build figures.

Every callback is a thin shell around a module-level function that takes the
:class:`~.workbench.Workbench` and plain values, so the logic can be called without a server.
Errors a user can fix (:class:`~probe.InputError`, :class:`~.state.ModelNotReady`) become a
message next to the panel; anything else is logged and shown as an internal error, and the
server keeps serving either way.
"""

from __future__ import annotations

import functools
import logging

from dash import Dash, Input, Output, State, ctx
from dash.exceptions import PreventUpdate

from probe.capture.inputs import InputError

from apps.heads_dashboard import figures
from apps.heads_dashboard.layout import ID, token_spans
from apps.heads_dashboard.metrics import get_metric, metric_grid
from apps.heads_dashboard.settings import EditSettings
from apps.heads_dashboard.state import ModelNotReady
from apps.heads_dashboard.workbench import Source, Workbench, check_head

log = logging.getLogger(__name__)
USER_ERRORS = (InputError, ModelNotReady)


def shown_errors(n_figures: int, n_blank: int = 0):
    """Turn an exception into ``n_figures`` message figures, ``n_blank`` empty outputs and the message."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as err:
                message = str(err)
            except Exception as err:  # noqa: BLE001 - the UI boundary: report, keep serving
                log.exception("callback %s failed", fn.__name__)
                message = f"internal error ({type(err).__name__}: {err}); details are in the server log"
            return (*[figures.message_figure(message)] * n_figures, *[""] * n_blank, message)

        return wrapper

    return decorate


def model_status(workbench: Workbench) -> tuple[str, bool, bool]:
    """(status line, stop polling?, model ready?)."""
    if workbench.holder is None:
        return "no model: showing the saved record only", True, False
    status = workbench.holder.status
    return status.message, status.state != "loading", status.state == "ready"


def commit_source(trigger: str | None, prompt: str | None, record_prompt: int | None) -> dict:
    """The session's new source after Run (the typed prompt) or a pick in the record list."""
    if trigger == ID.RECORD_PROMPT:
        if record_prompt is None:
            raise PreventUpdate
        return Source(record_prompt=int(record_prompt)).to_store()
    return Source(prompt=prompt or "").to_store()


@shown_errors(n_figures=1, n_blank=1)
def grid_view(workbench: Workbench, source: dict, metric: str, layer, head):
    """(heatmap, info line, message) for the session's source and chosen metric."""
    source = Source.from_store(source)
    if source.is_empty:
        return figures.message_figure("type a prompt and press Run"), "", ""
    view = workbench.view(source)
    chosen = get_metric(metric)
    values = metric_grid(view.record, chosen.name, view.prompt)
    try:
        selected = check_head(view, layer, head)
    except InputError:
        selected = None
    fig = figures.head_grid_figure(values, view.record.layers, chosen.label, colorscale=chosen.colorscale, selected=selected)
    kind = "summary views (long input)" if view.is_summary else "full patterns"
    return fig, f"{len(view.tokens)} tokens · {kind} · {view.record.model}", ""


@shown_errors(n_figures=1, n_blank=1)
def head_view(workbench: Workbench, source: dict, layer, head):
    """(head figure, coloured tokens, message) for the selected head."""
    source = Source.from_store(source)
    if source.is_empty:
        return figures.message_figure("no prompt yet"), "", ""
    view = workbench.view(source)
    layer, head = check_head(view, layer, head)
    fig = figures.head_figure(view.record, view.prompt, layer, head)
    received, _ = figures.head_summary(view.record, view.prompt, layer, head)
    return fig, token_spans(figures.token_colours(view.tokens, received)), ""


@shown_errors(n_figures=2)
def edit_view(workbench: Workbench, source: dict, layer, head, act, heads_text, factor):
    """(next-token bars, before/after figure, message) for the chosen edits."""
    source = Source.from_store(source)
    edits = EditSettings.from_ui(act, heads_text, factor)
    if source.is_empty or edits.is_empty:
        blank = figures.message_figure("choose an edit (ACT calibration or heads to scale)")
        return blank, blank, ""
    before = workbench.view(source)
    after = workbench.view(source, edits)
    label = edits.describe()
    nexts = workbench.next_tokens(before, after)
    next_fig = figures.next_token_figure(nexts.tokens, nexts.before, nexts.after, label)
    layer, head = check_head(before, layer, head)
    return next_fig, figures.comparison_figure(before.record, after.record, before.prompt, layer, head, label), ""


def head_from_click(click: dict | None) -> tuple[int, int]:
    """(layer, head) of a heatmap click (x is the head, y the layer)."""
    if not click or not click.get("points"):
        raise PreventUpdate
    point = click["points"][0]
    return int(point["y"]), int(point["x"])


def register_callbacks(app: Dash, workbench: Workbench) -> None:
    """Wire the layout's components to the functions above."""

    @app.callback(Output(ID.MODEL_STATUS, "children"), Output(ID.MODEL_POLL, "disabled"), Output(ID.MODEL_READY, "data"),
                  Input(ID.MODEL_POLL, "n_intervals"))
    def _poll(_):
        return model_status(workbench)

    @app.callback(Output(ID.PROMPT, "value"), Input(ID.EXAMPLES, "value"), prevent_initial_call=True)
    def _example(value):
        if not value:
            raise PreventUpdate
        return value

    @app.callback(Output(ID.SESSION, "data"), Input(ID.RUN, "n_clicks"), Input(ID.RECORD_PROMPT, "value"),
                  State(ID.PROMPT, "value"), prevent_initial_call=True)
    def _commit(_, record_prompt, prompt):
        return commit_source(ctx.triggered_id, prompt, record_prompt)

    @app.callback(Output(ID.GRID, "figure"), Output(ID.PROMPT_INFO, "children"), Output(ID.PROMPT_MESSAGE, "children"),
                  Input(ID.SESSION, "data"), Input(ID.METRIC, "value"), Input(ID.MODEL_READY, "data"),
                  Input(ID.LAYER, "value"), Input(ID.HEAD, "value"))
    def _grid(source, metric, _ready, layer, head):
        return grid_view(workbench, source, metric, layer, head)

    @app.callback(Output(ID.LAYER, "value"), Output(ID.HEAD, "value"), Input(ID.GRID, "clickData"), prevent_initial_call=True)
    def _click(click):
        return head_from_click(click)

    @app.callback(Output(ID.HEAD_GRAPH, "figure"), Output(ID.HEAD_TOKENS, "children"), Output(ID.HEAD_MESSAGE, "children"),
                  Input(ID.SESSION, "data"), Input(ID.LAYER, "value"), Input(ID.HEAD, "value"), Input(ID.MODEL_READY, "data"))
    def _head(source, layer, head, _ready):
        return head_view(workbench, source, layer, head)

    @app.callback(Output(ID.EDIT_NEXT, "figure"), Output(ID.EDIT_COMPARE, "figure"), Output(ID.EDIT_MESSAGE, "children"),
                  Input(ID.EDIT_ACT, "value"), Input(ID.EDIT_APPLY, "n_clicks"), Input(ID.SESSION, "data"),
                  Input(ID.LAYER, "value"), Input(ID.HEAD, "value"), Input(ID.MODEL_READY, "data"),
                  State(ID.EDIT_HEADS, "value"), State(ID.EDIT_FACTOR, "value"))
    def _edits(act, _apply, source, layer, head, _ready, heads_text, factor):
        return edit_view(workbench, source, layer, head, act, heads_text, factor)

