"""The page state in the URL: restored once when the page loads, rewritten when it changes.

Context:
    :class:`.url_state.PageState` (prompt or record prompt, metric, head, edits, target/foil,
    query/key, view, scale, hide-first, shading, query window, bundled data set) travels in
    ``location.search`` (a ``dcc.Location``).
    On load, :func:`restore` sets every widget from it and submits its prompt (as Run does: a
    cached capture shows at once, a short one is captured in the server, a long one queues a
    job); the edits panel then submits the restored edits by itself, and the data-set panel opens
    a restored example set (press "capture the set": a cached capture shows at once). After that,
    :func:`page_search` rewrites the query string whenever a part of the state changes
    (``history.pushState``: no reload). The :data:`ID.URL_RESTORED` flag keeps the two apart:
    nothing is written before the restore, and later URL changes are not restored again. A bad
    link gets one line in the prompt panel and the page's defaults.
"""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, no_update
from dash.exceptions import PreventUpdate

from apps.heads_dashboard.callback_tools import user_message
from apps.heads_dashboard.ids import ID
from apps.heads_dashboard.settings import EditSettings
from apps.heads_dashboard.url_state import PageState, decode, encode
from apps.heads_dashboard.views.tokens import DEFAULT_QK
from apps.heads_dashboard.views.window import DEFAULT_RANGE, RANGE
from apps.heads_dashboard.workbench import Source

RESTORED_FIELDS = (
    (ID.PROMPT, "value"), (ID.METRIC, "value"), (ID.LAYER, "value"), (ID.HEAD, "value"), (ID.EDIT_ACT, "value"),
    (ID.EDIT_ACT_HEADS, "value"), (ID.EDIT_HEADS, "value"), (ID.EDIT_FACTOR, "value"), (ID.TARGET, "value"),
    (ID.FOIL, "value"), (ID.VIEW, "value"), (ID.SCALE, "value"), (ID.HIDE_FIRST, "value"), (ID.QK, "data"),
    (ID.SHADE, "value"), (ID.WINDOW_RANGE, "value"), (ID.DATASET_CHOICE, "data"),
)
"""The widgets :func:`restore` sets, in its output order (then session, request, message, flag)."""


def _heads(heads) -> str:
    return ", ".join(f"{layer}.{head}" for layer, head in heads)


def widget_values(state: PageState) -> list:
    """The values of :data:`RESTORED_FIELDS` for ``state``."""
    qk = {"query": state.query if state.query is not None else -1, "key": state.key}
    return [state.prompt or "", state.metric, state.layer if state.layer is not None else 0,
            state.head if state.head is not None else 0, ["act"] if state.act else [], _heads(state.act_heads),
            _heads(state.heads), f"{state.factor:g}", state.target or "", state.foil or "", state.view, state.scale,
            ["hide"] if state.hide_first else [], qk, state.shade, state.window,
            {"example": state.dataset} if state.dataset else None]


def restore(submit, search: str | None, restored: bool):
    """Outputs of the restore callback: widgets, then (session, capture request, prompt message, flag).

    ``submit(trigger, prompt, record_prompt)`` is the prompt panel's submit (:func:`.callbacks.submit_prompt`)."""
    if restored:
        raise PreventUpdate
    keep = [no_update] * len(RESTORED_FIELDS)
    try:
        state = decode(search)
    except Exception as err:  # noqa: BLE001 - a bad link: one line, the page's defaults
        return (*keep, no_update, no_update, f"the link's page state was not restored: {user_message('restore', err)}",
                True)
    if state == PageState():
        return (*keep, no_update, no_update, no_update, True)
    if state.record is not None:
        session, request, message = Source(record_prompt=state.record).to_store(), no_update, ""
    elif state.prompt:
        session, request, message = submit(ID.RUN, state.prompt, None)
    else:
        session, request, message = no_update, no_update, no_update
    return (*widget_values(state), session, request, message, True)


def page_state(source, metric, layer, head, act, act_heads, heads, factor, target, foil, view, scale, hide_first,
               qk, shade=None, window=None, dataset=None) -> PageState:
    """The :class:`PageState` of the widgets' values (unparseable edit boxes are left out: the
    edits panel reports them; so is a window range that does not parse, and an uploaded data set).
    ``dataset`` is the data-set panel's opened file (or a restored choice): ``{"example": name}``."""
    src = Source.from_store(source)
    try:
        edits = EditSettings.from_ui(act, heads, factor, act_heads)
    except Exception:  # noqa: BLE001 - shown by the edits panel, not part of the link
        edits = EditSettings(act=bool(act))
    qk = qk or DEFAULT_QK
    query = qk.get("query")
    return PageState(
        prompt=src.prompt or None, record=src.record_prompt, metric=metric or PageState.metric,
        layer=_whole(layer), head=_whole(head), act=edits.act, act_heads=tuple(edits.act_heads) if edits.act else (),
        heads=tuple(edits.scaled_heads), factor=edits.factor if edits.scaled_heads else 0.0,
        target=target or None, foil=foil or None, query=None if query in (None, -1) else query, key=qk.get("key"),
        view=view or "pattern", scale=scale or "linear", hide_first=bool(hide_first), shade=shade or "received",
        window=window if isinstance(window, str) and RANGE.match(window) else DEFAULT_RANGE,
        dataset=(dataset or {}).get("example") or None)


def _whole(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value >= 0 else None


def page_search(restored: bool, *values) -> str:
    """The query string of the widgets' values (nothing is written before the restore)."""
    if not restored:
        raise PreventUpdate
    return encode(page_state(*values))


def location() -> list:
    return [dcc.Location(id=ID.URL, refresh=False), dcc.Store(id=ID.URL_RESTORED, data=False)]


def register_callbacks(app: Dash, submit) -> None:
    """``submit(trigger, prompt, record_prompt)``: the prompt panel's submit, bound to the workbench."""

    @app.callback(*[Output(i, p, allow_duplicate=True) for i, p in RESTORED_FIELDS],
                  Output(ID.SESSION, "data", allow_duplicate=True),
                  Output(ID.CAPTURE_REQUEST, "data", allow_duplicate=True),
                  Output(ID.PROMPT_MESSAGE, "children", allow_duplicate=True), Output(ID.URL_RESTORED, "data"),
                  Input(ID.URL, "search"), Input(ID.MODEL_READY, "data"), State(ID.URL_RESTORED, "data"),
                  prevent_initial_call="initial_duplicate")
    def _restore(search, ready, restored):
        if not ready and decode_needs_model(search):
            raise PreventUpdate  # the prompt is submitted once the model is loaded
        return restore(submit, search, bool(restored))

    @app.callback(Output(ID.URL, "search"), Input(ID.URL_RESTORED, "data"), Input(ID.SESSION, "data"),
                  Input(ID.METRIC, "value"), Input(ID.LAYER, "value"), Input(ID.HEAD, "value"),
                  Input(ID.EDIT_ACT, "value"), Input(ID.EDIT_ACT_HEADS, "value"), Input(ID.EDIT_HEADS, "value"),
                  Input(ID.EDIT_FACTOR, "value"), Input(ID.TARGET, "value"), Input(ID.FOIL, "value"),
                  Input(ID.VIEW, "value"), Input(ID.SCALE, "value"), Input(ID.HIDE_FIRST, "value"),
                  Input(ID.QK, "data"), Input(ID.SHADE, "value"), Input(ID.WINDOW_RANGE, "value"),
                  Input(ID.DATASET_FILE, "data"), prevent_initial_call=True)
    def _write(restored, *values):
        return page_search(bool(restored), *values)


def decode_needs_model(search: str | None) -> bool:
    """Whether the link holds a typed prompt (submitting it needs the model loaded)."""
    try:
        return bool(decode(search).prompt)
    except Exception:  # noqa: BLE001 - a bad link is reported without the model
        return False
