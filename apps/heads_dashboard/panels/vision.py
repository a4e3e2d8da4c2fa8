"""The vision panel: where a vision-language model's heads look in an image, and what an edit
does to its caption.

Context (issue 25):
    For one image (a synthetic-world scene by split and index, or an uploaded file) and a
    prompt, the panel shows

    - the selected head's attention from the last prompt position to the image tokens, laid on
      the patch grid (8 x 8 for synth-llava) over the image as the model's processor cropped it,
      or the layer's mean over heads; under PAINT (or its control) the tokens it boosts are framed;
    - every head's attention mass on the image there (``span_mass``), layers x heads; a click
      selects the head;
    - VHD of every head (He et al. 2025, :mod:`circuits.vision.vhd`), Eq. 6 outliers crossed out;
    - the greedy caption before and after the chosen edit (image-key bias, head scaling, VHR,
      PAINT, or their random controls), object words marked with the world's CHAIR vocabulary: against the
      scene's ground truth (world scenes) and against the other caption (words the edit changed).

    The computation lives in :mod:`.vision_bench` (its own VLM, loaded on first use, its own lock,
    cached results), the figures in :mod:`.vision_figures` (pure), the inputs in
    :mod:`.vision_sources`. The run callback checks every widget before the model is touched and
    stores the result under a run id; the draw callback only redraws it for the selected head.
    Errors show once, in the panel's message line.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from dash import Dash, Input, Output, State, dcc, html, no_update

from circuits.hallucination.chair import ChairVocabulary
from circuits.vision.item_sets import world_vocabulary
from circuits.vision.world import SPLITS
from probe.errors import InputError
from probe.models import LoadedModel

from apps.heads_dashboard.callback_tools import USER_ERRORS
from apps.heads_dashboard.callbacks import head_from_click
from apps.heads_dashboard.figures import message_figure
from apps.heads_dashboard.layout import MESSAGE, PANEL, ROW
from apps.heads_dashboard.panels.rhythm import Box, whole_number
from apps.heads_dashboard.panels.vision_bench import (EDITS, EditParams, HeadDivergence, ImageAttention, VisionBench,
                                                      VisionEdit, VisionModels, vision_edit)
from apps.heads_dashboard.panels.vision_figures import (Piece, caption_pieces, caption_summary, overlay_figure,
                                                        overlay_title, patch_boxes, patch_grid, span_mass_figure,
                                                        vhd_figure)
from apps.heads_dashboard.panels.vision_sources import (DEFAULT_PROMPT, MAX_UPLOAD_BYTES, UPLOAD, WORLD, ImageSource,
                                                        as_seen, check_prompt, image_source)
from apps.heads_dashboard.state import LRUCache
from apps.heads_dashboard.workbench import Workbench

log = logging.getLogger(__name__)
MEAN_TICKED = "mean"
PRESENT, ABSENT, UNKNOWN = "#c8e6c9", "#ffcdd2", "#e3e3e3"


class VID:
    """The panel's component ids (prefixed, so they cannot collide with the page's ids)."""

    SOURCE = "vision-source"
    SPLIT = "vision-split"
    INDEX = "vision-index"
    UPLOAD = "vision-upload"
    UPLOAD_NAME = "vision-upload-name"
    PROMPT = "vision-prompt"
    RUN = "vision-run"
    EDIT = "vision-edit"
    BIAS = "vision-bias"
    EDIT_LAYERS = "vision-edit-layers"
    EDIT_HEADS = "vision-edit-heads"
    FACTOR = "vision-factor"
    ALPHA = "vision-alpha"
    LAYER = "vision-layer"
    HEAD = "vision-head"
    MEAN = "vision-mean"
    MESSAGE = "vision-message"
    INFO = "vision-info"
    RESULT = "vision-result"
    OVERLAY = "vision-overlay"
    SPAN = "vision-span"
    VHD = "vision-vhd"
    CAPTIONS = "vision-captions"


@functools.lru_cache(maxsize=1)
def world_chair() -> ChairVocabulary:
    """The synthetic world's CHAIR vocabulary (its 36 categories)."""
    return ChairVocabulary.from_lists(world_vocabulary(), source="the world's CHAIR vocabulary")


@dataclass(frozen=True)
class VisionResult:
    """One run: what the draw callback and the captions view need."""

    model: str
    label: str
    hint: str
    image: np.ndarray
    attention: ImageAttention
    divergence: HeadDivergence
    before: str
    after: str | None
    edit: str
    truth: frozenset[str] | None
    marks: tuple = ()


# --- the two callbacks' pure parts ---------------------------------------------------------


@dataclass(frozen=True)
class VisionRequest:
    """The panel's widgets, read and checked (the upload decoded, the scene drawn)."""

    source: ImageSource
    prompt: str
    edit: VisionEdit
    params: EditParams

    @classmethod
    def from_ui(cls, kind, split, index, contents, filename, prompt, edit_name, bias, layers_text, heads_text,
                factor, alpha) -> "VisionRequest":
        """The first bad widget raises :class:`InputError` naming it and the fix."""
        prompt = check_prompt(prompt)
        edit = vision_edit(edit_name)
        params = EditParams.from_ui(bias, layers_text, heads_text, factor, alpha)
        edit.check(params)
        return cls(image_source(kind, split, index, contents, filename), prompt, edit, params)

    @property
    def key(self) -> str:
        """The run's id in the result cache."""
        text = repr((self.source.key, self.prompt, self.edit.key(self.params)))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def compute_result(bench: VisionBench, model: LoadedModel, request: VisionRequest) -> VisionResult:
    """Everything one run shows (cached pieces computed under the VLM's lock)."""
    g = model.geometry
    request.params.check(g.n_layers, g.n_heads)
    source, prompt, edit = request.source, request.prompt, request.edit
    attention = bench.attention(model, source, prompt)
    divergence = bench.divergence(model, source, prompt)
    before = bench.caption(model, source, prompt, EDITS["none"], request.params)
    after = None if edit.name == "none" else bench.caption(model, source, prompt, edit, request.params)
    hint = f"{source.hint()} · {attention.n_tokens} tokens · {model.name}"
    return VisionResult(model.name, source.label, hint, as_seen(source.image, model.processor.image_processor),
                        attention, divergence, before, after, edit.describe(request.params), source.truth,
                        bench.marks(model, source, edit))


def run_view(bench: VisionBench, results: LRUCache, *widgets):
    """(captions, info line, run id, message) for the widgets' values (in :meth:`VisionRequest.from_ui`'s
    order); they are read and checked before the model is asked for."""
    try:
        request = VisionRequest.from_ui(*widgets)
        model = bench.models.get()
        result = compute_result(bench, model, request)
    except USER_ERRORS as err:
        return "", "", None, str(err)
    except Exception as err:  # noqa: BLE001 - the UI boundary: report, keep serving
        log.exception("vision run failed")
        return "", "", None, f"internal error ({type(err).__name__}: {err}); details are in the server log"
    key = f"{model.name}:{request.key}"
    results.put(key, result)
    return captions_view(result), result.hint, key, ""


def selected_head(result: VisionResult, layer: Box, head: Box, mean: bool) -> tuple[int, int | None]:
    n_layers, n_heads = result.attention.mass.shape
    layer = whole_number(layer, "layer", 0, n_layers - 1)
    return layer, None if mean else whole_number(head, "head", 0, n_heads - 1)


def draw_view(results: LRUCache, key: str | None, layer: Box, head: Box, mean: list | None):
    """(overlay, span-mass heatmap, VHD heatmap, message) of the stored run for the selected head."""
    if not key:
        blank = message_figure("choose an image and a prompt, then press run")
        return blank, blank, blank, no_update
    result = results.get(key)
    if result is None:
        blank = message_figure("this result left the cache; press run again")
        return blank, blank, blank, "this result left the cache; press run again"
    try:
        chosen_layer, chosen_head = selected_head(result, layer, head, MEAN_TICKED in (mean or []))
    except InputError as err:
        blank = message_figure(str(err))
        return blank, span_mass_figure(result.attention.mass), vhd_figure(result.divergence.vhd), str(err)
    return (*result_figures(result, chosen_layer, chosen_head), "")


def result_figures(result: VisionResult, layer: int, head: int | None):
    """(overlay, span mass, VHD) figures for ``layer`` and ``head`` (None: the layer's mean)."""
    attention = result.attention
    values = attention.to_image[layer].mean(0) if head is None else attention.to_image[layer, head]
    mass = float(attention.mass[layer].mean() if head is None else attention.mass[layer, head])
    selected = None if head is None else (layer, head)
    grid = patch_grid(values)
    overlay = overlay_figure(result.image, grid, overlay_title(layer, head, mass))
    for name, colour, patches in result.marks:
        patch_boxes(overlay, patches, grid.shape, (result.image.shape[1], result.image.shape[0]), colour, name)
    if result.marks:
        overlay.update_layout(legend=dict(orientation="h", y=-0.02))
    return (overlay, span_mass_figure(attention.mass, selected),
            vhd_figure(result.divergence.vhd, result.divergence.outliers, selected))


# --- captions ------------------------------------------------------------------------------


def piece_spans(pieces: list[Piece]) -> list:
    """Caption pieces as spans: object words coloured by ground truth, underlined where the edit changed them."""
    spans = []
    for text, mark in pieces:
        if mark is None:
            spans.append(html.Span(text))
            continue
        colour = UNKNOWN if mark.hallucinated is None else ABSENT if mark.hallucinated else PRESENT
        state = {None: "no ground truth", True: "not in the image", False: "in the image"}[mark.hallucinated]
        style = {"background": colour, "padding": "0 2px", "borderRadius": "3px"}
        if mark.changed:
            style |= {"fontWeight": "bold", "textDecoration": "underline"}
        spans.append(html.Span(text, title=f"{mark.category}: {state}" + ("; only in this caption" if mark.changed else ""),
                               className="vision-object" + (" vision-changed" if mark.changed else ""), style=style))
    return spans


def captions_view(result: VisionResult) -> html.Div:
    """Before and after side by side, object words marked; then a summary line."""
    vocabulary = world_chair()
    after = result.after if result.after is not None else result.before
    column = {"flex": "1 1 320px", "padding": "6px", "border": "1px solid #eee", "margin": "2px",
              "fontSize": "15px", "lineHeight": "1.7em"}
    boxes = [html.Div([html.Div("before (no edit)", style={"color": "#555"}),
                       html.Div(piece_spans(caption_pieces(result.before, after, vocabulary, result.truth)),
                                id="vision-caption-before")], style=column)]
    if result.after is not None:
        boxes.append(html.Div([html.Div(f"after: {result.edit}", style={"color": "#555"}),
                               html.Div(piece_spans(caption_pieces(result.after, result.before, vocabulary,
                                                                   result.truth)), id="vision-caption-after")],
                              style=column))
    notes = []
    if result.truth is not None:
        notes.append(f"in the image: {', '.join(sorted(result.truth))}")
    if result.after is not None:
        notes.append(caption_summary(result.before, result.after, vocabulary, result.truth))
    else:
        notes.append("choose an edit to compare captions")
    legend = (f"object words: green in the image, red not in it, grey no ground truth; bold underlined: only in "
              f"one caption")
    return html.Div([html.Div(boxes, style=ROW), html.Div("; ".join(notes), style={"color": "#333"}),
                     html.Div(legend, style={"color": "#777", "fontSize": "12px"})])


# --- layout and wiring ---------------------------------------------------------------------


def _box(component_id: str, label: str, value, width: str = "70px", **kwargs) -> list:
    return [html.Label(label, htmlFor=component_id),
            dcc.Input(id=component_id, value=value, debounce=True, style={"width": width, "margin": "0 12px 0 4px"},
                      **kwargs)]


def panel() -> html.Div:
    """The panel's section of the page."""
    edits = [{"label": edit.label, "value": name} for name, edit in EDITS.items()]
    return html.Div([
        html.H4("Vision", style={"margin": "2px 0 4px"}),
        html.Div("A vision-language model's heads on one image: where the last prompt token looks in the image, how much "
                 "each head looks at it, VHD, and the caption before and after an edit. The panel loads its own model "
                 "on the first run.", style={"color": "#555", "marginBottom": "6px"}),
        html.Div([
            dcc.RadioItems(id=VID.SOURCE, options=[{"label": " world scene ", "value": WORLD},
                                                   {"label": " uploaded image ", "value": UPLOAD}],
                           value=WORLD, inline=True, style={"marginRight": "12px"}),
            dcc.Dropdown(id=VID.SPLIT, options=list(SPLITS), value="heldout", clearable=False,
                         style={"width": "120px", "marginRight": "8px"}),
            *_box(VID.INDEX, "index", 0, type="number", min=0, step=1),
            dcc.Upload(id=VID.UPLOAD, children=html.Div(f"drop or choose an image (PNG or JPEG, up to "
                                                        f"{MAX_UPLOAD_BYTES // 2**20} MB)"),
                       multiple=False, style={"border": "1px dashed #999", "padding": "4px 10px", "borderRadius": "4px",
                                              "cursor": "pointer", "marginRight": "8px"}),
            html.Span(id=VID.UPLOAD_NAME, style={"color": "#555"}),
        ], style={**ROW, "alignItems": "center"}),
        html.Div([*_box(VID.PROMPT, "prompt", DEFAULT_PROMPT, width="340px", type="text"),
                  html.Button("run", id=VID.RUN, n_clicks=0)], style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div([html.Label("edit", htmlFor=VID.EDIT),
                  dcc.Dropdown(id=VID.EDIT, options=edits, value="none", clearable=False,
                               style={"width": "230px", "margin": "0 12px 0 4px"}),
                  *_box(VID.BIAS, "bias", 1.0, type="number", step=0.1),
                  *_box(VID.EDIT_LAYERS, "in layers", "8-15", width="90px", type="text"),
                  *_box(VID.EDIT_HEADS, "heads", "", width="120px", type="text", placeholder="e.g. 20.3, 25.1"),
                  *_box(VID.FACTOR, "x", 0.0, type="number", step=0.1),
                  *_box(VID.ALPHA, "VHR alpha", 2.0, type="number", step=0.1)],
                 style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div([*_box(VID.LAYER, "layer", 14, type="number", min=0, step=1),
                  *_box(VID.HEAD, "head", 0, type="number", min=0, step=1),
                  dcc.Checklist(id=VID.MEAN, options=[{"label": " mean over heads", "value": MEAN_TICKED}], value=[]),
                  html.Span("(or click a cell of the mass heatmap)", style={"color": "#777", "marginLeft": "8px"})],
                 style={**ROW, "alignItems": "center", "marginTop": "6px"}),
        html.Div(id=VID.MESSAGE, style=MESSAGE),
        html.Div(id=VID.INFO, style={"color": "#555"}),
        dcc.Store(id=VID.RESULT),
        dcc.Loading(html.Div([
            html.Div(dcc.Graph(id=VID.OVERLAY, figure=message_figure("choose an image and a prompt, then press run")),
                     style={"flex": "1 1 420px"}),
            html.Div(dcc.Graph(id=VID.SPAN, figure=message_figure("attention mass on the image")), style={"flex": "1 1 360px"}),
            html.Div(dcc.Graph(id=VID.VHD, figure=message_figure("VHD")), style={"flex": "1 1 360px"}),
        ], style=ROW)),
        dcc.Loading(html.Div(id=VID.CAPTIONS, style={"marginTop": "6px"})),
    ], style=PANEL)


def register_callbacks(app: Dash, workbench: Workbench, models: VisionModels | None = None) -> None:
    """Wire run (compute and store), the head selection (redraw) and the mass heatmap's clicks."""
    settings = workbench.settings
    models = models or VisionModels(settings.vision_model)
    bench = VisionBench(models, settings.cache_entries)
    results: LRUCache[VisionResult] = LRUCache(settings.cache_entries)

    @app.callback(Output(VID.CAPTIONS, "children"), Output(VID.INFO, "children"), Output(VID.RESULT, "data"),
                  Output(VID.MESSAGE, "children"),
                  Input(VID.RUN, "n_clicks"), State(VID.SOURCE, "value"), State(VID.SPLIT, "value"),
                  State(VID.INDEX, "value"), State(VID.UPLOAD, "contents"), State(VID.UPLOAD, "filename"),
                  State(VID.PROMPT, "value"), State(VID.EDIT, "value"), State(VID.BIAS, "value"),
                  State(VID.EDIT_LAYERS, "value"), State(VID.EDIT_HEADS, "value"), State(VID.FACTOR, "value"),
                  State(VID.ALPHA, "value"), running=[(Output(VID.RUN, "disabled"), True, False)],
                  prevent_initial_call=True)
    def _run(_clicks, kind, split, index, contents, filename, prompt, edit_name, bias, layers_text, heads_text,
             factor, alpha):
        return run_view(bench, results, kind, split, index, contents, filename, prompt, edit_name, bias, layers_text,
                        heads_text, factor, alpha)

    @app.callback(Output(VID.OVERLAY, "figure"), Output(VID.SPAN, "figure"), Output(VID.VHD, "figure"),
                  Output(VID.MESSAGE, "children", allow_duplicate=True),
                  Input(VID.RESULT, "data"), Input(VID.LAYER, "value"), Input(VID.HEAD, "value"),
                  Input(VID.MEAN, "value"), prevent_initial_call=True)
    def _draw(key, layer, head, mean):
        return draw_view(results, key, layer, head, mean)

    @app.callback(Output(VID.LAYER, "value"), Output(VID.HEAD, "value"), Input(VID.SPAN, "clickData"),
                  prevent_initial_call=True)
    def _click(click):
        return head_from_click(click)

    @app.callback(Output(VID.UPLOAD_NAME, "children"), Output(VID.SOURCE, "value"), Input(VID.UPLOAD, "filename"),
                  prevent_initial_call=True)
    def _uploaded(filename):
        return (f"uploaded: {filename}", UPLOAD) if filename else ("", no_update)
