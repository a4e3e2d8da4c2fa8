"""What every callback module shares: errors shown once per panel, job requests, background-job options.

Kept apart from :mod:`.callbacks` so feature views (:mod:`.views`) and panels use them without
importing the page's callbacks (no import cycle)."""

from __future__ import annotations

import functools
import logging
import uuid

from dash import Input, Output

from apps.heads_dashboard import figures
from apps.heads_dashboard.state import ModelNotReady
from probe.capture.inputs import InputError

log = logging.getLogger(__name__)
USER_ERRORS = (InputError, ModelNotReady)
CANCELLED = "cancelled: the job was stopped; press Run (or Apply) to start again"
BIG_MOVE = 0.5
"""Warn when an edit moves the top token's probability by more than this (absolute) ..."""
BIG_RATIO = 10.0
"""... or divides it by more than this."""


def shown_errors(n_figures: int, n_blank: int = 0):
    """Turn an exception into ``n_figures`` message figures, ``n_blank`` empty outputs and the message
    (the analysis panels' callbacks)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as err:
                message = str(err)
            except Exception as err:  # noqa: BLE001 - the UI boundary: report, keep serving
                message = internal_error(fn.__name__, err)
            return (*[figures.message_figure(message)] * n_figures, *[""] * n_blank, message)

        return wrapper

    return decorate


def internal_error(where: str, err: Exception) -> str:
    """Log ``err`` with its traceback; the line the page shows."""
    log.exception("callback %s failed", where, exc_info=err)
    return f"internal error ({type(err).__name__}: {err}); details are in the server log"


def user_message(where: str, err: Exception) -> str:
    return str(err) if isinstance(err, USER_ERRORS) else internal_error(where, err)


def new_request(**fields) -> dict:
    """A job request: ``fields`` and a fresh id (two identical requests are still two jobs)."""
    return {**fields, "id": uuid.uuid4().hex}


def job_options(workbench, run: str, cancel: str, progress: str) -> dict:
    """``app.callback`` keywords of a cancellable background callback with a progress line
    (``workbench.settings.job_poll_ms`` between polls)."""
    return dict(background=True, interval=workbench.settings.job_poll_ms, prevent_initial_call=True,
                progress=[Output(progress, "children")], progress_default=[""],
                cancel=[Input(cancel, "n_clicks")],
                running=[(Output(run, "disabled"), True, False), (Output(cancel, "disabled"), False, True)])


def show_cancelled(app, cancel: str, message: str) -> None:
    """Register the callback that writes :data:`CANCELLED` into ``message`` when ``cancel`` is pressed
    (Dash stops the job itself; this only tells the page)."""

    @app.callback(Output(message, "children", allow_duplicate=True), Input(cancel, "n_clicks"),
                  prevent_initial_call=True)
    def _cancelled(_):
        return CANCELLED
