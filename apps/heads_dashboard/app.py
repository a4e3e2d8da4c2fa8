"""Build and serve the Dash app.

Example:
    >>> from apps.heads_dashboard.app import create_app
    >>> from apps.heads_dashboard.settings import DashboardSettings
    >>> app = create_app(DashboardSettings())   # starts loading SmolLM2 in the background
    >>> app.run(host="127.0.0.1", port=8050)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import torch
from dash import Dash

from probe.capture.record import AttentionRecord
from probe.models import LoadedModel, load_model

from apps.heads_dashboard.callbacks import cached_or_why, register_callbacks, submit_prompt
from apps.heads_dashboard.jobs import JobManager, new_job_folder
from apps.heads_dashboard.layout import build_layout
from apps.heads_dashboard.metrics import load_plugin_metrics
from apps.heads_dashboard.panels import circuits, rhythm, vision
from apps.heads_dashboard.panels.vision_bench import VisionModels
from apps.heads_dashboard.settings import DashboardSettings
from apps.heads_dashboard.state import ModelHolder, RecordStore
from apps.heads_dashboard.views import dataset, scores, tokens, url, window
from apps.heads_dashboard.workbench import Source, Workbench


def create_app(
    settings: DashboardSettings,
    *,
    loader: Callable[[str], LoadedModel] | None = load_model,
    record: AttentionRecord | None = None,
    vision_loader: Callable[[str], LoadedModel] | None = load_model,
    job_folder: str | os.PathLike | None = None,
) -> Dash:
    """A ready-to-run app; the model starts loading on a background thread at once.

    Args:
        settings: model, server and display settings.
        loader: ``name -> LoadedModel`` (tests pass a tiny model); None runs without a model,
            showing only ``record``.
        record: a record to show; if None and ``settings.record`` is set, it is read from there.
        vision_loader: ``name -> LoadedModel`` for the vision panel's ``settings.vision_model``,
            called on the panel's first run (not at start-up, so ``--no-model`` pages start as
            fast); None leaves the panel without a model.
        job_folder: where background jobs keep their state and captures (default: a new
            temporary folder).
    """
    if record is None and settings.record is not None:
        record = AttentionRecord.load(settings.record)
    holder = ModelHolder(settings.model, loader).start() if loader is not None else None
    folder = Path(job_folder) if job_folder is not None else new_job_folder()
    jobs = JobManager(folder / "jobs")
    workbench = Workbench(settings, holder, record, store=RecordStore(folder / "captures", settings.stored_captures),
                          jobs=jobs)
    load_plugin_metrics()
    app = Dash(__name__, title="headscope dashboard", update_title=None, background_callback_manager=jobs)
    app.layout = build_layout(_record_labels(record), _initial_source(record), panels=[rhythm.panel(), circuits.panel(), vision.panel()])
    register_callbacks(app, workbench)
    register_views(app, workbench, folder)
    rhythm.register_callbacks(app, workbench)
    circuits.register_callbacks(app, workbench)
    vision.register_callbacks(app, workbench, VisionModels(settings.vision_model, vision_loader))
    return app


def register_views(app: Dash, workbench: Workbench, folder: Path) -> None:
    """Wire the feature views (:mod:`.views`); their results live under ``folder`` beside the captures."""
    cached = functools.partial(cached_or_why, workbench)
    tokens.register_callbacks(app, cached)
    scores.register_callbacks(app, workbench, scores.ScoreStore(folder / "scores"))
    window.register_callbacks(app, workbench, window.WindowStore(folder / "windows"))
    dataset.register_callbacks(app, workbench, dataset.SetFolder(folder / "sets"))
    url.register_callbacks(app, functools.partial(submit_prompt, workbench))


def _record_labels(record: AttentionRecord | None) -> list[str]:
    if record is None:
        return []
    return ["".join(tokens) for tokens in record.tokens]


def _initial_source(record: AttentionRecord | None) -> dict:
    """A record, if given, is on screen from the start; otherwise the page waits for a prompt."""
    return Source(record_prompt=0).to_store() if record is not None else Source().to_store()


def serve(settings: DashboardSettings, **kwargs) -> None:
    """Create the app and serve it (threaded: polls and cached views of several pages at once; the
    forwards run in background jobs, :mod:`.jobs`).

    With ``settings.job_threads > 1`` the server itself runs torch on one thread from the start
    (before the model loads): a job forked from a process that never ran a multi-threaded OpenMP
    region may start its own threads; one forked after such a region hangs."""
    if settings.job_threads > 1:
        torch.set_num_threads(1)
    app = create_app(settings, **kwargs)
    app.run(host=settings.host, port=settings.port, debug=False, threaded=True)
