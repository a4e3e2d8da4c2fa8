"""The circuits panel: discover a task's circuit with one method, draw it, and ablate it.

Context (issue 23, item 6):
    A circuit-discovery method (:mod:`circuits.discovery.methods`) scores every head on a task's
    clean/corrupted contrast (:mod:`circuits.discovery.tasks`). The panel shows, for the first
    ``n`` items of the chosen task:

    - the model's behaviour on them (:func:`~circuits.discovery.behaviour.task_behaviour`):
      accuracy and logit differences, and how many clean prompts it gets wrong (a circuit of a
      behaviour the model lacks is noise);
    - a layers x heads heatmap of the method's scores, the circuit's heads framed;
    - the circuit, the ``k`` heads of largest ``|score|`` (ties cut at exactly ``k``, in
      (layer, head) order), as a dash-cytoscape graph: one node per head, placed at (head,
      layer), sized by ``|score|``;
    - edges between circuit heads weighted by their SAE code co-occurrence
      (:func:`~circuits.discovery.sae_codes.pair_scores`: code pairs seen together on some clean
      prompt and on no corrupted one). The ``sae`` and ``sae-edge`` methods have those codes;
      for the others the SAE is trained only if the user ticks "edges from SAE codes", and the
      panel says which edge source is shown;
    - on "ablate circuit": the circuit mean-ablated, its complement mean-ablated (the circuit kept
      alone) and as many random heads mean-ablated (:func:`~circuits.discovery.ablation.ablation_study`),
      logit difference and accuracy before and after.

    The computation is :func:`~circuits.discovery.circuit_run.circuit_run`, a plain function
    returning a :class:`~circuits.discovery.circuit_run.CircuitRun`; the callbacks only read
    widgets, call it in a Dash background callback
    (a forked job process with its own copy of the model, :mod:`apps.heads_dashboard.jobs`) and
    lay out the result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import dash_cytoscape as cyto
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html

from circuits.discovery.ablation import AblationStudy, CircuitAblation, ablation_study
from circuits.discovery.circuit_run import CircuitRun, Head, circuit_run, task_items
from circuits.discovery.methods import DiscoveryOptions, method, method_names
from circuits.discovery.tasks import task_names
from probe.errors import InputError
from probe.models import LoadedModel

from apps.heads_dashboard.callback_tools import shown_errors
from apps.heads_dashboard.figures import head_grid_figure, message_figure
from apps.heads_dashboard.layout import MESSAGE, PANEL, ROW
from apps.heads_dashboard.panels.rhythm import Box, whole_number
from apps.heads_dashboard.state import LRUCache, ModelNotReady
from apps.heads_dashboard.workbench import Workbench

DEFAULT_ITEMS, MAX_ITEMS = 16, 512
DEFAULT_K = 8
MAX_SEED = 2**31 - 1
EDGES_TICKED = "sae"
"""The edge checkbox's value when ticked."""

NODE_SIZE = (22.0, 60.0)
EDGE_WIDTH = (1.0, 9.0)
SPACING = 90
"""Pixels between neighbouring heads (x) and layers (y) of the graph's preset layout."""


class CID:
    """The panel's component ids (prefixed, so they cannot collide with the page's ids)."""

    TASK = "circuits-task"
    METHOD = "circuits-method"
    ITEMS = "circuits-items"
    K = "circuits-k"
    SEED = "circuits-seed"
    EDGES = "circuits-sae-edges"
    RUN = "circuits-run"
    ABLATE = "circuits-ablate"
    CANCEL = "circuits-cancel"
    MESSAGE = "circuits-message"
    BEHAVIOUR = "circuits-behaviour"
    SCORES = "circuits-scores"
    GRAPH_BOX = "circuits-graph-box"
    GRAPH = "circuits-graph"
    EDGE_SOURCE = "circuits-edge-source"
    CIRCUIT = "circuits-circuit"
    CIRCUIT_LINE = "circuits-circuit-line"
    ABLATION = "circuits-ablation"
    ABLATION_MESSAGE = "circuits-ablation-message"


# --- reading the widgets -------------------------------------------------------------------


@dataclass(frozen=True)
class CircuitRequest:
    """The panel's widgets, checked."""

    task: str
    method: str
    n_items: int
    k: int
    seed: int
    sae_edges: bool

    @classmethod
    def from_ui(cls, task: str | None, method_name: str | None, n_items: Box, k: Box, seed: Box = 0,
                edges: list | None = None) -> "CircuitRequest":
        """Read the widgets; the first bad one raises :class:`InputError` naming it and the fix."""
        if task not in task_names():
            raise InputError(f"unknown task {task!r}; choose one of {', '.join(task_names())}")
        method(method_name or "")
        return cls(task=task, method=method_name, n_items=whole_number(n_items, "items", 1, MAX_ITEMS),
                   k=whole_number(k, "circuit size k", 1, 10_000), seed=whole_number(seed, "seed", 0, MAX_SEED),
                   sae_edges=EDGES_TICKED in (edges or []))

    def options(self, base: DiscoveryOptions) -> DiscoveryOptions:
        """``base`` with this request's seed for the SAE."""
        return dataclasses.replace(base, sae=dataclasses.replace(base.sae, seed=self.seed))


# --- the model work ------------------------------------------------------------------------


class CircuitsBench:
    """Discovery runs and ablations for the panel, under the model holder's lock (per process: each job has its own), cached.

    Args:
        workbench: the app's workbench (its model holder and lock).
        options: the discovery options (batch size, SAE training); the panel's seed replaces the SAE's.
        entries: results kept in the cache.
    """

    def __init__(self, workbench: Workbench, options: DiscoveryOptions | None = None, entries: int = 8):
        self.workbench = workbench
        self.options = options or DiscoveryOptions()
        self.cache: LRUCache[CircuitRun | AblationStudy] = LRUCache(entries)

    def model(self) -> LoadedModel:
        if self.workbench.holder is None:
            raise ModelNotReady("this dashboard runs without a model; the circuits panel needs one")
        return self.workbench.holder.get()

    def run(self, model: LoadedModel, request: CircuitRequest) -> CircuitRun:
        """The circuit of ``request`` (the task is tokenized and ``k`` checked before the lock)."""
        contrast, summary = task_items(model, request.task, request.n_items)
        heads = model.geometry.n_layers * model.geometry.n_heads
        if request.k > heads:
            raise InputError(f"the circuit size k ({request.k}) exceeds the model's {heads} heads; lower k")
        options = request.options(self.options)
        key = (model.name, "run", request, options)

        def compute() -> CircuitRun:
            return circuit_run(model, contrast, request.method, request.k, sae_edges=request.sae_edges,
                               options=options, task_summary=summary)

        return self.cache.get_or_compute(key, compute, self.workbench.holder.lock)

    def ablation(self, model: LoadedModel, circuit: dict, seed: int) -> AblationStudy:
        """Mean ablation of a stored circuit (see :func:`circuit_store`), its complement and a random control."""
        contrast, _ = task_items(model, circuit["task"], circuit["n_items"])
        heads = tuple(tuple(h) for h in circuit["heads"])
        key = (model.name, "ablation", circuit["task"], circuit["n_items"], heads, seed, self.options.batch_size)

        def compute() -> AblationStudy:
            return ablation_study(model, contrast, heads, mode="mean", seed=seed, batch_size=self.options.batch_size)

        return self.cache.get_or_compute(key, compute, self.workbench.holder.lock)


# --- what is shown -------------------------------------------------------------------------


def head_name(head: Head) -> str:
    return f"L{head[0]}.H{head[1]}"


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.0%}"


def _cell_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> html.Table:
    cell = {"padding": "2px 10px", "borderBottom": "1px solid #eee", "textAlign": "left"}
    return html.Table([html.Thead(html.Tr([html.Th(h, style=cell) for h in header])),
                       html.Tbody([html.Tr([html.Td(v, style=cell) for v in row]) for row in rows])])


def behaviour_view(run: CircuitRun) -> html.Div:
    """Accuracy, logit differences and wrong items on the task, with the items kept."""
    b = run.behaviour
    n = len(b.clean_top)
    rows = [("answer is the top token", _percent(b.accuracy)),
            ("answer beats the contrast", _percent(b.pairwise_accuracy)),
            ("clean prompts it gets wrong", f"{len(b.wrong)} of {n}"),
            ("mean logit difference, clean", f"{b.mean_clean_logit_diff:+.3f}"),
            ("mean logit difference, corrupted", f"{b.mean_corrupted_logit_diff:+.3f}")]
    note = [html.Div(run.task_summary, style={"color": "#555"})] if run.task_summary else []
    if b.wrong and len(b.wrong) * 2 >= n:
        note.append(html.Div("the model gets half or more of the clean prompts wrong: its circuit for this task may be "
                             "noise", style={"color": "#b00020"}))
    return html.Div([html.B(f"behaviour on {run.task} ({n} items)"), _cell_table(("", ""), rows), *note])


def scores_figure(run: CircuitRun) -> go.Figure:
    """The method's scores as a layers x heads heatmap, the circuit's heads framed in red."""
    n_layers = run.shape[0]
    fig = head_grid_figure(run.scores.scores.float(), list(range(n_layers)), f"{run.method} score")
    for layer, head in run.circuit:
        fig.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                      line=dict(color="red", width=2))
    fig.update_layout(clickmode="none")
    return fig


def _scaled(value: float, largest: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * (value / largest if largest > 0 else 0.5)


def circuit_elements(run: CircuitRun) -> list[dict]:
    """Cytoscape elements: one node per circuit head at (head, layer), sized by ``|score|``, and one
    edge per co-occurring pair, as wide as its count."""
    largest = max((abs(run.score(h)) for h in run.circuit), default=0.0)
    nodes = [{"data": {"id": head_name(h), "label": f"{head_name(h)}\n{run.score(h):.3g}", "score": run.score(h),
                       "layer": h[0], "head": h[1], "size": _scaled(abs(run.score(h)), largest, NODE_SIZE)},
              "position": {"x": h[1] * SPACING, "y": h[0] * SPACING}} for h in run.circuit]
    heaviest = max((e.weight for e in run.edges), default=0)
    edges = [{"data": {"id": f"{head_name(e.source)}-{head_name(e.target)}", "source": head_name(e.source),
                       "target": head_name(e.target), "weight": e.weight,
                       "width": _scaled(e.weight, heaviest, EDGE_WIDTH)}} for e in run.edges]
    return nodes + edges


STYLESHEET = [
    {"selector": "node", "style": {"width": "data(size)", "height": "data(size)", "label": "data(label)",
                                   "text-wrap": "wrap", "text-valign": "center", "font-size": 10,
                                   "background-color": "#6a8fd0", "color": "#111"}},
    {"selector": "edge", "style": {"width": "data(width)", "line-color": "#c88", "opacity": 0.8,
                                   "label": "data(weight)", "font-size": 9, "color": "#844"}},
]


def circuit_graph(run: CircuitRun | None = None) -> cyto.Cytoscape:
    """The circuit as a graph (layer down, head across); empty before the first run."""
    return cyto.Cytoscape(id=CID.GRAPH, elements=circuit_elements(run) if run is not None else [],
                          layout={"name": "preset", "fit": True, "padding": 30}, stylesheet=STYLESHEET,
                          style={"width": "100%", "height": "420px", "border": "1px solid #eee"},
                          userZoomingEnabled=True, userPanningEnabled=True)


def edge_note(run: CircuitRun) -> str:
    """Which edges the graph shows, in words."""
    if run.edge_source == "none":
        return (f"no edges: {run.method} scores heads only; tick 'edges from SAE codes' to draw SAE code "
                "co-occurrence between the circuit's heads")
    where = "the method's own SAE" if run.edge_source == "method" else "an SAE trained for the edges"
    shown = (f"{len(run.edges)} edges" if run.edges else "no edge: no two circuit heads share a code pair seen on "
             "clean prompts only")
    return (f"edges: SAE code co-occurrence between circuit heads (code pairs seen together on some clean prompt and "
            f"on no corrupted one), from {where}; width by count; {shown}")


def circuit_line(run: CircuitRun) -> str:
    """The circuit's heads with their scores."""
    heads = ", ".join(f"{head_name(h)} ({run.score(h):.3g})" for h in run.circuit)
    ties = ""
    cut = abs(run.score(run.circuit[-1]))
    tied = int((run.scores.scores.abs() == cut).sum()) - sum(abs(run.score(h)) == cut for h in run.circuit)
    if tied:
        ties = f"; {tied} more heads tie with the last one and were left out"
    return (f"circuit: the top {len(run.circuit)} heads by |{run.method} score|: {heads}{ties} "
            f"({run.scores.seconds:.1f} s, {run.scores.forwards} forwards)")


def circuit_store(run: CircuitRun, n_items: int) -> dict:
    """What the ablate button needs (kept in the browser)."""
    return {"model": run.model, "task": run.task, "method": run.method, "n_items": n_items,
            "heads": [list(h) for h in run.circuit]}


def _ablation_row(label: str, result: CircuitAblation) -> tuple[str, ...]:
    return (label, str(result.n_heads), f"{result.clean_logit_diff:+.3f} → {result.ablated_logit_diff:+.3f}",
            f"{_percent(result.clean_accuracy)} → {_percent(result.ablated_accuracy)}", _percent(result.gap_lost))


def ablation_table(study: AblationStudy, circuit: dict) -> html.Div:
    """Logit difference and accuracy before and after ablating the circuit, its complement and a control."""
    k = study.circuit.n_heads
    rows = [_ablation_row("the circuit", study.circuit),
            _ablation_row("every other head (circuit kept alone)", study.complement),
            _ablation_row(f"{k} random heads (seed {study.seed})", study.random)]
    caption = (f"mean ablation on {study.circuit.n_items} items of {circuit['task']}, circuit from {circuit['method']}: "
               f"{', '.join(head_name(tuple(h)) for h in circuit['heads'])}; corrupted logit difference "
               f"{study.circuit.corrupted_logit_diff:+.3f}; gap lost = (clean - ablated) / (clean - corrupted)")
    return html.Div([html.Div(caption, style={"color": "#555"}),
                     _cell_table(("ablated", "heads", "logit difference", "accuracy (top token)", "gap lost"), rows)])


@shown_errors(n_figures=1, n_blank=5)
def circuits_view(bench: CircuitsBench, task: str | None, method_name: str | None, n_items: Box = DEFAULT_ITEMS,
                  k: Box = DEFAULT_K, seed: Box = 0, edges: list | None = None):
    """(scores figure, behaviour, graph, edge note, circuit line, stored circuit, message)."""
    request = CircuitRequest.from_ui(task, method_name, n_items, k, seed, edges)
    model = bench.model()
    run = bench.run(model, request)
    return (scores_figure(run), behaviour_view(run), circuit_graph(run), edge_note(run), circuit_line(run),
            circuit_store(run, request.n_items), "")


@shown_errors(n_figures=0, n_blank=1)
def ablation_view(bench: CircuitsBench, circuit: dict | None, seed: Box = 0):
    """(ablation table, message) for the circuit of the last run."""
    if not circuit:
        raise InputError("press run first: the ablation needs a circuit")
    seed = whole_number(seed, "seed", 0, MAX_SEED)
    model = bench.model()
    if circuit.get("model") != model.name:
        raise InputError(f"the circuit was found on {circuit.get('model')!r}, not {model.name!r}; press run again")
    return ablation_table(bench.ablation(model, circuit, seed), circuit), ""


# --- layout and wiring ---------------------------------------------------------------------


def _number(component_id: str, label: str, value, **limits) -> list:
    return [html.Label(label, htmlFor=component_id),
            dcc.Input(id=component_id, type="number", value=value, debounce=True,
                      style={"width": "70px", "margin": "0 14px 0 4px"}, **limits)]


def method_options() -> list[dict]:
    """The method menu: each registered method with its one-line summary."""
    return [{"label": f"{name}: {method(name).summary}", "value": name} for name in method_names()]


def panel() -> html.Div:
    """The panel's section of the page."""
    tasks = task_names()
    return html.Div([
        html.H4("Circuits", style={"margin": "2px 0 4px"}),
        html.Div("Score every head on a task's clean/corrupted contrast with one discovery method, keep the top k heads "
                 "as the circuit, and ablate it. The method runs on the first n items of the task.",
                 style={"color": "#555", "marginBottom": "6px"}),
        html.Div([html.Label("task", htmlFor=CID.TASK),
                  dcc.Dropdown(id=CID.TASK, options=list(tasks), value="ioi" if "ioi" in tasks else tasks[0],
                               clearable=False, style={"width": "180px", "margin": "0 14px 0 4px"}),
                  html.Label("method", htmlFor=CID.METHOD),
                  dcc.Dropdown(id=CID.METHOD, options=method_options(), value="eap", clearable=False,
                               style={"width": "520px", "margin": "0 14px 0 4px"})],
                 style={**ROW, "alignItems": "center"}),
        html.Div([*_number(CID.ITEMS, "items", DEFAULT_ITEMS, min=1, max=MAX_ITEMS, step=1),
                  *_number(CID.K, "circuit size k", DEFAULT_K, min=1, step=1),
                  *_number(CID.SEED, "seed", 0, min=0, max=MAX_SEED, step=1),
                  dcc.Checklist(id=CID.EDGES, options=[{"label": " edges from SAE codes (extra time)",
                                                        "value": EDGES_TICKED}], value=[],
                                style={"marginRight": "14px"}),
                  html.Button("run", id=CID.RUN, n_clicks=0, style={"marginRight": "10px"}),
                  html.Button("ablate circuit", id=CID.ABLATE, n_clicks=0, style={"marginRight": "10px"}),
                  html.Button("cancel", id=CID.CANCEL, n_clicks=0, disabled=True)],
                 style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div(id=CID.MESSAGE, style=MESSAGE),
        dcc.Store(id=CID.CIRCUIT),
        dcc.Loading(html.Div([
            html.Div([dcc.Graph(id=CID.SCORES, figure=message_figure("choose a task and a method, then press run"))],
                     style={"flex": "1 1 420px"}),
            html.Div([html.Div(id=CID.GRAPH_BOX, children=circuit_graph()),
                      html.Div(id=CID.EDGE_SOURCE, style={"color": "#555"})], style={"flex": "1 1 420px"}),
        ], style=ROW)),
        html.Div(id=CID.BEHAVIOUR, style={"marginTop": "6px"}),
        html.Div(id=CID.CIRCUIT_LINE, style={"color": "#333", "marginTop": "6px"}),
        html.Div(id=CID.ABLATION_MESSAGE, style=MESSAGE),
        dcc.Loading(html.Div(id=CID.ABLATION)),
    ], style=PANEL)


def register_callbacks(app: Dash, workbench: Workbench, options: DiscoveryOptions | None = None) -> None:
    """Wire the run button to :func:`circuits_view` and the ablate button to :func:`ablation_view`."""
    bench = CircuitsBench(workbench, options, workbench.settings.cache_entries)
    busy = [(Output(CID.RUN, "disabled"), True, False), (Output(CID.ABLATE, "disabled"), True, False),
            (Output(CID.CANCEL, "disabled"), False, True)]
    cancel = [Input(CID.CANCEL, "n_clicks")]

    @app.callback(Output(CID.SCORES, "figure"), Output(CID.BEHAVIOUR, "children"), Output(CID.GRAPH_BOX, "children"),
                  Output(CID.EDGE_SOURCE, "children"), Output(CID.CIRCUIT_LINE, "children"), Output(CID.CIRCUIT, "data"),
                  Output(CID.MESSAGE, "children"),
                  Input(CID.RUN, "n_clicks"), State(CID.TASK, "value"), State(CID.METHOD, "value"),
                  State(CID.ITEMS, "value"), State(CID.K, "value"), State(CID.SEED, "value"), State(CID.EDGES, "value"),
                  running=busy, cancel=cancel, background=True, interval=workbench.settings.job_poll_ms, prevent_initial_call=True)
    def _run(_clicks, task, method_name, n_items, k, seed, edges):
        workbench.enter_job()
        return circuits_view(bench, task, method_name, n_items, k, seed, edges)

    @app.callback(Output(CID.ABLATION, "children"), Output(CID.ABLATION_MESSAGE, "children"),
                  Input(CID.ABLATE, "n_clicks"), State(CID.CIRCUIT, "data"), State(CID.SEED, "value"),
                  running=busy, cancel=cancel, background=True, interval=workbench.settings.job_poll_ms, prevent_initial_call=True)
    def _ablate(_clicks, circuit, seed):
        workbench.enter_job()
        return ablation_view(bench, circuit, seed)
