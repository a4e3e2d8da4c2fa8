"""Data sets: a file of prompts captured as one record, head metrics averaged over its prompts.

Context:
    "open a prompt file" takes a ``.txt`` (one prompt a line) or ``.jsonl`` (``{"prompt": ...}``
    a line; IOI items with ``answer`` and ``subject`` get the roles IO, S1, S2, END) file, read by
    :func:`.dataset_view.read_prompt_set`; "IOI example" opens the repository's 48 IOI prompts
    (``data/ioi.jsonl``). The upload is kept in the server's job folder under a hash of its
    bytes (the browser holds only that hash, never a path).

    "capture the set" runs a background job that captures every prompt in pattern mode as one
    record (kept in the record store like a prompt's capture). The panel's heatmap then shows,
    per head, the attention from a query to a key averaged over the prompts, the positions named
    by role (END → IO) or counted from each prompt's end (-1 → -3), or any registered metric
    averaged over the prompts (:func:`.dataset_view.averaged_attention`, ``averaged_metric``);
    how many prompts were used and skipped is in the title.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from apps.heads_dashboard import figures
from apps.heads_dashboard.callback_tools import internal_error, job_options, new_request, show_cancelled, user_message
from apps.heads_dashboard.dataset_view import (PromptSet, averaged_attention, averaged_metric, read_prompt_set,
                                               role_positions)
from apps.heads_dashboard.ids import ID, MESSAGE, PANEL, PROGRESS, ROW
from apps.heads_dashboard.metrics import registered_metrics
from apps.heads_dashboard.workbench import Workbench
from probe.capture import CaptureConfig, capture
from probe.errors import InputError

EXAMPLE = Path(__file__).resolve().parents[3] / "data" / "ioi.jsonl"
EXAMPLES = {"ioi": EXAMPLE}
"""Bundled prompt sets by the name a link uses (``?dataset=ioi``)."""
FILE_ID = re.compile(r"^[0-9a-f]{32}\.(txt|jsonl)$")
MAX_PROMPTS = 256
ATTENTION = "attention"
FROM_END = [str(-i) for i in range(1, 9)]


class SetFolder:
    """Uploaded prompt files, named by a hash of their bytes (the browser holds only the name)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, data: bytes, suffix: str) -> str:
        name = f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
        (self.folder / name).write_bytes(data)
        return name

    def read(self, name: str | None) -> PromptSet:
        if not name or not FILE_ID.match(name):
            raise InputError("open a prompt file (.txt or .jsonl) first")
        return read_prompt_set(self.folder / name)


def set_key(model: str, prompts: tuple[str, ...]) -> tuple:
    return ("set", model, hashlib.sha256("\x00".join(prompts).encode()).hexdigest())


def positions(prompt_set: PromptSet) -> list[str]:
    """What the query and key menus offer: the set's roles, then positions from the end."""
    return [*prompt_set.role_names, *FROM_END]


def opened(sets: SetFolder, contents: str | None, filename: str | None, example: bool):
    """(file store, info line, position options, query, key, message) after opening a file."""
    try:
        if example:
            if not EXAMPLE.is_file():
                raise InputError(f"the example {EXAMPLE} is missing; generate it with python data/make_ioi.py")
            data, label, suffix = EXAMPLE.read_bytes(), "IOI example (data/ioi.jsonl)", ".jsonl"
        else:
            if not contents:
                raise PreventUpdate
            label = filename or "the file"
            suffix = Path(label).suffix
            if suffix not in (".txt", ".jsonl"):
                raise InputError(f"{label}: open a .txt file (one prompt a line) or a .jsonl file "
                                 "({\"prompt\": ...} a line)")
            try:
                data = base64.b64decode(contents.partition(",")[2], validate=True)
            except binascii.Error:
                raise InputError(f"{label} could not be read; open it again") from None
        name = sets.add(data, suffix)
        prompt_set = sets.read(name)
    except InputError as err:
        return no_update, "", no_update, no_update, no_update, str(err)
    roles = ", ".join(prompt_set.role_names) or "none (positions count from each prompt's end)"
    info = f"{label}: {len(prompt_set.prompts)} prompts; roles: {roles}"
    query, key = ("END", "IO") if {"END", "IO"} <= set(prompt_set.role_names) else ("-1", "-2")
    file = {"name": name, "label": label, "example": "ioi" if example else None}
    return file, info, positions(prompt_set), query, key, ""


def submit_set(workbench: Workbench, sets: SetFolder, file: dict | None):
    """(dataset or no_update, request or no_update, message) for 'capture the set'."""
    try:
        prompt_set = sets.read((file or {}).get("name"))
        if len(prompt_set.prompts) > MAX_PROMPTS:
            raise InputError(f"the set has {len(prompt_set.prompts)} prompts; the page captures at most {MAX_PROMPTS}")
        model = workbench.holder.get() if workbench.holder is not None else None
        if model is None:
            raise InputError("capturing a data set needs a model; this dashboard runs without one")
        longest = max(len(model.tokenizer(p)["input_ids"]) for p in prompt_set.prompts)
        if longest > workbench.settings.long_input_tokens:
            raise InputError(f"a prompt of the set has {longest} tokens; data sets are captured with full patterns, "
                             f"at most {workbench.settings.long_input_tokens} tokens a prompt (--long-input)")
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, no_update, user_message("submit_set", err)
    dataset = {"name": file["name"], "key": list(set_key(model.name, prompt_set.prompts))}
    if workbench.cached_record(set_key(model.name, prompt_set.prompts)) is not None:
        return dataset, no_update, ""
    return no_update, new_request(**dataset), ""


def set_job(workbench: Workbench, sets: SetFolder, request: dict | None, progress=None):
    """(dataset, message): capture every prompt of the set as one record (in a background job)."""
    if not request:
        raise PreventUpdate
    try:
        prompt_set = sets.read(request["name"])
        if progress is not None:
            progress(f"capturing {len(prompt_set.prompts)} prompts…")
        model = workbench.holder.get()
        record = capture(model, list(prompt_set.prompts), CaptureConfig(mode="pattern"))
        workbench.keep(set_key(model.name, prompt_set.prompts), record)
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, user_message("set_job", err)
    return {"name": request["name"], "key": request["key"]}, ""


def _position(value: str | None) -> str | int:
    if value is None:
        raise InputError("choose a query and a key position")
    return int(value) if re.fullmatch(r"-\d+", value) else value


def set_view(workbench: Workbench, sets: SetFolder, dataset: dict | None, metric: str | None, query, key):
    """(figure, config): the chosen metric averaged over the captured set."""
    try:
        if not dataset:
            fig = figures.message_figure("open a prompt file and press 'capture the set'")
        else:
            record = workbench.cached_record(tuple(dataset["key"]))
            if record is None:
                raise InputError("the set's capture is no longer stored; press 'capture the set' again")
            fig = _set_figure(record, sets.read(dataset["name"]), metric or ATTENTION, query, key)
    except InputError as err:
        fig = figures.message_figure(str(err))
    except Exception as err:  # noqa: BLE001 - the UI boundary
        fig = figures.message_figure(internal_error("set_view", err))
    return fig, figures.graph_config(fig)


def _set_figure(record, prompt_set: PromptSet, metric: str, query, key):
    if metric == ATTENTION:
        q, k = _position(query), _position(key)
        named = isinstance(q, str) or isinstance(k, str)
        roles = role_positions(record, prompt_set) if named else None
        averaged = averaged_attention(record, q, k, roles)
        title = f"{averaged.label} ({averaged.skipped} skipped)"
        return figures.head_grid_figure(averaged.values, record.layers, title)
    values = averaged_metric(record, metric)
    label = next((m.label for m in registered_metrics() if m.name == metric), metric)
    return figures.head_grid_figure(values, record.layers, f"{label}, mean over {record.batch_size} prompts")


def panel() -> html.Div:
    dropdown = {"clearable": False, "style": {"width": "110px", "marginRight": "8px"}}
    metrics = [{"label": "attention query → key", "value": ATTENTION},
               *({"label": m.label, "value": m.name} for m in registered_metrics())]
    return html.Div(
        [
            dcc.Store(id=ID.DATASET_FILE),
            dcc.Store(id=ID.DATASET_CHOICE),  # {"example": name}: set by a link (views.url), opens that set
            dcc.Store(id=ID.DATASET_REQUEST),
            dcc.Store(id=ID.DATASET),
            html.H4("Data set", style={"margin": "2px 0 8px"}),
            html.Div(
                [
                    dcc.Upload(html.Button("open a prompt file (.txt / .jsonl)"), id=ID.DATASET_UPLOAD, multiple=False,
                               style={"display": "inline-block", "marginRight": "8px"}),
                    html.Button("IOI example (48 prompts)", id=ID.DATASET_EXAMPLE, n_clicks=0,
                                style={"marginRight": "12px"}),
                    html.Button("capture the set", id=ID.DATASET_RUN, n_clicks=0, style={"marginRight": "6px"}),
                    html.Button("Cancel", id=ID.DATASET_CANCEL, n_clicks=0, disabled=True),
                ],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div(id=ID.DATASET_INFO, style={"color": "#555", "margin": "4px 0"}),
            html.Div(
                [
                    dcc.Dropdown(id=ID.DATASET_METRIC, options=metrics, value=ATTENTION, clearable=False,
                                 style={"width": "300px", "marginRight": "8px"}),
                    html.Label("query ", htmlFor=ID.DATASET_QUERY),
                    dcc.Dropdown(id=ID.DATASET_QUERY, options=FROM_END, value="-1", **dropdown),
                    html.Label("key ", htmlFor=ID.DATASET_KEY),
                    dcc.Dropdown(id=ID.DATASET_KEY, options=FROM_END, value="-2", **dropdown),
                ],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div(id=ID.DATASET_PROGRESS, style=PROGRESS),
            html.Div(id=ID.DATASET_MESSAGE, style=MESSAGE),
            dcc.Graph(id=ID.DATASET_GRAPH, figure=figures.message_figure("no data set yet"),
                      config=figures.graph_config(figures.message_figure(""))),
        ],
        style=PANEL,
    )


def register_callbacks(app: Dash, workbench: Workbench, sets: SetFolder) -> None:
    @app.callback(Output(ID.DATASET_FILE, "data"), Output(ID.DATASET_INFO, "children"),
                  Output(ID.DATASET_QUERY, "options"), Output(ID.DATASET_QUERY, "value"),
                  Output(ID.DATASET_KEY, "options"), Output(ID.DATASET_KEY, "value"),
                  Output(ID.DATASET_MESSAGE, "children"),
                  Input(ID.DATASET_UPLOAD, "contents"), Input(ID.DATASET_EXAMPLE, "n_clicks"),
                  Input(ID.DATASET_CHOICE, "data"), State(ID.DATASET_UPLOAD, "filename"), prevent_initial_call=True)
    def _open(contents, _example, choice, filename):
        if ctx.triggered_id == ID.DATASET_CHOICE and not (choice or {}).get("example"):
            raise PreventUpdate
        example = ctx.triggered_id in (ID.DATASET_EXAMPLE, ID.DATASET_CHOICE)
        file, info, options, query, key, message = opened(sets, contents, filename, example)
        return file, info, options, query, options, key, message

    @app.callback(Output(ID.DATASET, "data"), Output(ID.DATASET_REQUEST, "data"),
                  Output(ID.DATASET_MESSAGE, "children", allow_duplicate=True),
                  Input(ID.DATASET_RUN, "n_clicks"), State(ID.DATASET_FILE, "data"), prevent_initial_call=True)
    def _submit(_, file):
        return submit_set(workbench, sets, file)

    @app.callback(Output(ID.DATASET, "data", allow_duplicate=True),
                  Output(ID.DATASET_MESSAGE, "children", allow_duplicate=True), Input(ID.DATASET_REQUEST, "data"),
                  **job_options(workbench, ID.DATASET_RUN, ID.DATASET_CANCEL, ID.DATASET_PROGRESS))
    def _job(set_progress, request):
        workbench.enter_job()
        return set_job(workbench, sets, request, set_progress)

    @app.callback(Output(ID.DATASET_GRAPH, "figure"), Output(ID.DATASET_GRAPH, "config"),
                  Input(ID.DATASET, "data"), Input(ID.DATASET_METRIC, "value"), Input(ID.DATASET_QUERY, "value"),
                  Input(ID.DATASET_KEY, "value"))
    def _view(dataset, metric, query, key):
        return set_view(workbench, sets, dataset, metric, query, key)

    show_cancelled(app, ID.DATASET_CANCEL, ID.DATASET_MESSAGE)
