"""Dash callbacks: read the session's choices from the browser, check them, queue work, build figures.

Every callback is a thin shell around a module-level function that takes the
:class:`~.workbench.Workbench` and plain values, so the logic can be called without a server.

The flow for a prompt (and the same for edits):

1. ``submit_prompt`` (an ordinary callback, in the server) checks the request: empty, too many
   tokens, model not loaded. A bad request is answered at once with one message in the
   prompt panel and queues nothing. A request whose capture is cached (memory or the record
   store) is committed at once (the fast path: no job). Otherwise it writes a capture request
   with a fresh id, clearing the panel's message.
2. ``capture_job`` is a Dash background callback (``background=True``): it runs in a process
   forked for it (:mod:`.jobs`), reports progress per layer, can be cancelled, writes the
   capture to the record store and commits the session's source.
3. ``grid_view`` and ``head_view`` are ordinary callbacks that only read cached captures.

Errors a user can fix (:class:`~probe.InputError`, :class:`~.state.ModelNotReady`) are shown
once per panel: prompt problems in the prompt panel, head problems in the head panel, edit
problems in the edits panel; figures carry only short placeholders. Anything else is logged and
shown as an internal error, and the server keeps serving.
"""

from __future__ import annotations

import base64
import binascii

from dash import Dash, Input, Output, Patch, State, ctx, no_update
from dash.exceptions import PreventUpdate

from probe.capture.inputs import InputError

from apps.heads_dashboard import figures
from apps.heads_dashboard.figures_grid import signed_head_grid_figure
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.metrics import get_metric, metric_grid
from apps.heads_dashboard.settings import ACT_DEFAULT, EditSettings, act_search_heads
from apps.heads_dashboard.views.display import Display, Shown, display_figure
from apps.heads_dashboard.views.grid_metrics import GRID_METRICS, session_grid
from apps.heads_dashboard.views.scores import session_edits
from apps.heads_dashboard.workbench import NotCaptured, Source, Workbench, check_head

from apps.heads_dashboard.callback_tools import (
    BIG_MOVE, BIG_RATIO, CANCELLED, USER_ERRORS, internal_error, job_options, new_request, show_cancelled,
    user_message)

_job_options = job_options


def model_status(workbench: Workbench) -> tuple[str, bool, bool]:
    """(status line, stop polling?, model ready?)."""
    if workbench.holder is None:
        return "no model: showing the saved record only", True, False
    status = workbench.holder.status
    return status.message, status.state != "loading", status.state == "ready"


# --- the prompt ------------------------------------------------------------------------------


def submit_prompt(workbench: Workbench, trigger: str | None, prompt: str | None, record_prompt: int | None):
    """(session source or no_update, capture request or no_update, prompt message) for Run or a record pick."""
    if trigger == ID.RECORD_PROMPT:
        if record_prompt is None:
            raise PreventUpdate
        return Source(record_prompt=int(record_prompt)).to_store(), no_update, ""
    source = Source(prompt=prompt or "")
    try:
        plan = workbench.plan(source)
    except Exception as err:  # noqa: BLE001 - shown in the prompt panel
        return no_update, no_update, user_message("submit_prompt", err)
    if workbench.is_cached(plan):
        return source.to_store(), no_update, ""
    if workbench.runs_here(plan):
        return _here(workbench, plan, "submit_prompt", lambda: (source.to_store(), no_update, ""))
    return no_update, new_request(prompt=plan.prompt), ""


def _here(workbench: Workbench, plan, where: str, done):
    """Capture a short plan in the server (:meth:`Workbench.compute_here`); ``done()`` on success,
    else the error in the panel's message (the last output)."""
    try:
        workbench.compute_here(plan)
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return None if where == "submit_edits" else no_update, no_update, user_message(where, err)
    return done()


def capture_job(workbench: Workbench, request: dict | None, progress=None):
    """(session source, prompt message): capture the requested prompt (runs in a background job)."""
    if not request:
        raise PreventUpdate
    source = Source(prompt=request["prompt"])
    try:
        workbench.compute(workbench.plan(source), progress)
    except Exception as err:  # noqa: BLE001 - shown in the prompt panel
        return no_update, user_message("capture_job", err)
    return source.to_store(), ""


def _cached(workbench: Workbench, source: dict | None, edits: EditSettings = EditSettings()):
    """The view of ``source``, or a placeholder line saying why there is none."""
    source = Source.from_store(source)
    if source.is_empty:
        return None, "type a prompt and press Run"
    try:
        return workbench.cached_view(source, edits), ""
    except NotCaptured as err:
        return None, str(err)
    except USER_ERRORS as err:
        return None, str(err)  # the prompt panel says it too, when the user acts


def cached_or_why(workbench: Workbench, source: dict | None):
    """(view or None, why not): the session's capture for the feature views."""
    return _cached(workbench, source)


def grid_view(workbench: Workbench, source: dict | None, metric: str, layer, head, qk: dict | None = None,
              scores: dict | None = None):
    """(heatmap, its graph config, info line) for the session's source and chosen metric: a registered
    metric, or a session metric (:data:`.views.grid_metrics.GRID_METRICS`: attention query → key from
    the clicked tokens, the target/foil head scores) whose problems the placeholder says."""
    try:
        view, why = _cached(workbench, source)
        if view is None:
            fig, info = figures.message_figure(why), ""
        else:
            try:
                selected = check_head(view, layer, head)
            except InputError:
                selected = None
            fig = _grid_figure(view, Source.from_store(source).prompt, metric, selected, qk, scores)
            kind = "summary views (long input)" if view.is_summary else "full patterns"
            info = f"{len(view.tokens)} tokens · {kind} · {view.record.model}"
    except Exception as err:  # noqa: BLE001 - the UI boundary
        fig, info = figures.message_figure(internal_error("grid_view", err)), ""
    return fig, figures.graph_config(fig), info


def grid_selection(workbench: Workbench, source: dict | None, layer, head) -> Patch:
    """The heatmap's change when only the selected head moves: its red frame (a ``Patch``, so the
    browser restyles the drawn heatmap instead of receiving and drawing a new one)."""
    patch = Patch()
    view, _ = _cached(workbench, source)
    try:
        selected = check_head(view, layer, head) if view is not None else None
    except InputError:
        selected = None
    patch["layout"]["shapes"] = [figures.selection_frame(*selected)] if selected is not None else []
    return patch


def _grid_figure(view, prompt, metric, selected, qk, scores):
    if metric in GRID_METRICS:
        try:
            grid = session_grid(metric, view, prompt, qk, scores)
        except InputError as err:
            return figures.message_figure(str(err))
        draw = signed_head_grid_figure if grid.signed else figures.head_grid_figure
        return draw(grid.values, view.record.layers, grid.label, selected=selected)
    chosen = get_metric(metric)
    values = metric_grid(view.record, chosen.name, view.prompt)
    return figures.head_grid_figure(values, view.record.layers, chosen.label, colorscale=chosen.colorscale,
                                    selected=selected)


def head_view(workbench: Workbench, source: dict | None, layer, head, display: Display = Display(),
              edit_session: dict | None = None):
    """(head figure, its graph config, head message) for the selected head drawn as ``display`` says
    (:mod:`.views.display`; the diff view compares with the session's committed edits)."""
    message = ""
    try:
        view, why = _cached(workbench, source)
        if view is None:
            fig = figures.message_figure("no prompt yet" if why.startswith("type a prompt") else why)
        else:
            try:
                layer, head = check_head(view, layer, head)
            except InputError as err:
                fig, message = figures.message_figure("no head selected"), str(err)
            else:
                fig, message = _display(workbench, view, layer, head, display, source, edit_session)
    except Exception as err:  # noqa: BLE001 - the UI boundary
        message = internal_error("head_view", err)
        fig = figures.message_figure("internal error")
    return fig, figures.graph_config(fig), message


def _display(workbench: Workbench, view, layer: int, head: int, display: Display, source, edit_session):
    """(figure, message) of the selected head; a view that cannot be drawn says why in the message."""
    after = _edited(workbench, source, edit_session) if display.view == "diff" else None
    try:
        return display_figure(Shown(view.record, view.prompt, layer, head, display, after)), ""
    except InputError as err:
        return figures.message_figure(f"no {display.view} view"), str(err)


def _edited(workbench: Workbench, source: dict | None, edit_session: dict | None):
    """The committed edited capture of ``source``, or None (no edit, pending, or another source)."""
    edits = session_edits(edit_session, source)
    if edits.is_empty:
        return None
    try:
        return workbench.cached_view(Source.from_store(source), edits).record
    except NotCaptured:
        return None


# --- edits -----------------------------------------------------------------------------------


def submit_edits(workbench: Workbench, source: dict | None, act, heads_text, factor, act_heads_text):
    """(edit session, edit request or no_update, edit message) for the edits panel's widgets.

    The edit session is ``None`` (no edit), ``{"pending": label}`` while a job computes, or
    ``{"source": ..., "edits": ...}`` when both captures are cached."""
    try:
        edits = EditSettings.from_ui(act, heads_text, factor, act_heads_text)
        if edits.is_empty:
            return None, no_update, ""
        source = Source.from_store(source)
        if source.is_empty:
            return None, no_update, "run a prompt first: edits compare the model on it before and after"
        plan = workbench.plan(source, edits)
    except Exception as err:  # noqa: BLE001 - shown in the edits panel
        return None, no_update, user_message("submit_edits", err)
    session = {"source": source.to_store(), "edits": edits.to_store()}
    if workbench.is_cached(plan):
        return session, no_update, ""
    if workbench.runs_here(plan):
        return _here(workbench, plan, "submit_edits", lambda: (session, no_update, ""))
    return {"pending": edits.describe()}, new_request(**session), ""


def edit_job(workbench: Workbench, request: dict | None, progress=None):
    """(edit session, edit message): capture before and after the edits (runs in a background job)."""
    if not request:
        raise PreventUpdate
    try:
        edits = EditSettings.from_store(request["edits"])
        workbench.compute(workbench.plan(Source.from_store(request["source"]), edits), progress)
    except Exception as err:  # noqa: BLE001 - shown in the edits panel
        return None, user_message("edit_job", err)
    return {"source": request["source"], "edits": request["edits"]}, ""


def edit_view(workbench: Workbench, session: dict | None, layer, head):
    """(next-token bars, config, before/after figure, config, warning) for the committed edits."""
    warning = ""
    try:
        if not session:
            next_fig = compare = figures.message_figure("choose an edit")
        elif "pending" in session:
            next_fig = compare = figures.message_figure(f"computing {session['pending']}…")
        else:
            edits = EditSettings.from_store(session["edits"])
            before, why = _cached(workbench, session["source"])
            after, why_after = _cached(workbench, session["source"], edits)
            if before is None or after is None:
                next_fig = compare = figures.message_figure(why or why_after)
            else:
                label = edits.describe()
                nexts = workbench.next_tokens(before, after)
                next_fig = figures.next_token_figure(nexts.tokens, nexts.before, nexts.after, label)
                warning = big_move_warning(nexts.tokens[0], nexts.before[0], nexts.after[0], edits)
                try:
                    layer, head = check_head(before, layer, head)
                except InputError:
                    compare = figures.message_figure("pick a head above to compare its pattern")
                else:
                    compare = figures.comparison_figure(before.record, after.record, before.prompt, layer, head, label)
    except Exception as err:  # noqa: BLE001 - the UI boundary
        next_fig = compare = figures.message_figure("internal error")
        warning = internal_error("edit_view", err)
    return next_fig, figures.graph_config(next_fig), compare, figures.graph_config(compare), warning


def big_move_warning(token: str, before: float, after: float, edits: EditSettings) -> str:
    """A warning when the edit moves the unedited model's top token a lot; "" otherwise."""
    if abs(after - before) <= BIG_MOVE and after * BIG_RATIO >= before:
        return ""
    line = f"the edit moves the top token {token!r} from p = {before:.3g} to {after:.3g}"
    if edits.act and not edits.act_heads:
        line += (f"; ACT here calibrates {ACT_DEFAULT}: for a milder edit give it the heads "
                 "`headscope act search` kept")
    return line


def act_file_heads(contents: str | None, filename: str | None):
    """(ACT heads text, edit message) from an uploaded ``act search`` result."""
    if not contents:
        raise PreventUpdate
    name = filename or "the file"
    try:
        text = base64.b64decode(contents.partition(",")[2], validate=True).decode("utf-8")
        heads = act_search_heads(text, name)
    except (binascii.Error, UnicodeDecodeError):
        return no_update, f"{name} is not a text file: load the JSON-lines file `headscope act search --out FILE` wrote"
    except InputError as err:
        return no_update, str(err)
    return ", ".join(f"{layer}.{head}" for layer, head in heads), ""


CLICK_TO_HEAD = """function(click) {
    if (!click || !click.points || !click.points.length) { throw window.dash_clientside.PreventUpdate; }
    const point = click.points[0];
    return [Math.round(point.y), Math.round(point.x)];
}"""
""":func:`head_from_click` as a clientside callback (the heatmap's click, in the browser)."""


def head_from_click(click: dict | None) -> tuple[int, int]:
    """(layer, head) of a heatmap click (x is the head, y the layer)."""
    if not click or not click.get("points"):
        raise PreventUpdate
    point = click["points"][0]
    return int(point["y"]), int(point["x"])


# --- wiring ----------------------------------------------------------------------------------


def register_callbacks(app: Dash, workbench: Workbench) -> None:
    """Wire the layout's components to the functions above (``app`` has a background callback manager)."""

    @app.callback(Output(ID.MODEL_STATUS, "children"), Output(ID.MODEL_POLL, "disabled"), Output(ID.MODEL_READY, "data"),
                  Input(ID.MODEL_POLL, "n_intervals"))
    def _poll(_):
        return model_status(workbench)

    @app.callback(Output(ID.PROMPT, "value"), Input(ID.EXAMPLES, "value"), prevent_initial_call=True)
    def _example(value):
        if not value:
            raise PreventUpdate
        return value

    @app.callback(Output(ID.SESSION, "data"), Output(ID.CAPTURE_REQUEST, "data"), Output(ID.PROMPT_MESSAGE, "children"),
                  Input(ID.RUN, "n_clicks"), Input(ID.RECORD_PROMPT, "value"), State(ID.PROMPT, "value"),
                  prevent_initial_call=True)
    def _submit(_, record_prompt, prompt):
        return submit_prompt(workbench, ctx.triggered_id, prompt, record_prompt)

    @app.callback(Output(ID.SESSION, "data", allow_duplicate=True), Output(ID.PROMPT_MESSAGE, "children", allow_duplicate=True),
                  Input(ID.CAPTURE_REQUEST, "data"), **_job_options(workbench, ID.RUN, ID.CANCEL, ID.PROGRESS))
    def _capture(set_progress, request):
        workbench.enter_job()
        return capture_job(workbench, request, set_progress)

    @app.callback(Output(ID.GRID, "figure"), Output(ID.GRID, "config"), Output(ID.PROMPT_INFO, "children"),
                  Input(ID.SESSION, "data"), Input(ID.METRIC, "value"), Input(ID.MODEL_READY, "data"),
                  Input(ID.LAYER, "value"), Input(ID.HEAD, "value"), Input(ID.QK, "data"), Input(ID.SCORES, "data"))
    def _grid(source, metric, _ready, layer, head, qk, scores):
        if ctx.triggered_id in (ID.LAYER, ID.HEAD) and len(ctx.triggered) == 1:
            return grid_selection(workbench, source, layer, head), no_update, no_update
        return grid_view(workbench, source, metric, layer, head, qk, scores)

    # head_from_click in the browser: a head click reaches the views without a server round trip first
    app.clientside_callback(CLICK_TO_HEAD, Output(ID.LAYER, "value"), Output(ID.HEAD, "value"),
                            Input(ID.GRID, "clickData"), prevent_initial_call=True)

    @app.callback(Output(ID.HEAD_GRAPH, "figure"), Output(ID.HEAD_GRAPH, "config"), Output(ID.HEAD_MESSAGE, "children"),
                  Input(ID.SESSION, "data"), Input(ID.LAYER, "value"), Input(ID.HEAD, "value"), Input(ID.MODEL_READY, "data"),
                  Input(ID.VIEW, "value"), Input(ID.SCALE, "value"), Input(ID.HIDE_FIRST, "value"),
                  Input(ID.EDIT_SESSION, "data"))
    def _head(source, layer, head, _ready, view, scale, hide_first, edit_session):
        return head_view(workbench, source, layer, head, Display.from_ui(view, scale, hide_first), edit_session)

    @app.callback(Output(ID.EDIT_SESSION, "data"), Output(ID.EDIT_REQUEST, "data"), Output(ID.EDIT_MESSAGE, "children"),
                  Input(ID.EDIT_ACT, "value"), Input(ID.EDIT_APPLY, "n_clicks"), Input(ID.SESSION, "data"),
                  Input(ID.MODEL_READY, "data"), Input(ID.EDIT_ACT_HEADS, "value"),
                  State(ID.EDIT_HEADS, "value"), State(ID.EDIT_FACTOR, "value"))
    def _edits(act, _apply, source, _ready, act_heads_text, heads_text, factor):
        return submit_edits(workbench, source, act, heads_text, factor, act_heads_text)

    @app.callback(Output(ID.EDIT_SESSION, "data", allow_duplicate=True),
                  Output(ID.EDIT_MESSAGE, "children", allow_duplicate=True),
                  Input(ID.EDIT_REQUEST, "data"), **_job_options(workbench, ID.EDIT_APPLY, ID.EDIT_CANCEL, ID.EDIT_PROGRESS))
    def _edit_job(set_progress, request):
        workbench.enter_job()
        return edit_job(workbench, request, set_progress)

    @app.callback(Output(ID.EDIT_NEXT, "figure"), Output(ID.EDIT_NEXT, "config"), Output(ID.EDIT_COMPARE, "figure"),
                  Output(ID.EDIT_COMPARE, "config"), Output(ID.EDIT_WARNING, "children"),
                  Input(ID.EDIT_SESSION, "data"), Input(ID.LAYER, "value"), Input(ID.HEAD, "value"))
    def _edit_view(session, layer, head):
        if not session and ctx.triggered_id in (ID.LAYER, ID.HEAD):
            raise PreventUpdate  # no edit: the placeholder stays, nothing to redraw
        return edit_view(workbench, session, layer, head)

    show_cancelled(app, ID.CANCEL, ID.PROMPT_MESSAGE)

    @app.callback(Output(ID.EDIT_SESSION, "data", allow_duplicate=True),
                  Output(ID.EDIT_MESSAGE, "children", allow_duplicate=True), Input(ID.EDIT_CANCEL, "n_clicks"),
                  prevent_initial_call=True)
    def _edit_cancelled(_):
        return None, CANCELLED

    @app.callback(Output(ID.EDIT_ACT_HEADS, "value"), Output(ID.EDIT_MESSAGE, "children", allow_duplicate=True),
                  Input(ID.EDIT_ACT_FILE, "contents"), State(ID.EDIT_ACT_FILE, "filename"), prevent_initial_call=True)
    def _act_file(contents, filename):
        return act_file_heads(contents, filename)
