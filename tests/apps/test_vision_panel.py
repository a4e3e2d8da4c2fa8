"""The vision panel without a browser: its pure figures, caption marking, inputs (uploads, scenes,
edits) and the callbacks' pure parts on a tiny random LLaVA (3 layers x 6 heads, 30-pixel images
in 6-pixel patches: a 5 x 5 grid of image tokens).

The model-backed tests check the panel's numbers against direct computations: the overlay's grid
is the capture's pattern row at the last position over the image tokens, its mass is ``span_mass``,
the VHD view is :func:`circuits.vision.vhd.prompt_set_vhd` on the one pair, and the captions are
:func:`generate_answers` without and under the edit.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import no_update
from PIL import Image

from apps.heads_dashboard.app import create_app
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.panels.vision import (VID, VisionRequest, captions_view, draw_view, piece_spans, run_view,
                                                world_chair)
from apps.heads_dashboard.panels.vision_bench import (EDITS, EditParams, VisionBench, VisionModels, parse_layers,
                                                      vision_edit)
from apps.heads_dashboard.panels.vision_figures import (Mark, caption_pieces, caption_summary, grid_shape,
                                                        overlay_figure, overlays_figure, patch_boxes, patch_grid,
                                                        span_mass_figure, vhd_figure)
from apps.heads_dashboard.panels.vision_sources import (MAX_UPLOAD_BYTES, as_seen, check_prompt, decode_upload,
                                                        image_source, world_source)
from apps.heads_dashboard.settings import DashboardSettings
from apps.heads_dashboard.state import LRUCache, ModelNotReady
from circuits.vision.paint import paint_tokens
from circuits.vision.render import render
from circuits.vision.vhd import prompt_set_vhd
from circuits.vision.world import scene_at
from probe import CaptureConfig, capture
from probe.edits import BiasKeys, ImageKeys, apply_edits
from probe.errors import InputError
from probe.models.vlm_inputs import generate_answers
from tests.helpers import one_torch_thread
from tests.vision.tiny_vlms import tiny_vlm_loaded

PROMPT = "Describe this image."


def _data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def _png(width: int = 40, height: int = 30, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


# --- figures -------------------------------------------------------------------------------


def test_image_tokens_lay_out_as_a_square_grid_row_by_row_or_else_one_row():
    assert grid_shape(64) == (8, 8) and grid_shape(25) == (5, 5) and grid_shape(6) == (1, 6)
    with pytest.raises(ValueError):
        grid_shape(0)
    assert patch_grid(np.arange(6.0)).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert patch_grid(np.arange(4.0)).tolist() == [[0, 1], [2, 3]]


def test_overlay_covers_the_image_patch_by_patch_scaled_to_its_largest_value():
    image = np.zeros((112, 112, 3), dtype=np.uint8)
    grid = patch_grid(np.linspace(0, 0.3, 64))
    fig = overlay_figure(image, grid, "a title")
    picture, heat = fig.data
    assert isinstance(picture, go.Image) and np.asarray(picture.z).shape == (112, 112, 3)
    assert isinstance(heat, go.Heatmap) and np.asarray(heat.z).shape == (8, 8)
    assert (heat.x0, heat.dx, heat.y0, heat.dy) == (7.0, 14.0, 7.0, 14.0)  # cell (r, c) centred on patch (r, c)
    assert heat.x0 + 7 * heat.dx + heat.dx / 2 == 112
    assert heat.zmin == 0 and heat.zmax == pytest.approx(0.3) and 0 < heat.opacity < 1
    assert np.asarray(heat.z)[0, 1] == pytest.approx(grid[0, 1])  # row 0 is the top row of patches
    assert fig.layout.yaxis.range == (112, 0) and fig.layout.title.text == "a title"
    with pytest.raises(ValueError, match="height x width x 3"):
        overlay_figure(np.zeros((4, 4)), grid, "grey")


def test_several_overlays_share_a_figure_and_patch_boxes_frame_their_cells():
    image = np.zeros((112, 112, 3), dtype=np.uint8)
    grids = [patch_grid(np.full(64, v)) for v in (0.1, 0.2, 0.3)]
    fig = overlays_figure(image, grids, ["a", "b", "c"], columns=2)
    assert len(fig.data) == 6 and [a.text for a in fig.layout.annotations] == ["a", "b", "c"]
    assert fig.data[5].zmax == pytest.approx(0.3) and fig.data[5].xaxis == "x3"
    with pytest.raises(ValueError):
        overlays_figure(image, grids, ["a"])
    boxed = patch_boxes(overlay_figure(image, grids[0], "t"), [3, 9], (8, 8), (112, 112), "cyan", "local", first_token=0)
    xs, ys = boxed.data[-1].x, boxed.data[-1].y
    assert xs[:5] == (42, 56, 56, 42, 42) and ys[:5] == (0, 0, 14, 14, 0)  # token 3: row 0, col 3
    assert xs[6:11] == (14, 28, 28, 14, 14) and ys[6:11] == (14, 14, 28, 28, 14)  # token 9: row 1, col 1
    with pytest.raises(ValueError, match="outside"):
        patch_boxes(go.Figure(), [64], (8, 8), (112, 112), "red", "x")


def test_mass_and_vhd_heatmaps_frame_the_selected_head_and_cross_out_outliers():
    mass = np.arange(12.0).reshape(3, 4) / 12
    fig = span_mass_figure(mass, selected=(2, 1))
    assert np.asarray(fig.data[0].z).tolist() == mass.tolist()
    (frame,) = fig.layout.shapes
    assert (frame.x0, frame.x1, frame.y0, frame.y1) == (0.5, 1.5, 1.5, 2.5)
    outliers = np.zeros((3, 4), dtype=bool)
    outliers[1, 3] = True
    vhd = vhd_figure(mass, outliers)
    assert len(vhd.data) == 2 and list(vhd.data[1].x) == [3] and list(vhd.data[1].y) == [1]
    assert vhd.layout.yaxis.range == (2.5, -0.5)  # the markers do not widen the axes
    assert len(vhd_figure(mass, np.zeros((3, 4), dtype=bool)).data) == 1


# --- captions ------------------------------------------------------------------------------


def test_caption_object_words_are_marked_against_the_scene_and_the_other_caption():
    vocabulary = world_chair()
    before = "A small red fork, a large blue knife and a green teddy bear."
    after = "A small red fork and two green teddy bears."
    pieces = caption_pieces(before, after, vocabulary, frozenset({"fork", "teddy bear"}))
    assert "".join(text for text, _ in pieces) == before
    marks = {text: mark for text, mark in pieces if mark is not None}
    assert marks == {"fork": Mark("fork", False, False), "knife": Mark("knife", True, True),
                     "teddy bear": Mark("teddy bear", False, False)}
    other = dict((t, m) for t, m in caption_pieces(after, before, vocabulary, None) if m is not None)
    assert other == {"fork": Mark("fork", None, False), "teddy bears": Mark("teddy bear", None, False)}
    assert caption_summary(before, after, vocabulary, frozenset({"fork", "teddy bear"})) == (
        "only before: knife; only after: none; hallucinated before: knife; after: none")
    spans = piece_spans(pieces)
    knife = next(s for s in spans if s.children == "knife")
    assert "vision-changed" in knife.className and knife.title == "knife: not in the image; only in this caption"


# --- inputs --------------------------------------------------------------------------------


def test_an_uploaded_png_decodes_to_rgb_with_its_digest_as_key():
    raw = _png(mode="L")
    source = decode_upload(_data_url(raw), "grey.png")
    assert source.image.mode == "RGB" and source.image.size == (40, 30) and source.truth is None
    assert len(source.key) == 40 and source.label == "grey.png"
    assert decode_upload(_data_url(raw), "again.png").key == source.key


BAD_UPLOADS = [
    (None, "no image uploaded yet"),
    ("just text", "did not arrive as a file upload"),
    (_data_url(b"hello", "text/plain"), "is text/plain, not an image"),
    ("data:image/png;base64,@@not base64@@", "not valid base64"),
    (_data_url(b"\x89PNG but not really"), "not an image PIL can read"),
    (_data_url(_png()[:60]), "not an image PIL can read"),
    (_data_url(b"\0" * (MAX_UPLOAD_BYTES + 10)), "the limit is 5 MB"),
    (_data_url(_png(5000, 4000, "1")), "5000 x 4000 pixels"),
]


@pytest.mark.parametrize(("contents", "message"), BAD_UPLOADS, ids=[m for _, m in BAD_UPLOADS])
def test_a_bad_upload_is_one_message_naming_the_file(contents, message):
    with pytest.raises(InputError, match=message) as caught:
        decode_upload(contents, "photo.png")
    text = str(caught.value)
    assert "\n" not in text and ("photo.png" in text or contents is None)


def test_world_scenes_by_split_and_index_and_their_hints():
    source = world_source("broken", 0)
    scene = scene_at("broken", 0)
    assert source.key == "world:broken:0" and source.truth == scene.names
    assert np.array_equal(np.asarray(source.image), np.asarray(render(scene)))
    assert "planted partner absent" in source.hint() and "Is there a" in source.hint()
    for split, index, message in [("nope", 0, "unknown world split"), ("heldout", -1, "scene index"),
                                  ("heldout", "x", "scene index"), ("heldout", 1.5, "scene index")]:
        with pytest.raises(InputError, match=message):
            world_source(split, index)
    with pytest.raises(InputError, match="unknown image source"):
        image_source("camera", "heldout", 0, None, None)


def test_prompt_and_edit_widgets_are_checked():
    assert check_prompt("  Describe this image. ") == "Describe this image."
    for bad, message in [("", "the prompt is empty"), ("x" * 501, "the limit is 500")]:
        with pytest.raises(InputError, match=message):
            check_prompt(bad)
    assert parse_layers("8-10, 3") == (3, 8, 9, 10) and parse_layers(" ") is None
    for bad in ("8-", "a", "10-8"):
        with pytest.raises(InputError):
            parse_layers(bad)
    assert EditParams.from_ui(1.5, "", "L3.H1", 0, 2).heads == ((3, 1),)
    for args, message in [((float("nan"), "", "", 0, 2), "bias"), ((1, "", "", None, 2), "head factor"),
                          ((1, "", "L3", 0, 2), "L3")]:
        with pytest.raises(InputError, match=message):
            EditParams.from_ui(*args)
    with pytest.raises(InputError, match="unknown edit"):
        vision_edit("blur")
    with pytest.raises(InputError, match="head scaling needs heads"):
        VisionRequest.from_ui("world", "heldout", 0, None, None, PROMPT, "scale-heads", 1, "", "", 0, 2)
    assert {"none", "image-bias", "scale-heads", "vhr", "vhr-random", "paint", "paint-random"} <= set(EDITS)


def test_as_seen_crops_like_the_processor():
    class Processor:
        do_center_crop, size, crop_size = True, {"shortest_edge": 30}, {"height": 30, "width": 30}

    image = Image.new("RGB", (90, 60))
    assert as_seen(image, Processor()).shape == (30, 30, 3)
    assert as_seen(image, object()).shape == (60, 90, 3)


# --- the callbacks on a tiny LLaVA ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    with one_torch_thread():
        yield tiny_vlm_loaded("llava", tmp_path_factory.mktemp("llava"))


class CountingLoader:
    def __init__(self, model=None):
        self.model, self.calls = model, 0

    def __call__(self, name):
        self.calls += 1
        if self.model is None:
            raise AssertionError("the model was loaded")
        return self.model


def _bench(loader) -> tuple[VisionBench, LRUCache]:
    return VisionBench(VisionModels("tiny-llava", loader, wait_s=60)), LRUCache(4)


WIDGETS = dict(kind="world", split="broken", index=0, contents=None, filename=None, prompt=PROMPT, edit="none",
               bias=1.0, layers="1-2", heads="", factor=0.0, alpha=2.0)


def _run(bench, results, **changes):
    return run_view(bench, results, *{**WIDGETS, **changes}.values())


def test_a_run_shows_the_patterns_mass_vhd_and_captions_of_the_model(tiny_llava):
    bench, results = _bench(CountingLoader(tiny_llava))
    captions, info, key, message = _run(bench, results, edit="image-bias")
    assert message == "" and key and "world:broken:0" in info and "planted partner absent" in info
    result = results.get(key)
    image = render(scene_at("broken", 0))
    record = capture(tiny_llava, [PROMPT], CaptureConfig(mode="pattern", image_span=True), images=[image])
    positions = record.image_positions(0)
    assert len(positions) == 25 and result.attention.to_image.shape == (3, 6, 25)
    for layer in range(3):
        assert np.allclose(result.attention.to_image[layer], record.pattern(layer)[:, -1, positions].numpy(), atol=1e-6)
        assert np.allclose(result.attention.mass[layer], record.stat(layer, "span_mass")[:, -1].numpy(), atol=1e-5)
    assert np.allclose(result.attention.mass, result.attention.to_image.sum(-1), atol=1e-5)
    direct = prompt_set_vhd(tiny_llava, [PROMPT], [image])
    assert np.allclose(result.divergence.vhd, direct.per_prompt[0].numpy(), atol=1e-5)
    assert result.before == generate_answers(tiny_llava, [PROMPT], [image], max_new_tokens=48)[0]
    with apply_edits(tiny_llava, [BiasKeys(ImageKeys(), 1.0, layers=(1, 2))]):
        assert result.after == generate_answers(tiny_llava, [PROMPT], [image], max_new_tokens=48)[0]
    assert result.image.shape == (30, 30, 3) and result.edit == "image-key bias (bias 1, layers 1,2)"

    overlay, span, vhd, draw_message = draw_view(results, key, 2, 4, [])
    assert draw_message == "" and np.asarray(overlay.data[1].z).tolist() == patch_grid(result.attention.to_image[2, 4]).tolist()
    assert "layer 2, head 4" in overlay.layout.title.text and span.layout.shapes[0].x0 == 3.5
    mean = draw_view(results, key, 2, 4, ["mean"])[0]
    assert np.allclose(np.asarray(mean.data[1].z), patch_grid(result.attention.to_image[2].mean(0)))
    assert "mean over heads" in mean.layout.title.text
    assert len(results) == 1 and _run(bench, results, edit="image-bias")[2] == key  # cached: same id
    for edit in ("vhr", "paint"):
        captions, info, other, message = _run(bench, results, edit=edit)
        assert message == "" and other != key and results.get(other).attention is result.attention
    tokens = paint_tokens(tiny_llava, [image])
    local, summary = results.get(other).marks
    assert local[2] == tuple(t - tokens.offset for t in tokens.local[0]) and summary[0].startswith("PAINT summary")
    framed = draw_view(results, other, 2, 4, [])[0]
    assert [t.name for t in framed.data[2:]] == [local[0], summary[0]]
    assert results.get(key).marks == () and len(overlay.data) == 2


def test_bad_widgets_are_refused_before_the_model_is_loaded():
    loader = CountingLoader()
    bench, results = _bench(loader)
    for changes, text in [(dict(prompt="  "), "the prompt is empty"), (dict(index=-2), "scene index"),
                          (dict(kind="upload"), "no image uploaded yet"), (dict(edit="sharpen"), "unknown edit"),
                          (dict(layers="x"), "cannot read layers"), (dict(contents="oops", kind="upload"), "upload it again"),
                          (dict(edit="scale-heads"), "head scaling needs heads")]:
        captions, info, key, message = _run(bench, results, **changes)
        assert (captions, info, key) == ("", "", None) and text in message
    assert loader.calls == 0


def test_heads_and_layers_outside_the_model_are_refused_before_a_forward(tiny_llava):
    bench, results = _bench(CountingLoader(tiny_llava))
    assert "layer 7 does not exist" in _run(bench, results, edit="image-bias", layers="7")[3]
    assert "head L1.H9 does not exist" in _run(bench, results, edit="scale-heads", heads="1.9")[3]
    assert len(bench.cache) == 0
    key = _run(bench, results)[2]
    assert "head must be a whole number from 0 to 5" in draw_view(results, key, 1, 6, [])[3]
    assert draw_view(results, None, 0, 0, [])[3] is no_update
    assert "press run again" in draw_view(results, "gone", 0, 0, [])[3]


def test_a_text_model_or_a_failed_load_is_a_message(tiny_llava):
    from tests.apps.conftest import tiny_model

    assert "not a vision-language model" in _run(*_bench(lambda _: tiny_model()))[3]
    failing = _bench(lambda _: (_ for _ in ()).throw(OSError("no such model")))
    assert "failed to load: OSError: no such model" in _run(*failing)[3]


def test_the_page_holds_the_panel_and_does_not_load_its_model_at_start(tiny):
    loader = CountingLoader()
    app = create_app(DashboardSettings(model="tiny"), loader=lambda _: tiny, vision_loader=loader)
    ids = [c.id for c in (app.layout, *app.layout._traverse()) if getattr(c, "id", None) is not None]
    assert [i for i, count in Counter(ids).items() if count > 1] == []
    assert {v for n, v in vars(VID).items() if n.isupper()} <= set(ids) and ID.GRID in ids
    assert loader.calls == 0
    wired = " ".join(app.callback_map)
    assert all(i in wired for i in (VID.OVERLAY, VID.CAPTIONS, VID.MESSAGE, VID.LAYER))
    with pytest.raises(ModelNotReady, match="no model loader"):
        VisionModels("x", None).get()
    no_model = create_app(DashboardSettings(), loader=None, vision_loader=loader)  # --no-model: the panel is there
    assert VID.RUN in [getattr(c, "id", None) for c in no_model.layout._traverse()] and loader.calls == 0


def test_captions_view_without_an_edit_shows_one_caption():
    from apps.heads_dashboard.panels.vision import VisionResult
    from apps.heads_dashboard.panels.vision_bench import HeadDivergence, ImageAttention

    result = VisionResult("m", "world:heldout:0", "", np.zeros((4, 4, 3), np.uint8),
                          ImageAttention(np.zeros((1, 1, 4)), np.zeros((1, 1)), 9), HeadDivergence(np.zeros((1, 1)), np.zeros((1, 1), bool)),
                          "A red cat.", None, "no edit", frozenset({"dog"}))
    view = captions_view(result)
    text = str(view)
    assert "before (no edit)" in text and "after:" not in text and "choose an edit to compare captions" in text
    assert "cat: not in the image" in text
