"""Target and foil tokens: the logit difference before/after the edits, and head scores from it.

Context:
    Two boxes take a target and a foil token (e.g. " Mary" and " John"; empty by default). The
    panel's bars show ``logit(target) − logit(foil)`` at the last position before the edits and,
    when an edit is committed, after them: read from the captures' ``last_logits``, no forward
    (:func:`circuits.heads.target_foil.logit_diff_change`).

    "head scores" runs a background job (progress, cancel) that computes two per-head scores of
    the session's prompt under its committed edits: the direct logit attribution
    (:func:`circuits.heads.direct_attribution.direct_logit_attribution`) and the ablation effect
    (:func:`circuits.heads.ablation_sweep.ablation_sweep`, many ablations per forward), zero or
    mean ablation as the panel's radio says (:data:`ABLATIONS`).
    They land in the :data:`ID.SCORES` store, and the heatmap shows them as the metrics "direct
    logit attribution" and "ablation effect" (:mod:`.grid_metrics`). Results are kept per
    (model, prompt, edits, pair, ablation) in a :class:`ScoreStore` (JSON files; no pickle), so asking
    again is answered without a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from apps.heads_dashboard import figures
from apps.heads_dashboard.callback_tools import internal_error, job_options, new_request, show_cancelled, user_message
from apps.heads_dashboard.figures_grid import logit_diff_figure
from apps.heads_dashboard.ids import ID, MESSAGE, PANEL, PROGRESS, ROW
from apps.heads_dashboard.settings import EditSettings
from apps.heads_dashboard.workbench import NotCaptured, Source, Workbench
from circuits.heads.ablation_sweep import ablation_sweep, sweep_forwards
from circuits.heads.direct_attribution import direct_logit_attribution
from circuits.heads.target_foil import TargetFoil, logit_diff_change, logit_difference, target_foil
from probe.errors import InputError

HEADS_PER_FORWARD = 32
"""Prompt copies per ablation forward for prompts up to :data:`FULL_BATCH_TOKENS` tokens ..."""
FULL_BATCH_TOKENS = 256
"""... beyond which the copies shrink with the square of the length (attention memory), down to 1."""


def heads_per_forward(n_tokens: int) -> int:
    """Copies per ablation forward for an ``n_tokens`` prompt: 32 up to 256 tokens, then
    ``32 * (256 / n)^2`` (8 at 512 tokens, 1 from about 1,450), so a forward's attention
    scores stay near those of 32 copies of 256 tokens."""
    return max(1, min(HEADS_PER_FORWARD, int(HEADS_PER_FORWARD * (FULL_BATCH_TOKENS / max(n_tokens, 1)) ** 2)))
ABLATIONS = {"zero": "zero", "mean": "mean over the prompt's positions"}
"""Ablation modes the panel offers (``ablation_sweep``'s ``mode``) -> radio label."""
NO_PAIR = "type a target and a foil token (e.g. ' Mary' and ' John', with their leading spaces)"


class ScoreStore:
    """Head scores as JSON files keyed by (model, prompt, edits, pair): written by jobs, read by the server."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: tuple) -> Path:
        return self.folder / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]}.json"

    def get(self, key: tuple) -> dict | None:
        path = self.path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, key: tuple, scores: dict) -> None:
        path = self.path(key)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(scores))
        partial.replace(path)  # atomic: a reader sees all of it or nothing


def score_key(model: str, prompt: str, edits: EditSettings, target: str, foil: str, ablation: str = "zero") -> tuple:
    return (model, prompt, json.dumps(edits.to_store(), sort_keys=True), target, foil, ablation)


def read_ablation(mode: str | None) -> str:
    """The checked ablation mode (None: zero)."""
    mode = mode or "zero"
    if mode not in ABLATIONS:
        raise InputError(f"ablation mode {mode!r} is not offered; choose {' or '.join(ABLATIONS)}")
    return mode


def read_pair(workbench: Workbench, target: str | None, foil: str | None) -> TargetFoil | None:
    """The checked pair, or None when both boxes are empty (InputError on one empty or a bad token)."""
    if not target and not foil:
        return None
    if workbench.holder is None:
        raise InputError("a target and a foil need a model; this dashboard runs without one")
    return target_foil(workbench.holder.get().tokenizer, target or "", foil or "")


def session_edits(edit_session: dict | None, source: dict | None) -> EditSettings:
    """The committed edits of the session's current source (none while pending or for another source)."""
    if not edit_session or "edits" not in edit_session or edit_session.get("source") != source:
        return EditSettings()
    return EditSettings.from_store(edit_session["edits"])


# --- the logit difference ---------------------------------------------------------------------


def logit_diff_view(workbench: Workbench, source: dict | None, edit_session: dict | None, target, foil):
    """(bars, config, panel message): the logit difference before (and after) the committed edits;
    a bad pair or a missing capture is one line in the panel, the figure a short placeholder."""
    message = ""
    try:
        fig = _logit_diff_figure(workbench, source, edit_session, target, foil)
    except (InputError, NotCaptured) as err:
        fig, message = figures.message_figure("no logit difference"), str(err)
    except Exception as err:  # noqa: BLE001 - the UI boundary
        fig, message = figures.message_figure("internal error"), internal_error("logit_diff_view", err)
    return fig, figures.graph_config(fig), message


def _logit_diff_figure(workbench, source, edit_session, target, foil):
    pair = read_pair(workbench, target, foil)
    if pair is None:
        return figures.message_figure(NO_PAIR)
    src = Source.from_store(source)
    if src.is_empty:
        return figures.message_figure("run a prompt first")
    before = workbench.cached_view(src)
    if before.record.last_logits is None:
        raise InputError("this record has no logits; run the prompt live")
    edits = session_edits(edit_session, source)
    if edits.is_empty:
        value = float(logit_difference(before.record.last_logits[before.prompt].double(), pair))
        return logit_diff_figure(pair.target, pair.foil, value, None, "")
    after = workbench.cached_view(src, edits)
    change = logit_diff_change(before.record, after.record, pair, before.prompt)
    fig = logit_diff_figure(pair.target, pair.foil, change.before, change.after, edits.describe())
    fig.update_layout(title_text=f"logit({pair.target!r}) − logit({pair.foil!r}): {change.before:+.2f} → "
                                 f"{change.after:+.2f}<br><sup>p({pair.target!r}) {change.p_target[0]:.3g} → "
                                 f"{change.p_target[1]:.3g}, p({pair.foil!r}) {change.p_foil[0]:.3g} → "
                                 f"{change.p_foil[1]:.3g}</sup>", margin=dict(t=60))
    return fig


# --- head scores (a background job) ------------------------------------------------------------


def submit_scores(workbench: Workbench, stores: ScoreStore, source, edit_session, target, foil, ablation="zero"):
    """(scores or no_update, request or no_update, message) for the 'head scores' button."""
    try:
        src = Source.from_store(source)
        if src.prompt is None:
            raise InputError("head scores need a typed prompt: type one and press Run")
        pair = read_pair(workbench, target, foil)
        if pair is None:
            raise InputError(NO_PAIR)
        edits = session_edits(edit_session, source)
        mode = read_ablation(ablation)
        plan = workbench.plan(src, edits)
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, no_update, user_message("submit_scores", err)
    cached = stores.get(score_key(plan.model, plan.prompt, edits, pair.target, pair.foil, mode))
    if cached is not None:
        return cached, no_update, ""
    return no_update, new_request(prompt=plan.prompt, edits=edits.to_store(), target=pair.target, foil=pair.foil,
                                  ablation=mode), ""


def scores_job(workbench: Workbench, stores: ScoreStore, request: dict | None, progress=None):
    """(scores, message): DLA and the ablation sweep of the requested prompt (in a background job)."""
    if not request:
        raise PreventUpdate
    try:
        model = workbench.holder.get()
        edits = EditSettings.from_store(request["edits"])
        pair = target_foil(model.tokenizer, request["target"], request["foil"])
        mode = read_ablation(request.get("ablation"))
        scores = compute_scores(model, request["prompt"], pair, edits, progress, ablation=mode)
    except Exception as err:  # noqa: BLE001 - shown in the panel
        return no_update, user_message("scores_job", err)
    stores.put(score_key(model.name, request["prompt"], edits, pair.target, pair.foil, mode), scores)
    return scores, ""


def compute_scores(model, prompt: str, pair: TargetFoil, edits: EditSettings, progress=None,
                   ablation: str = "zero") -> dict:
    """DLA and ``ablation``-ablation effect per head, as the :data:`ID.SCORES` store holds them."""
    report = progress or (lambda _: None)
    report("direct logit attribution…")
    listed = edits.to_edits(model.geometry.n_layers)
    dla = direct_logit_attribution(model, prompt, pair, listed)
    geometry = model.geometry
    per_forward = heads_per_forward(len(model.tokenizer(prompt)["input_ids"]))
    total = sweep_forwards(geometry.n_layers * geometry.n_heads, per_forward)
    with _count_forwards(model, lambda i: report(f"ablation sweep: forward {i} of {total}")):
        sweep = ablation_sweep(model, prompt, pair, listed, mode=ablation, heads_per_forward=per_forward)
    return {"prompt": prompt, "target": pair.target, "foil": pair.foil,
            "edits_label": "" if edits.is_empty else edits.describe(),
            "dla": dla.heads.tolist(), "ablation": sweep.effect.tolist(), "ablation_mode": ablation, "base": sweep.base,
            "logit_diff": dla.logit_diff, "forwards": sweep.forwards}


@contextlib.contextmanager
def _count_forwards(model, report) -> Iterator[None]:
    """Call ``report(i)`` before the model's i-th forward in the block (at most every 0.25 s)."""
    count, last = [0], [0.0]

    def pre(module, args, kwargs):
        count[0] += 1
        if time.monotonic() - last[0] >= 0.25:
            last[0] = time.monotonic()
            report(count[0])

    handle = model.hf.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


# --- layout and wiring -----------------------------------------------------------------------


def panel() -> html.Div:
    text = {"type": "text", "debounce": True, "style": {"width": "110px", "margin": "0 8px"}}
    return html.Div(
        [
            dcc.Store(id=ID.SCORES_REQUEST),
            dcc.Store(id=ID.SCORES),
            html.H4("Target and foil", style={"margin": "2px 0 8px"}),
            html.Div(
                [
                    html.Label("target ", htmlFor=ID.TARGET), dcc.Input(id=ID.TARGET, placeholder="' Mary'", **text),
                    html.Label("foil ", htmlFor=ID.FOIL), dcc.Input(id=ID.FOIL, placeholder="' John'", **text),
                    html.Button("head scores", id=ID.SCORES_RUN, n_clicks=0,
                                style={"marginRight": "6px"}),
                    html.Button("Cancel", id=ID.SCORES_CANCEL, n_clicks=0, disabled=True,
                                style={"marginRight": "10px"}),
                    html.Span("ablation: ", style={"color": "#555"}),
                    dcc.RadioItems(id=ID.ABLATION_MODE, value="zero", inline=True,
                                   options=[{"label": v, "value": k} for k, v in ABLATIONS.items()],
                                   inputStyle={"marginRight": "3px"}, labelStyle={"marginRight": "10px"}),
                ],
                style={**ROW, "alignItems": "center"},
            ),
            html.Div("type the tokens with their leading space; 'head scores' computes each head's direct logit "
                     "attribution and ablation effect (a job; zero or mean ablation), shown as the heatmap metrics of those names",
                     style={"color": "#555", "margin": "4px 0"}),
            html.Div(id=ID.SCORES_PROGRESS, style=PROGRESS),
            html.Div(id=ID.SCORES_MESSAGE, style=MESSAGE),
            dcc.Graph(id=ID.LOGIT_DIFF, figure=figures.message_figure(NO_PAIR),
                      config=figures.graph_config(figures.message_figure(""))),
        ],
        style=PANEL,
    )


def register_callbacks(app: Dash, workbench: Workbench, stores: ScoreStore) -> None:
    @app.callback(Output(ID.LOGIT_DIFF, "figure"), Output(ID.LOGIT_DIFF, "config"),
                  Output(ID.SCORES_MESSAGE, "children", allow_duplicate=True),
                  Input(ID.SESSION, "data"), Input(ID.EDIT_SESSION, "data"), Input(ID.TARGET, "value"),
                  Input(ID.FOIL, "value"), Input(ID.MODEL_READY, "data"), prevent_initial_call="initial_duplicate")
    def _logit_diff(source, edit_session, target, foil, _ready):
        return logit_diff_view(workbench, source, edit_session, target, foil)

    @app.callback(Output(ID.SCORES, "data"), Output(ID.SCORES_REQUEST, "data"), Output(ID.SCORES_MESSAGE, "children"),
                  Input(ID.SCORES_RUN, "n_clicks"), State(ID.SESSION, "data"), State(ID.EDIT_SESSION, "data"),
                  State(ID.TARGET, "value"), State(ID.FOIL, "value"), State(ID.ABLATION_MODE, "value"),
                  prevent_initial_call=True)
    def _submit(_, source, edit_session, target, foil, ablation):
        return submit_scores(workbench, stores, source, edit_session, target, foil, ablation)

    @app.callback(Output(ID.SCORES, "data", allow_duplicate=True),
                  Output(ID.SCORES_MESSAGE, "children", allow_duplicate=True), Input(ID.SCORES_REQUEST, "data"),
                  **job_options(workbench, ID.SCORES_RUN, ID.SCORES_CANCEL, ID.SCORES_PROGRESS))
    def _job(set_progress, request):
        workbench.enter_job()
        return scores_job(workbench, stores, request, set_progress)

    show_cancelled(app, ID.SCORES_CANCEL, ID.SCORES_MESSAGE)
