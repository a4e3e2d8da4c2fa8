"""The token strip under the head's figure: click tokens to pick a query and a key; shading.

Context:
    Each token is a span with ``data-index``; one page-wide listener (``assets/token_strip.js``)
    writes a click to the :data:`ID.TOKEN_PICK` store (spans with pattern-matching ids cost the
    page about 0.13 s per head click: Dash re-registers each on every redraw of the strip).
    A click sets the key (or, with "clicks set: query", the query) of the session's
    :data:`ID.QK` store (``{"query": -1, "key": None}`` by default: the last token as query) and
    switches the heatmap to the "attention query → key" metric, which shows, per head, the
    attention between the two tokens (:func:`.head_metrics.conditioned_grid`).

    The strip's shading (:data:`SHADINGS`): attention *received* per token (the default), or the
    selected head's attention *from* a token (its row: where it looks) or *to* a token (its
    column: who looks at it). The token is the one under the mouse in the head's figure (its
    hover: query row for "from", key column for "to"), else the selected query / key.

    Hovering the strip itself shades it in the browser, with no server round trip: on a head,
    shading or prompt change the server fills the :data:`ID.STRIP_HOVER` store with the head's
    rows ("from") or columns ("to") (:func:`hover_values`, prompts up to :data:`HOVER_TOKENS`
    tokens); a clientside callback hands them to ``assets/token_strip.js``, whose page-wide
    mouse listener colours the spans from them and puts the server's colours back when the mouse
    leaves the strip.
"""

from __future__ import annotations

import torch
from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from apps.heads_dashboard import figures
from apps.heads_dashboard.head_metrics import hover_shading, resolve_position
from apps.heads_dashboard.ids import ID, ROW
from apps.heads_dashboard.workbench import View, check_head
from probe.errors import InputError

QK_METRIC = "attention_qk"
DEFAULT_QK = {"query": -1, "key": None}
SHADINGS = {"received": "attention received", "from": "attention from a token", "to": "attention to a token"}
QUERY_OUTLINE, KEY_OUTLINE = "2px solid #e07b00", "2px solid #2a9d2a"
HOVER_TOKENS = 128
"""Prompts up to this many tokens (the in-server capture limit's default) carry the selected head's
pattern in the page for hover shading on the strip (128 x 128 values, about 0.1 MB of JSON)."""


def hovered_position(hover: dict | None, axis: str, hide_first: bool) -> int | None:
    """The query (``axis="y"``) or key (``"x"``) under the mouse in the head's figure, if any."""
    if not hover or not hover.get("points"):
        return None
    value = hover["points"][0].get(axis)
    if not isinstance(value, (int, float)):
        return None
    return int(value) + (1 if hide_first else 0)


def shading(view: View, layer: int, head: int, shade: str, qk: dict, hovered: dict) -> list[tuple[str, str, float]]:
    """``(token, colour, value)`` per token for the strip (:data:`SHADINGS`)."""
    if shade == "received" or not view.record.patterns:
        received, _ = figures.head_summary(view.record, view.prompt, layer, head)
        return figures.token_colours(view.tokens, received)
    if shade == "from":
        token = hovered["query"] if hovered["query"] is not None else qk.get("query", -1)
    else:
        token = hovered["key"] if hovered["key"] is not None else (qk.get("key") if qk.get("key") is not None else -1)
    return hover_shading(view.record, view.prompt, layer, head, int(token), shade)


def hover_values(view: View, layer: int, head: int, shade: str) -> dict | None:
    """What hovering token ``t`` of the strip shades it with, for the browser (:data:`ID.STRIP_HOVER`).

    ``{"shade": shade, "values": values}`` where ``values[t]`` is the head's attention from token
    ``t`` (its row; keys after it ``None``) for ``"from"``, or to token ``t`` (its column; queries
    before it ``None``) for ``"to"``, rounded to 4 decimals. None (no hover shading) for
    "received", a statistics-only record or a prompt over :data:`HOVER_TOKENS` tokens."""
    if shade not in ("from", "to") or not view.record.patterns or len(view.tokens) > HOVER_TOKENS:
        return None
    pattern = view.record.pattern(layer, view.prompt)[head].float()
    per_token = pattern if shade == "from" else pattern.T  # [t, other]: row t, or column t
    seen = torch.ones_like(per_token, dtype=torch.bool)
    seen = seen.tril() if shade == "from" else seen.triu()  # from t: keys <= t; to t: queries >= t
    values = [[round(v, 4) if ok else None for v, ok in zip(row, mask)]
              for row, mask in zip(per_token.tolist(), seen.tolist())]
    return {"shade": shade, "values": values}


def hover_view(cached_view, source, layer, head, shade) -> dict | None:
    """The :data:`ID.STRIP_HOVER` store for the session's capture (None when there is nothing to shade)."""
    view, _ = cached_view(source)
    if view is None:
        return None
    try:
        layer, head = check_head(view, layer, head)
    except InputError:  # the head panel reports a bad head
        return None
    return hover_values(view, layer, head, shade or "received")


def selected_positions(qk: dict, n_tokens: int) -> tuple[int | None, int | None]:
    """The strip's outlined query and key (None where unset or outside this prompt)."""
    chosen = []
    for name in ("query", "key"):
        value = qk.get(name)
        chosen.append(value % n_tokens if isinstance(value, int) and -n_tokens <= value < n_tokens else None)
    return chosen[0], chosen[1]


def token_strip(coloured: list[tuple[str, str, float]], query: int | None, key: int | None) -> list[html.Span]:
    """Clickable spans: colour by value, the value on hover, query and key outlined."""
    spans = []
    for i, (token, colour, value) in enumerate(coloured):
        outline = QUERY_OUTLINE if i == query else KEY_OUTLINE if i == key else "none"
        spans.append(html.Span(
            token, **{"data-index": i}, title=f"{i}: {value:.3f}",
            style={"background": colour, "padding": "1px 2px", "margin": "1px", "display": "inline-block",
                   "whiteSpace": "pre", "borderRadius": "3px", "cursor": "pointer", "outline": outline}))
    return spans


def qk_line(qk: dict, tokens: list[str]) -> str:
    """``query 'to' (13) → key ' Mary' (2)``, or how to choose a key."""
    n = len(tokens)
    query, key = qk.get("query", -1), qk.get("key")
    try:
        q = resolve_position(query, n, "query")
    except InputError:  # a position from another prompt
        return f"query {query} is outside this prompt; click a token"
    head = f"query {figures.display_token(tokens[q])!r} ({q})"
    if key is None:
        return head + " → click a key token in the strip for the 'attention query → key' metric"
    if not -n <= key < n:
        return head + f" → key {key} is outside this prompt; click a token"
    k = key % n
    return head + f" → key {figures.display_token(tokens[k])!r} ({k})"


def clicked(qk: dict | None, index: int, mode: str | None) -> dict:
    """The QK store after clicking token ``index`` with the strip in ``mode`` (``key`` or ``query``)."""
    qk = dict(qk or DEFAULT_QK)
    qk["query" if mode == "query" else "key"] = int(index)
    return qk


def controls() -> html.Div:
    radio = {"inline": True, "inputStyle": {"marginRight": "3px"}, "labelStyle": {"marginRight": "10px"}}
    return html.Div(
        [
            dcc.Store(id=ID.QK, data=DEFAULT_QK),
            dcc.Store(id=ID.TOKEN_PICK),
            dcc.Store(id=ID.STRIP_HOVER),
            html.Span("clicks set: ", style={"color": "#555"}),
            dcc.RadioItems(id=ID.TOKEN_CLICK, value="key", options=[{"label": "key", "value": "key"},
                                                                  {"label": "query", "value": "query"}], **radio),
            html.Span("│ shade by: ", style={"color": "#555", "margin": "0 4px"}),
            dcc.RadioItems(id=ID.SHADE, value="received", options=[{"label": v, "value": k} for k, v in SHADINGS.items()],
                           **radio),
        ],
        style={**ROW, "alignItems": "center", "marginTop": "6px"},
    )


def register_callbacks(app: Dash, cached_view) -> None:
    """Wire the strip; ``cached_view(source) -> (View | None, why)`` reads the session's capture."""

    @app.callback(Output(ID.QK, "data"), Output(ID.METRIC, "value", allow_duplicate=True),
                  Input(ID.TOKEN_PICK, "data"), State(ID.TOKEN_CLICK, "value"), State(ID.QK, "data"),
                  prevent_initial_call=True)
    def _click(pick, mode, qk):
        if not pick or not isinstance(pick.get("index"), int):
            raise PreventUpdate
        return clicked(qk, pick["index"], mode), QK_METRIC

    @app.callback(Output(ID.HEAD_TOKENS, "children"), Output(ID.QK_INFO, "children"),
                  Input(ID.SESSION, "data"), Input(ID.LAYER, "value"), Input(ID.HEAD, "value"),
                  Input(ID.SHADE, "value"), Input(ID.QK, "data"), Input(ID.HEAD_GRAPH, "hoverData"),
                  Input(ID.MODEL_READY, "data"), State(ID.HIDE_FIRST, "value"))
    def _strip(source, layer, head, shade, qk, hover, _ready, hide_first):
        return strip_view(cached_view, source, layer, head, shade, qk, hover, bool(hide_first))

    @app.callback(Output(ID.STRIP_HOVER, "data"), Input(ID.SESSION, "data"), Input(ID.LAYER, "value"),
                  Input(ID.HEAD, "value"), Input(ID.SHADE, "value"), Input(ID.MODEL_READY, "data"))
    def _hover_values(source, layer, head, shade, _ready):
        return hover_view(cached_view, source, layer, head, shade)

    # hands the store to assets/token_strip.js (no output: the listener keeps it)
    app.clientside_callback(ClientsideFunction("headscope", "keep_strip_hover"), Input(ID.STRIP_HOVER, "data"))


def strip_view(cached_view, source, layer, head, shade, qk, hover, hide_first: bool):
    """(strip spans, query/key line); empty while there is no capture or no valid head."""
    view, _ = cached_view(source)
    if view is None:
        return "", ""
    qk = qk or DEFAULT_QK
    try:
        layer, head = check_head(view, layer, head)
        hovered = {"query": hovered_position(hover, "y", hide_first), "key": hovered_position(hover, "x", hide_first)}
        coloured = shading(view, layer, head, shade or "received", qk, hovered)
    except Exception as err:  # noqa: BLE001 - the head panel shows head errors; the strip says its own
        return html.Span(str(err), style={"color": "#b00020"}), qk_line(qk, view.tokens)
    query, key = selected_positions(qk, len(view.tokens))
    return token_strip(coloured, query, key), qk_line(qk, view.tokens)
