"""The feature views' wiring without a browser (:mod:`apps.heads_dashboard.views`): what each
callback function returns for the tiny model, checked against direct computations on its captures."""

from __future__ import annotations

import base64
import json

import pytest
import torch
from dash import no_update
from dash.exceptions import PreventUpdate

from apps.heads_dashboard import callbacks, head_metrics
from apps.heads_dashboard.jobs import JobManager
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.settings import DashboardSettings, EditSettings
from apps.heads_dashboard.state import ModelHolder, RecordStore
from apps.heads_dashboard.url_state import PageState, encode
from apps.heads_dashboard.views import dataset, scores, tokens, url, window
from apps.heads_dashboard.views.display import Display
from apps.heads_dashboard.workbench import Source, Workbench
from circuits.heads.ablation_sweep import ablation_sweep
from circuits.heads.direct_attribution import direct_logit_attribution
from circuits.heads.target_foil import target_foil
from probe import CaptureConfig, capture

PROMPT = "When Mary and John went to the store, John gave a drink to"
N_LAYERS, N_HEADS = 3, 5


@pytest.fixture
def bench(tiny, tmp_path):
    holder = ModelHolder(tiny.name, lambda _: tiny).start()
    assert holder.wait(30).state == "ready"
    return Workbench(DashboardSettings(), holder, store=RecordStore(tmp_path / "captures", 16))


def _source(prompt: str = PROMPT) -> dict:
    return Source(prompt=prompt).to_store()


def _z(fig) -> torch.Tensor:
    return torch.tensor(fig.data[0].z, dtype=torch.float32)


def _pattern(bench, layer: int, edits: EditSettings = EditSettings()) -> torch.Tensor:
    return bench.cached_view(Source(prompt=PROMPT), edits).record.pattern(layer, 0).float()


# --- 1. target and foil -------------------------------------------------------------------------


def test_logit_difference_before_and_after_an_edit_equals_the_captures_logits(bench):
    edits = EditSettings(scaled_heads=((2, 1),), factor=0.0)
    bench.view(Source(prompt=PROMPT), edits)
    fig, _, message = scores.logit_diff_view(bench, _source(), None, " Mary", " John")
    assert message == ""
    before = bench.cached_view(Source(prompt=PROMPT)).record.last_logits[0].double()
    assert fig.data[0].y[0] == pytest.approx(float(before[5335] - before[1757]))
    session = {"source": _source(), "edits": edits.to_store()}
    fig, _, _ = scores.logit_diff_view(bench, _source(), session, " Mary", " John")
    after = bench.cached_view(Source(prompt=PROMPT), edits).record.last_logits[0].double()
    assert list(fig.data[0].y) == pytest.approx([float(before[5335] - before[1757]), float(after[5335] - after[1757])])


@pytest.mark.parametrize(("target", "foil", "expected"), [
    ("", "", "type a target and a foil"), (" Mary", "", "the foil token is empty"), ("", " John", "target token is empty"),
    (" Mary Jane", " John", "is 2 tokens"), (" Mary", " Mary", "the same token"),
])
def test_bad_target_foil_pairs_get_one_line(bench, target, foil, expected):
    bench.view(Source(prompt=PROMPT))
    stores = scores.ScoreStore(bench.store.folder.parent / "scores")
    assert expected in scores.submit_scores(bench, stores, _source(), None, target, foil)[2]
    fig, _, message = scores.logit_diff_view(bench, _source(), None, target, foil)
    if target or foil:  # the line is in the panel's message, the figure says only that there is none
        assert expected in message and expected not in fig.layout.annotations[0].text


def test_head_scores_job_feeds_the_heatmap_and_is_cached(bench, tiny):
    bench.view(Source(prompt=PROMPT))
    stores = scores.ScoreStore(bench.store.folder.parent / "scores")
    data, request, message = scores.submit_scores(bench, stores, _source(), None, " Mary", " John")
    assert data is no_update and message == "" and request["target"] == " Mary"
    progress = []
    result, message = scores.scores_job(bench, stores, request, progress.append)
    assert message == "" and any("ablation sweep" in p for p in progress)
    pair = target_foil(tiny.tokenizer, " Mary", " John")
    dla = direct_logit_attribution(tiny, PROMPT, pair).heads
    sweep = ablation_sweep(tiny, PROMPT, pair, heads_per_forward=7).effect
    for metric, expected in (("dla", dla), ("ablation", sweep)):
        fig, _, _ = callbacks.grid_view(bench, _source(), metric, 0, 0, None, result)
        assert torch.allclose(_z(fig), expected.float(), atol=1e-4), metric
        assert fig.data[0].zmid == 0.0  # diverging, centred
    assert scores.submit_scores(bench, stores, _source(), None, " Mary", " John")[:2] == (result, no_update)
    bench.view(Source(prompt="another prompt"))
    fig, _, _ = callbacks.grid_view(bench, _source("another prompt"), "dla", 0, 0, None, result)
    assert "for another prompt: press 'head scores' again" in fig.layout.annotations[0].text


def test_mean_ablation_is_offered_and_cached_apart_from_zero(bench, tiny):
    bench.view(Source(prompt=PROMPT))
    stores = scores.ScoreStore(bench.store.folder.parent / "scores")
    _, request, _ = scores.submit_scores(bench, stores, _source(), None, " Mary", " John", "mean")
    assert request["ablation"] == "mean"
    result, message = scores.scores_job(bench, stores, request)
    assert message == "" and result["ablation_mode"] == "mean"
    pair = target_foil(tiny.tokenizer, " Mary", " John")
    expected = ablation_sweep(tiny, PROMPT, pair, mode="mean", heads_per_forward=7).effect
    fig, _, _ = callbacks.grid_view(bench, _source(), "ablation", 0, 0, None, result)
    assert torch.allclose(_z(fig), expected.float(), atol=1e-4)
    assert not torch.allclose(expected, ablation_sweep(tiny, PROMPT, pair, heads_per_forward=7).effect)
    assert "mean-ablation effect" in fig.data[0].colorbar.title.text or "mean-ablation effect" in fig.layout.title.text
    assert scores.submit_scores(bench, stores, _source(), None, " Mary", " John", "mean")[0] == result  # cached
    data, zero_request, _ = scores.submit_scores(bench, stores, _source(), None, " Mary", " John", "zero")
    assert data is no_update and zero_request["ablation"] == "zero"  # another key: a new job
    assert "not offered" in scores.submit_scores(bench, stores, _source(), None, " Mary", " John", "resample")[2]


@pytest.mark.parametrize(("n_tokens", "expected"), [(14, 32), (256, 32), (512, 8), (1024, 2), (1500, 1), (8000, 1)])
def test_ablation_batches_shrink_with_long_prompts(n_tokens, expected):
    assert scores.heads_per_forward(n_tokens) == expected


# --- 2. token-conditioned views -------------------------------------------------------------------


def test_clicked_tokens_give_the_attention_q_to_k_metric(bench):
    bench.view(Source(prompt=PROMPT))
    qk = tokens.clicked(tokens.DEFAULT_QK, 2, "key")
    assert qk == {"query": -1, "key": 2}
    fig, _, _ = callbacks.grid_view(bench, _source(), tokens.QK_METRIC, 0, 0, qk, None)
    expected = torch.stack([_pattern(bench, layer)[:, -1, 2] for layer in range(N_LAYERS)])
    assert torch.allclose(_z(fig), expected)
    fig, _, _ = callbacks.grid_view(bench, _source(), tokens.QK_METRIC, 0, 0, tokens.clicked(qk, 1, "query"), None)
    assert "comes after query 1" in fig.layout.annotations[0].text  # key 2 after query 1: one line


def test_the_strip_shades_by_attention_from_the_hovered_query(bench):
    bench.view(Source(prompt=PROMPT))
    view = lambda source: callbacks.cached_or_why(bench, source)  # noqa: E731
    hover = {"points": [{"x": 3, "y": 6}]}
    spans, line = tokens.strip_view(view, _source(), 1, 2, "from", {"query": -1, "key": 4}, hover, False)
    row = _pattern(bench, 1)[2, 6]
    shown = [float(s.title.split(": ")[1]) for s in spans[:7]]
    assert shown == pytest.approx(row[:7].tolist(), abs=1e-3)
    assert [s.to_plotly_json()["props"]["data-index"] for s in spans] == list(range(14))  # what the click listener reads
    assert spans[13].style["outline"] == tokens.QUERY_OUTLINE and spans[4].style["outline"] == tokens.KEY_OUTLINE
    assert "→ key" in line


@pytest.mark.parametrize("shade", ["from", "to"])
def test_the_strip_hover_store_holds_the_heads_rows_or_columns(bench, shade):
    bench.view(Source(prompt=PROMPT))
    view = lambda source: callbacks.cached_or_why(bench, source)  # noqa: E731
    held = tokens.hover_view(view, _source(), 1, 2, shade)
    record = bench.cached_view(Source(prompt=PROMPT)).record
    direct = head_metrics.attention_from if shade == "from" else head_metrics.attention_to
    assert held["shade"] == shade and len(held["values"]) == 14
    for t, values in enumerate(held["values"]):
        expected = direct(record, 0, 1, 2, t)
        assert [v is None for v in values] == torch.isnan(expected).tolist()
        assert [v for v in values if v is not None] == pytest.approx(expected[~torch.isnan(expected)].tolist(),
                                                                      abs=1e-4)
    assert tokens.hover_view(view, _source(), 1, 2, "received") is None  # nothing to shade on hover
    assert tokens.hover_view(view, _source(), 1, 9, shade) is None  # a bad head: the head panel says so
    assert json.dumps(held)  # what the page receives


# --- 3. all heads of a layer, diff ----------------------------------------------------------------


def test_layer_and_diff_views(bench):
    edits = EditSettings(act=True)
    bench.view(Source(prompt=PROMPT), edits)
    fig, _, message = callbacks.head_view(bench, _source(), 2, 1, Display("layer", "log"))
    assert message == "" and len(fig.data) == N_HEADS
    assert torch.allclose(torch.tensor(fig.data[3].z, dtype=torch.float32).nan_to_num(-9),
                          _pattern(bench, 2)[3].clamp_min(1e-6).log10().tril().masked_fill(
                              torch.ones(14, 14).triu(1).bool(), -9), atol=1e-5)
    fig, _, message = callbacks.head_view(bench, _source(), 2, 1, Display("diff"))
    assert "tick ACT or scale heads" in message
    session = {"source": _source(), "edits": edits.to_store()}
    fig, _, message = callbacks.head_view(bench, _source(), 2, 1, Display("diff"), session)
    diff = (_pattern(bench, 2, edits) - _pattern(bench, 2))[4]
    assert message == "" and torch.allclose(torch.tensor(fig.data[4].z, dtype=torch.float32).nan_to_num(0),
                                            diff.tril(), atol=1e-6)


def test_hide_first_token_drops_the_first_row_and_column(bench):
    bench.view(Source(prompt=PROMPT))
    fig, _, _ = callbacks.head_view(bench, _source(), 1, 0, Display(hide_first=True))
    assert _z(fig).shape == (13, 13) and "first token hidden" in fig.layout.title.text
    assert torch.allclose(_z(fig).nan_to_num(0), _pattern(bench, 1)[0, 1:, 1:].tril())


# --- 5. long inputs: window ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("-4:", (10, 14)), ("2:5", (2, 5)), (":3", (0, 3)), ("", (0, 14))])
def test_query_ranges(text, expected):
    assert window.parse_range(text or ":", 14) == expected


@pytest.mark.parametrize(("text", "expected"), [("5:2", "is empty or outside"), ("a:b", "is not START:STOP"),
                                                ("0:99", "is empty or outside")])
def test_bad_query_ranges(text, expected):
    with pytest.raises(Exception, match=expected):
        window.parse_range(text, 14)


def test_windowed_pattern_rows_equal_the_full_pattern(bench, tmp_path):
    bench.view(Source(prompt=PROMPT))
    windows = window.WindowStore(tmp_path / "windows")
    data, request, message = window.submit_window(bench, windows, _source(), None, "-4:", 1)
    assert message == "" and request["window"]["start"] == 10
    data, message = window.window_job(bench, windows, request)
    fig, _ = window.window_view(bench, windows, data, _source(), 3, "linear", [])
    assert torch.allclose(_z(fig).nan_to_num(0), _pattern(bench, 1)[3, 10:14], atol=1e-5)
    assert window.submit_window(bench, windows, _source(), None, "-4:", 1)[:2] == (data, no_update)  # cached


# --- 4. data sets ---------------------------------------------------------------------------------


def test_a_prompt_file_is_averaged_over_its_prompts(bench, tiny, tmp_path):
    sets = dataset.SetFolder(tmp_path / "sets")
    lines = ["When Mary and John went to the store, John gave a drink to", "the cat sat on the mat and"]
    contents = "data:text/plain;base64," + base64.b64encode("\n".join(lines).encode()).decode()
    file, info, options, query, key, message = dataset.opened(sets, contents, "two.txt", example=False)
    assert message == "" and "2 prompts" in info and (query, key) == ("-1", "-2")
    data, request, message = dataset.submit_set(bench, sets, file)
    data, message = dataset.set_job(bench, sets, request)
    fig, _ = dataset.set_view(bench, sets, data, "attention", "-1", "-3")
    record = capture(tiny, lines, CaptureConfig(mode="pattern"))
    expected = torch.stack([torch.stack([record.pattern(layer, p)[:, -1, -3].float() for p in range(2)]).mean(0)
                            for layer in range(N_LAYERS)])
    assert torch.allclose(_z(fig), expected, atol=1e-5) and "over 2 prompts" in fig.layout.title.text


def test_the_ioi_example_names_roles(tmp_path):
    file, info, options, query, key, message = dataset.opened(dataset.SetFolder(tmp_path), None, None, example=True)
    assert "48 prompts" in info and (query, key) == ("END", "IO") and {"IO", "S1", "S2", "END"} <= set(options)
    assert file["example"] == "ioi" and dataset.EXAMPLES["ioi"] == dataset.EXAMPLE  # the name a link carries


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("prompts.csv", b"a,b", "open a .txt file"), ("bad.jsonl", b"{not json", "is not JSON"),
    ("empty.txt", b"\n\n", "holds no prompts"),
])
def test_bad_prompt_files_get_one_line(tmp_path, name, data, expected):
    contents = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    assert expected in dataset.opened(dataset.SetFolder(tmp_path), contents, name, example=False)[-1]


# --- 6. page state in the URL ---------------------------------------------------------------------


def test_a_link_restores_the_widgets_and_submits_its_prompt(bench):
    state = PageState(prompt=PROMPT, metric="mean_entropy", layer=2, head=3, act=True, heads=((1, 2),), factor=0.5,
                      target=" Mary", foil=" John", key=2, view="layer", scale="log", hide_first=True, shade="from",
                      window="-8:", dataset="ioi")
    submitted = []
    submit = lambda *args: submitted.append(args) or ("session", "request", "")  # noqa: E731
    out = url.restore(submit, encode(state), restored=False)
    assert list(out[:len(url.RESTORED_FIELDS)]) == [PROMPT, "mean_entropy", 2, 3, ["act"], "", "1.2", "0.5", " Mary",
                                                    " John", "layer", "log", ["hide"], {"query": -1, "key": 2}, "from",
                                                    "-8:", {"example": "ioi"}]
    assert submitted == [(ID.RUN, PROMPT, None)] and out[-4:] == ("session", "request", "", True)
    written = url.page_search(True, _source(), *out[1:len(url.RESTORED_FIELDS)])
    assert written == encode(state)  # what the page writes back is the link it was opened with
    with pytest.raises(PreventUpdate):
        url.restore(submit, encode(state), restored=True)
    with pytest.raises(PreventUpdate):
        url.page_search(False, _source(), *out[1:len(url.RESTORED_FIELDS)])


def test_a_bad_link_gets_one_line_and_the_defaults():
    out = url.restore(lambda *a: None, "?head=-1", restored=False)
    assert "not restored" in out[-2] and "'head'" in out[-2] and out[-1] is True


# --- latency: short prompts in the server ---------------------------------------------------------


def test_short_prompts_run_in_the_server_and_long_ones_queue_a_job(tiny, tmp_path):
    holder = ModelHolder(tiny.name, lambda _: tiny).start()
    assert holder.wait(30).state == "ready"
    bench = Workbench(DashboardSettings(sync_tokens=20), holder, store=RecordStore(tmp_path / "c", 8),
                      jobs=JobManager(tmp_path / "jobs"))
    session, request, message = callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)
    assert (session, request, message) == (_source(), no_update, "") and bench.cached_view(Source(prompt=PROMPT))
    session, request, message = callbacks.submit_prompt(bench, ID.RUN, PROMPT + " the end of it all " * 3, None)
    assert session is no_update and request["prompt"].endswith("all ")
    edits = callbacks.submit_edits(bench, _source(), ["act"], "", "0", "")
    assert edits[1] is no_update and edits[0]["edits"] == EditSettings(act=True).to_store()
    assert json.dumps(edits[0])  # the committed edit session, no job
