"""The reasoning-rhythm panel: WAAD, FAI and anchors of one response to a GSM8K-style question.

Context:
    Li et al. (arXiv 2510.13554; :mod:`circuits.rhythm`) read two signals off a response's
    attention: WAAD of the local heads (a sawtooth that drops where a new chunk starts) and FAI
    of the global heads (anchors: tokens later tokens keep attending to). This panel shows both
    for one response, either generated here (greedy, the paper's instruction under the chat
    template, :func:`circuits.rhythm.traces.generate_batch`) or pasted by the user
    (:func:`circuits.rhythm.traces.traces_from_text`), through the same functions as
    ``headscope rhythm analyse``: :func:`~circuits.rhythm.analysis.analyse_traces`, the
    report's figures, and its anchors as Dash spans built from
    :func:`~circuits.rhythm.report.anchor_tokens` (no HTML is injected).

Long work:
    The callback is a Dash background callback (:mod:`apps.heads_dashboard.jobs`): generation
    (up to :data:`MAX_NEW_TOKENS` tokens) and the analysis's forwards run in a process forked for
    the job, with its own copy of the model, so other sessions' captures do not wait for it. Both
    buttons are disabled while it runs and "cancel" kills the job.

Caching:
    Within one job, the trace and the analysis are cached per (model, question, max new tokens)
    and (model, token ids, rhythm settings); a job's caches end with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from dash import Dash, Input, Output, State, ctx, dcc, html

from circuits.rhythm.analysis import analyse_traces
from circuits.rhythm.metrics import HeadRoles, RhythmConfig, TokenRhythm, group_size
from circuits.rhythm.peaks import as_array, waad_peaks
from circuits.rhythm.problems import Problem
from circuits.rhythm.report import anchor_tokens, fai_figure, shown_token, waad_figure
from circuits.rhythm.traces import Trace, TraceConfig, build_prompt, encode_prompt, generate_batch, traces_from_text
from probe.capture.inputs import InputError
from probe.models import LoadedModel

from apps.heads_dashboard.callback_tools import shown_errors
from apps.heads_dashboard.figures import message_figure
from apps.heads_dashboard.layout import MESSAGE, PANEL, ROW
from apps.heads_dashboard.state import LRUCache, ModelNotReady
from apps.heads_dashboard.workbench import Workbench

EXAMPLE_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                    "How many clips did Natalia sell altogether in April and May?")
"""GSM8K's first training problem, pre-filled."""

DEFAULT_NEW_TOKENS, MAX_NEW_TOKENS = 160, 512
"""160: the length of the notebook's traces (six of them, generated and analysed, took about 30 s on
SmolLM2-135M and two CPU cores); 512: TraceConfig's default."""

MAX_OFFSET = 4096
"""Largest W, H_lo and H_hi the boxes accept (tokens)."""

TOP_ROWS = 8
"""Rows of the top-FAI and WAAD-peak tables."""

Mode = Literal["generate", "pasted"]
Box = float | str | None
"""A number box's value as the browser sends it: a number, or None when empty or not a number."""


class RID:
    """The panel's component ids (prefixed, so they cannot collide with the page's :class:`~..layout.ID`)."""

    QUESTION = "rhythm-question"
    RESPONSE = "rhythm-response"
    MAX_NEW_TOKENS = "rhythm-max-new-tokens"
    GENERATE = "rhythm-generate"
    ANALYSE = "rhythm-analyse"
    CANCEL = "rhythm-cancel"
    WINDOW = "rhythm-window"
    BAND_LO = "rhythm-band-lo"
    BAND_HI = "rhythm-band-hi"
    LOCAL = "rhythm-local-share"
    GLOBAL = "rhythm-global-share"
    RECEIVER = "rhythm-receiver-share"
    MESSAGE = "rhythm-message"
    INFO = "rhythm-info"
    WAAD = "rhythm-waad"
    FAI = "rhythm-fai"
    ANCHORS = "rhythm-anchors"
    ROLES = "rhythm-roles"
    PEAKS = "rhythm-peaks"


# --- reading the widgets -------------------------------------------------------------------


def _shown(value: Box) -> str:
    return "nothing" if value is None or value == "" else repr(value)


def whole_number(value: Box, name: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` from a number box (None: the box is empty or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number.is_integer() and low <= number <= high):
        raise InputError(f"{name} must be a whole number from {low} to {high}; got {_shown(value)}")
    return int(number)


def share(value: Box, name: str) -> float:
    """A share of heads in (0, 1] from a number box."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number <= 1.0:
        raise InputError(f"{name} must be a share of the heads in (0, 1], such as 0.3; got {_shown(value)}")
    return number


@dataclass(frozen=True)
class RhythmRequest:
    """What the panel was asked for, checked.

    Attributes:
        question: the question (the prompt is it plus the paper's instruction, chat template applied).
        response: the pasted response, or None to generate one.
        max_new_tokens: most tokens generated (None for a pasted response).
        config: W, the band and the head shares.
    """

    question: str
    response: str | None
    max_new_tokens: int | None
    config: RhythmConfig

    @classmethod
    def from_ui(cls, mode: Mode, question: str | None, response: str | None, max_new_tokens: Box, window: Box,
                band_lo: Box, band_hi: Box, local_share: Box, global_share: Box,
                receiver_share: Box) -> "RhythmRequest":
        """Read the widgets; the first bad one raises :class:`InputError` naming it and the fix."""
        if not (question or "").strip():
            raise InputError("the question is empty; type a question (or keep the example)")
        if mode == "pasted" and not (response or "").strip():
            raise InputError("the response box is empty; paste a response to the question, or press generate + analyse")
        new_tokens = whole_number(max_new_tokens, "max new tokens", 1, MAX_NEW_TOKENS) if mode == "generate" else None
        lo = whole_number(band_lo, "H_lo (the band's first look-ahead)", 0, MAX_OFFSET)
        hi = None  # an empty box: to the end of the response
        if band_hi is not None and band_hi != "":
            hi = whole_number(band_hi, "H_hi (the band's last look-ahead)", 0, MAX_OFFSET)
        if hi is not None and hi < lo:
            raise InputError(f"H_hi ({hi}) is below H_lo ({lo}): FAI's band runs from H_lo to H_hi tokens ahead; "
                             "raise H_hi, or leave it empty for 'to the end of the response'")
        local, global_ = share(local_share, "the local heads' share"), share(global_share, "the global heads' share")
        if local + global_ > 1.0:
            raise InputError(f"the local and global shares add up to {local + global_:g}, more than 1: the two groups "
                             "may not overlap; lower one of them")
        config = RhythmConfig(window=whole_number(window, "W (the lookback window)", 1, MAX_OFFSET), band_lo=lo,
                              band_hi=hi, local_fraction=local, global_fraction=global_,
                              receiver_fraction=share(receiver_share, "the receiver heads' share"))
        return cls(question=question.strip(), response=response if mode == "pasted" else None,
                   max_new_tokens=new_tokens, config=config)

    def check(self, model: LoadedModel, n_prompt: int, n_response: int) -> None:
        """InputError unless the groups fit the model's heads and prompt + response fit its context
        (``n_response``: the pasted response's tokens, or max new tokens)."""
        geometry = model.geometry
        total = geometry.n_layers * geometry.n_heads
        n_local, n_global = group_size(self.config.local_fraction, total), group_size(self.config.global_fraction, total)
        if n_local + n_global > total:
            raise InputError(f"the model's {total} heads cannot hold {n_local} local and {n_global} global heads; "
                             "lower the shares")
        context = geometry.context_length
        if context is not None and n_prompt + n_response > context:
            what = "the pasted response" if self.response is not None else "max new tokens"
            raise InputError(f"the prompt ({n_prompt} tokens) and {what} ({n_response}) exceed the model's context of "
                             f"{context} tokens; shorten the question or the response")
        if n_response <= self.config.band_lo:
            size = (f"the pasted response has {n_response} tokens" if self.response is not None
                    else f"max new tokens is {n_response}")
            raise InputError(f"{size}, not more than H_lo={self.config.band_lo}: FAI reads the attention a token "
                             "receives H_lo or more tokens later, so it would be undefined everywhere; lower H_lo or "
                             "use a longer response")


# --- the model work ------------------------------------------------------------------------


class RhythmBench:
    """Generation and analysis for the panel, under the model holder's lock (per process: each job has its own), cached."""

    def __init__(self, workbench: Workbench, entries: int = 8):
        self.workbench = workbench
        self.cache: LRUCache[Trace | TokenRhythm] = LRUCache(entries)

    def model(self) -> LoadedModel:
        if self.workbench.holder is None:
            raise ModelNotReady("this dashboard runs without a model; the rhythm panel needs one")
        return self.workbench.holder.get()

    def trace(self, model: LoadedModel, request: RhythmRequest) -> Trace:
        """The pasted response tokenized, or a greedy response generated (all checks first)."""
        tokenizer = model.tokenizer
        prompt = build_prompt(tokenizer, request.question)
        if request.response is not None:
            trace = traces_from_text(tokenizer, prompt, request.response)
            request.check(model, len(trace.prompt_ids), len(trace.response_ids))
            return trace
        request.check(model, len(encode_prompt(tokenizer, prompt)), request.max_new_tokens)
        config = TraceConfig(max_new_tokens=request.max_new_tokens, batch_size=1)
        key = (model.name, "trace", request.question, request.max_new_tokens)

        def generate() -> Trace:
            return generate_batch(model, [Problem(request.question)], config, [0])[0]

        trace = self.cache.get_or_compute(key, generate, self.workbench.holder.lock)
        if len(trace.response_ids) <= request.config.band_lo:
            raise InputError(f"the model stopped after {len(trace.response_ids)} tokens, not more than "
                             f"H_lo={request.config.band_lo}, so FAI is undefined everywhere; lower H_lo")
        return trace

    def rhythm(self, model: LoadedModel, trace: Trace, config: RhythmConfig) -> TokenRhythm:
        """WAAD, FAI, head roles and entropy of ``trace`` (one statistics capture, one forward)."""
        key = (model.name, "rhythm", trace.prompt_ids, trace.response_ids, config)

        def analyse() -> TokenRhythm:
            return analyse_traces(model, [trace], config, batch_size=1, progress=False)[0]

        return self.cache.get_or_compute(key, analyse, self.workbench.holder.lock)


# --- what is shown -------------------------------------------------------------------------


def _camel(css_name: str) -> str:
    """``border-bottom`` -> ``borderBottom`` (React's style keys)."""
    first, *rest = css_name.split("-")
    return first + "".join(part.capitalize() for part in rest)


def anchor_spans(rhythm: TokenRhythm) -> list[html.Span]:
    """The response, one span per token, shaded and marked as the report's anchors view."""
    return [html.Span(token.shown, title=token.hover, style={_camel(k): v for k, v in token.css().items()})
            for token in anchor_tokens(rhythm)]


def _heads(heads) -> str:
    return ", ".join(f"L{layer}.H{head}" for layer, head in heads) or "none"


def roles_view(roles: HeadRoles) -> html.Div:
    """The head groups the metrics averaged."""
    rows = [("local heads (WAAD; shortest span)", roles.local_heads),
            ("global heads (FAI; longest span)", roles.global_heads),
            ("receiver heads (receiver FAI)", roles.receiver_heads)]
    return html.Div([html.Div([html.B(f"{label}: "), _heads(heads)]) for label, heads in rows])


def _table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> html.Div:
    cell = {"padding": "2px 8px", "borderBottom": "1px solid #eee", "textAlign": "left"}
    body = [html.Tr([html.Td(value, style=cell) for value in row]) for row in rows]
    return html.Div([html.B(title), html.Table([html.Thead(html.Tr([html.Th(h, style=cell) for h in header])),
                                                html.Tbody(body or [html.Tr(html.Td("none", colSpan=len(header)))])])],
                    style={"marginRight": "24px"})


def _quoted(token: str) -> str:
    """A token in quotes, so leading spaces show."""
    return repr(shown_token(token))


def peaks_view(rhythm: TokenRhythm) -> html.Div:
    """Tables of the highest-FAI tokens and of the highest WAAD peaks."""
    fai, waad = as_array(rhythm.fai), as_array(rhythm.waad)
    entropy = as_array(rhythm.entropy) if rhythm.entropy is not None else np.full(len(fai), math.nan)
    finite = np.flatnonzero(np.isfinite(fai))
    top_fai = finite[np.argsort(-fai[finite], kind="stable")][:TOP_ROWS]
    peaks = waad_peaks(waad)
    top_waad = peaks[np.argsort(-waad[peaks], kind="stable")][:TOP_ROWS]
    return html.Div([
        _table("top FAI tokens (anchors)", ("position", "token", "FAI"),
               [(str(i), _quoted(rhythm.tokens[i]), f"{fai[i]:.4g}") for i in top_fai]),
        _table(f"top WAAD peaks ({len(peaks)} in all)", ("position", "token", "WAAD", "entropy"),
               [(str(i), _quoted(rhythm.tokens[i]), f"{waad[i]:.3g}", f"{entropy[i]:.3g}")
                for i in top_waad]),
    ], style=ROW)


def info_line(model: LoadedModel, trace: Trace, request: RhythmRequest) -> str:
    """Length and ending of the response, its final number, the settings and the model."""
    config = request.config
    if trace.stopped_at_eos is None:
        ending = "pasted"
    else:
        ending = "stopped at EOS" if trace.stopped_at_eos else f"cut at {request.max_new_tokens} new tokens"
    band = f"{config.band_lo}..{'end' if config.band_hi is None else config.band_hi}"
    return (f"{len(trace.response_ids)} response tokens ({ending}) · final number: {trace.predicted or 'none'} · "
            f"W={config.window}, band {band} · {model.name}")


@shown_errors(n_figures=2, n_blank=4)
def rhythm_view(bench: RhythmBench, mode: Mode, question: str | None, response: str | None = None,
                max_new_tokens: Box = DEFAULT_NEW_TOKENS, window: Box = 10, band_lo: Box = 10, band_hi: Box = None,
                local_share: Box = 0.3, global_share: Box = 0.3, receiver_share: Box = 0.1):
    """(WAAD figure, FAI figure, info line, anchor spans, head roles, peak tables, message).

    Args:
        bench: the panel's model work.
        mode: ``"generate"`` a greedy response, or analyse the ``"pasted"`` ``response``.
        question, response, max_new_tokens, window, band_lo, band_hi, local_share, global_share,
            receiver_share: the widgets' values as the browser sends them (``band_hi`` empty: to
            the end of the response, as the paper's section 4).
    """
    request = RhythmRequest.from_ui(mode, question, response, max_new_tokens, window, band_lo, band_hi,
                                    local_share, global_share, receiver_share)
    model = bench.model()
    trace = bench.trace(model, request)
    rhythm = bench.rhythm(model, trace, request.config)
    return (waad_figure(rhythm, title="WAAD (local heads): drops where a chunk starts"),
            fai_figure(rhythm, title="FAI (global heads): peaks are anchors"),
            info_line(model, trace, request), anchor_spans(rhythm), roles_view(rhythm.roles), peaks_view(rhythm), "")


# --- layout and wiring ---------------------------------------------------------------------


def _number(component_id: str, label: str, value, **limits) -> list:
    return [html.Label(label, htmlFor=component_id),
            dcc.Input(id=component_id, type="number", value=value, debounce=True,
                      style={"width": "70px", "margin": "0 14px 0 4px"}, **limits)]


def panel() -> html.Div:
    """The panel's section of the page."""
    waiting = message_figure("press generate + analyse, or paste a response and press analyse my response")
    return html.Div([
        html.H4("Reasoning rhythm", style={"margin": "2px 0 4px"}),
        html.Div("WAAD of the local heads draws a sawtooth that drops where a new chunk starts; FAI of the global "
                 "heads marks anchors, tokens later tokens keep attending to (Li et al., arXiv 2510.13554). "
                 "The prompt is the question with the paper's instruction, under the chat template.",
                 style={"color": "#555", "marginBottom": "6px"}),
        dcc.Textarea(id=RID.QUESTION, value=EXAMPLE_QUESTION, style={"width": "100%", "height": "60px"}),
        dcc.Textarea(id=RID.RESPONSE, placeholder="…or paste a response to this question to analyse it",
                     style={"width": "100%", "height": "60px", "marginTop": "4px"}),
        html.Div([html.Button("generate + analyse", id=RID.GENERATE, n_clicks=0, style={"marginRight": "10px"}),
                  *_number(RID.MAX_NEW_TOKENS, "max new tokens", DEFAULT_NEW_TOKENS, min=1, max=MAX_NEW_TOKENS, step=1),
                  html.Button("analyse my response", id=RID.ANALYSE, n_clicks=0, style={"marginRight": "10px"}),
                  html.Button("cancel", id=RID.CANCEL, n_clicks=0, disabled=True)],
                 style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div([*_number(RID.WINDOW, "W", 10, min=1, max=MAX_OFFSET, step=1),
                  *_number(RID.BAND_LO, "band H_lo", 10, min=0, max=MAX_OFFSET, step=1),
                  html.Label("H_hi", htmlFor=RID.BAND_HI),
                  dcc.Input(id=RID.BAND_HI, type="number", value=None, placeholder="end", debounce=True, min=0,
                            max=MAX_OFFSET, step=1, style={"width": "70px", "margin": "0 14px 0 4px"}),
                  *_number(RID.LOCAL, "local share", 0.3, min=0, max=1, step=0.05),
                  *_number(RID.GLOBAL, "global share", 0.3, min=0, max=1, step=0.05),
                  *_number(RID.RECEIVER, "receiver share", 0.1, min=0, max=1, step=0.05)],
                 style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div(id=RID.MESSAGE, style=MESSAGE),
        html.Div(id=RID.INFO, style={"color": "#555"}),
        dcc.Loading([dcc.Graph(id=RID.WAAD, figure=waiting), dcc.Graph(id=RID.FAI, figure=waiting)]),
        html.Div("the response, red by FAI; framed: FAI peaks (anchors); underlined: WAAD peaks; grey: no band",
                 style={"color": "#555", "marginTop": "6px"}),
        html.Div(id=RID.ANCHORS, style={"whiteSpace": "pre-wrap", "fontFamily": "monospace", "lineHeight": "1.6",
                                        "maxHeight": "260px", "overflowY": "auto"}),
        html.Div([html.Div(id=RID.ROLES, style={"flex": "1 1 380px"}), html.Div(id=RID.PEAKS, style={"flex": "2 1 560px"})],
                 style={**ROW, "marginTop": "8px"}),
    ], style=PANEL)


def register_callbacks(app: Dash, workbench: Workbench) -> None:
    """Wire the panel's buttons to :func:`rhythm_view`."""
    bench = RhythmBench(workbench, workbench.settings.cache_entries)

    @app.callback(Output(RID.WAAD, "figure"), Output(RID.FAI, "figure"), Output(RID.INFO, "children"),
                  Output(RID.ANCHORS, "children"), Output(RID.ROLES, "children"), Output(RID.PEAKS, "children"),
                  Output(RID.MESSAGE, "children"),
                  Input(RID.GENERATE, "n_clicks"), Input(RID.ANALYSE, "n_clicks"),
                  State(RID.QUESTION, "value"), State(RID.RESPONSE, "value"), State(RID.MAX_NEW_TOKENS, "value"),
                  State(RID.WINDOW, "value"), State(RID.BAND_LO, "value"), State(RID.BAND_HI, "value"),
                  State(RID.LOCAL, "value"), State(RID.GLOBAL, "value"), State(RID.RECEIVER, "value"),
                  running=[(Output(RID.GENERATE, "disabled"), True, False), (Output(RID.ANALYSE, "disabled"), True, False),
                           (Output(RID.CANCEL, "disabled"), False, True)],
                  cancel=[Input(RID.CANCEL, "n_clicks")], background=True, interval=workbench.settings.job_poll_ms, prevent_initial_call=True)
    def _rhythm(_generate, _analyse, question, response, max_new_tokens, window, band_lo, band_hi, local, global_,
                receiver):
        workbench.enter_job()
        mode = "pasted" if ctx.triggered_id == RID.ANALYSE else "generate"
        return rhythm_view(bench, mode, question, response, max_new_tokens, window, band_lo, band_hi, local, global_,
                           receiver)
