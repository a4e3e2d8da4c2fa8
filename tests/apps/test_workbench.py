"""The dashboard's logic without a browser: caching, long inputs, loading, bad input, settings, CLI."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import torch
from dash import no_update

from apps.heads_dashboard import callbacks
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.metrics import Metric, load_plugin_metrics, register_metric
from apps.heads_dashboard.settings import DashboardSettings, EditSettings, act_search_heads, parse_heads
from apps.heads_dashboard.state import LRUCache, ModelHolder, ModelNotReady, RecordStore
from apps.heads_dashboard.workbench import NotCaptured, Source, Workbench
from probe import InputError
from probe.cli import build_parser
from probe.edits import ScaleHeads, ScaleKeys

PROMPT = "When Mary and John went to the store, John gave a drink to"


def _bench(model, store: RecordStore | None = None, **settings) -> Workbench:
    holder = ModelHolder(model.name, lambda _: model).start()
    assert holder.wait(30).state == "ready"
    return Workbench(DashboardSettings(**settings), holder, store=store)


def _store(prompt: str) -> dict:
    return Source(prompt=prompt).to_store()


def test_captures_are_cached_per_prompt_and_edits(tiny, monkeypatch):
    bench = _bench(tiny)
    captured = []
    capture = bench._capture
    monkeypatch.setattr(bench, "_capture", lambda *a: captured.append(a[1:]) or capture(*a))
    first = bench.view(Source(prompt=PROMPT)).record
    assert bench.view(Source(prompt=PROMPT)).record is first
    edited = bench.view(Source(prompt=PROMPT), EditSettings(act=True)).record
    assert edited is not first
    assert bench.view(Source(prompt=PROMPT), EditSettings(act=True)).record is edited
    assert [(prompt, edits) for prompt, _, edits in captured] == [(PROMPT, EditSettings()), (PROMPT, EditSettings(act=True))]


def test_the_record_store_hands_captures_between_workbenches(tiny, tmp_path, pattern_record):
    store = RecordStore(tmp_path, entries=2)
    job = _bench(tiny, store=store)  # the job process's workbench
    server = _bench(tiny, store=store)  # the server's: never runs the model here
    job.view(Source(prompt=PROMPT))
    shown = server.cached_view(Source(prompt=PROMPT)).record
    assert shown.tokens == job.cached_view(Source(prompt=PROMPT)).record.tokens
    assert torch.equal(shown.patterns[1], job.cached_view(Source(prompt=PROMPT)).record.patterns[1])
    with pytest.raises(NotCaptured, match="press Run"):
        server.cached_view(Source(prompt="another prompt"))
    for key in ("a", "b", "c"):
        store.put(key, pattern_record)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 and "a" not in store and "c" in store


def test_lru_cache_drops_the_least_recently_used_entry():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    cache.discard("a")
    assert "a" not in cache and len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_long_prompts_are_captured_as_statistics(tiny):
    bench = _bench(tiny, long_input_tokens=12)
    short, long = bench.view(Source(prompt="a b c")), bench.view(Source(prompt=PROMPT))
    assert not short.is_summary and long.is_summary
    assert len(long.tokens) > 12 and not long.record.patterns


def test_run_queues_a_job_unless_the_capture_is_cached(tiny):
    bench = _bench(tiny)
    session, request, message = callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)
    assert session is no_update and message == "" and request["prompt"] == PROMPT
    again = callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)[1]
    assert again["id"] != request["id"]  # two clicks are two jobs, never one shared result
    session, message = callbacks.capture_job(bench, request)  # what the background job does
    assert session == _store(PROMPT) and message == ""
    assert callbacks.submit_prompt(bench, ID.RUN, PROMPT, None) == (_store(PROMPT), no_update, "")  # the fast path
    fig, config, info = callbacks.grid_view(bench, session, "mean_entropy", 0, 0)
    assert "full patterns" in info and config != {"displayModeBar": False}


def test_callbacks_answer_at_once_while_the_model_loads(tiny):
    release = threading.Event()
    holder = ModelHolder("tiny", lambda _: (release.wait(30), tiny)[1]).start()
    bench = Workbench(DashboardSettings(), holder)
    assert "loading model tiny" in callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)[2]
    assert callbacks.model_status(bench) == ("loading model tiny…", False, False)
    release.set()
    assert holder.wait(30).state == "ready"
    assert callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)[2] == ""


def test_a_failed_load_is_reported_not_raised():
    def broken(name):
        raise OSError("weights missing")

    holder = ModelHolder("nope", broken).start()
    assert holder.wait(30).state == "failed"
    with pytest.raises(ModelNotReady, match="weights missing"):
        holder.get()


@pytest.mark.parametrize(
    ("prompt", "settings", "expected"),
    [
        ("   ", {}, "the prompt is empty"),
        (None, {}, "the prompt is empty"),
        ("word " * 400, {}, "longer than the model's context window of 300"),
        ("word " * 50, {"max_prompt_tokens": 20}, "captures at most 20"),
    ],
)
def test_bad_prompts_are_refused_before_any_job(tiny, prompt, settings, expected):
    session, request, message = callbacks.submit_prompt(_bench(tiny, **settings), ID.RUN, prompt, None)
    assert expected in message and session is no_update and request is no_update


@pytest.mark.parametrize(
    ("layer", "head", "expected"),
    [(0, 7, "head 7 does not exist: each layer has 5 heads"), (9, 0, "layer 9 does not exist"),
     (None, None, "click a head")],
)
def test_bad_heads_are_shown_once_in_the_head_panel(tiny, layer, head, expected):
    bench = _bench(tiny)
    bench.view(Source(prompt=PROMPT))
    fig, config, message = callbacks.head_view(bench, _store(PROMPT), layer, head)
    assert expected in message
    assert expected not in fig.layout.annotations[0].text and config == {"displayModeBar": False}


@pytest.mark.parametrize(
    ("act", "heads", "factor", "act_heads", "expected"),
    [
        ([], "1.9", "0", "", "head 9 does not exist"),
        ([], "banana", "0", "", "write heads as LAYER.HEAD"),
        ([], "7.0", "0", "", "layer 7 does not exist"),
        ([], "1.2", "nan", "", "finite number"),
        ([], "1.2", "inf", "", "finite number"),
        ([], "1.2", "-inf", "", "finite number"),
        ([], "1.2", "1e308", "", "magnitude at most 1000"),
        ([], "1.2", "-2e3", "", "magnitude at most 1000"),
        ([], "1.2", "two", "", "finite number"),
        ([], "1.2", "", "", "type a factor"),
        ([], "1.2", None, "", "type a factor"),
        (["act"], "", "0", "2.9", "head 9 does not exist"),
        (["act"], "", "0", "3", "write heads as LAYER.HEAD"),
    ],
)
def test_bad_edits_are_refused_before_any_job(tiny, act, heads, factor, act_heads, expected):
    bench = _bench(tiny)
    session, request, message = callbacks.submit_edits(bench, _store(PROMPT), act, heads, factor, act_heads)
    assert expected in message and session is None and request is no_update


def test_edits_need_a_prompt(tiny):
    message = callbacks.submit_edits(_bench(tiny), Source().to_store(), ["act"], "", "0", "")[2]
    assert "run a prompt first" in message


def test_edit_view_compares_before_and_after(tiny):
    bench = _bench(tiny)
    session, request, message = callbacks.submit_edits(bench, _store(PROMPT), [], "1.2, 2.0", "0", "")
    assert message == "" and "pending" in session and request["edits"]["scaled_heads"] == [[1, 2], [2, 0]]
    assert "computing" in callbacks.edit_view(bench, session, 1, 2)[0].layout.annotations[0].text
    session, message = callbacks.edit_job(bench, request)
    assert message == "" and session["edits"] == request["edits"]
    next_fig, _, compare, _, warning = callbacks.edit_view(bench, session, 1, 2)
    before, after = next_fig.data
    assert len(before.y) == len(after.y) >= bench.settings.top_tokens
    assert list(before.y) == sorted(before.y, reverse=True)
    assert list(before.y) != list(after.y)  # ablating two heads moves the distribution
    assert "L1.H2, L2.H0 x 0" in compare.layout.title.text
    assert callbacks.submit_edits(bench, _store(PROMPT), [], "1.2, 2.0", "0", "")[0] == session  # cached: no job


def test_act_on_picked_heads_calibrates_only_those(tiny):
    bench = _bench(tiny)
    plain = bench.view(Source(prompt=PROMPT)).record

    def changed(act_heads):
        edited = bench.view(Source(prompt=PROMPT), EditSettings(act=True, act_heads=act_heads)).record
        return {(layer, head) for layer in plain.layers for head in range(plain.n_heads)
                if not torch.allclose(plain.pattern(layer)[head], edited.pattern(layer)[head])}

    assert changed(((2, 3),)) == {(2, 3)}  # the last layer: nothing reads its output
    assert changed(((1, 2),)) == {(1, 2)} | {(2, head) for head in range(plain.n_heads)}  # and the layer above


def test_a_big_move_of_the_top_token_is_warned():
    default_act, picked = EditSettings(act=True), EditSettings(act=True, act_heads=((3, 1),))
    assert "from p = 0.92 to 5e-05" in callbacks.big_move_warning(" Mary", 0.92, 5e-5, default_act)
    assert "every head of layers 2 and up" in callbacks.big_move_warning(" Mary", 0.92, 5e-5, default_act)
    assert "every head" not in callbacks.big_move_warning(" Mary", 0.92, 5e-5, picked)
    assert callbacks.big_move_warning(" Mary", 0.92, 0.85, default_act) == ""
    assert callbacks.big_move_warning(" x", 0.02, 0.001, default_act) != ""  # divided by 20


def test_unexpected_errors_are_shown_and_logged(tiny, monkeypatch, caplog):
    bench = _bench(tiny)
    monkeypatch.setattr(bench, "cached_view", lambda *a, **k: 1 / 0)
    fig, _, _ = callbacks.grid_view(bench, _store(PROMPT), "mean_entropy", 0, 0)
    assert fig.layout.annotations[0].text.startswith("internal error (ZeroDivisionError")
    assert "grid_view failed" in caplog.text


def test_saved_records_are_shown_without_a_model_and_refuse_edits(pattern_record):
    bench = Workbench(DashboardSettings(), holder=None, record=pattern_record)
    fig, _, info = callbacks.grid_view(bench, Source(record_prompt=1).to_store(), "first_token_share", 0, 0)
    assert info.startswith("3 tokens")
    message = callbacks.submit_edits(bench, Source(record_prompt=0).to_store(), ["act"], "", "0", "")[2]
    assert "edits need a live prompt" in message
    assert "runs without a model" in callbacks.submit_prompt(bench, ID.RUN, PROMPT, None)[2]
    assert callbacks.submit_prompt(bench, ID.RECORD_PROMPT, None, 1)[0] == Source(record_prompt=1).to_store()


def test_edit_settings_parse_and_build_probe_edits():
    assert parse_heads("3.4, L5.H1,5:1 , 3.4") == ((3, 4), (5, 1))
    settings = EditSettings.from_ui(["act"], "2.1", "0.5")
    act, scale = settings.to_edits(n_layers=6)
    assert isinstance(act, ScaleKeys) and act.factor == 0.4 and act.layers == (2, 3, 4, 5)
    assert isinstance(scale, ScaleHeads) and (scale.layers, scale.heads, scale.factor) == ((2,), (1,), 0.5)
    first, second = EditSettings.from_ui(["act"], "", None, "4.1, 2.3, 4.0").to_edits(n_layers=6)
    assert (first.layers, first.heads, second.layers, second.heads) == ((2,), (3,), (4,), (1, 0))
    assert EditSettings.from_ui([], "", None).is_empty
    assert EditSettings.from_store(settings.to_store()) == settings
    with pytest.raises(InputError):
        parse_heads("3")


SEARCH_OUT = [{"kind": "baseline", "accuracy": 0.5}, {"layer": 2, "head": 1, "accuracy": 0.6},
              {"kind": "selected", "heads": [[2, 1], [4, 0]], "seconds": 3.0}]


def test_act_search_results_give_their_selected_heads():
    text = "\n".join(json.dumps(r) for r in SEARCH_OUT) + "\n"
    assert act_search_heads(text) == ((2, 1), (4, 0))
    contents = "data:application/octet-stream;base64," + base64.b64encode(text.encode()).decode()
    assert callbacks.act_file_heads(contents, "act.jsonl") == ("2.1, 4.0", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json\n", "line 1 is not JSON"),
        (json.dumps({"kind": "baseline"}), "no 'selected' record"),
        (json.dumps({"kind": "selected", "heads": []}), "kept no head"),
        (json.dumps({"kind": "selected", "heads": [[1]]}), "[layer, head] pairs"),
        (json.dumps({"kind": "selected", "heads": [[1, -2]]}), "[layer, head] pairs"),
        (json.dumps({"kind": "selected", "heads": [[1.5, 2]]}), "[layer, head] pairs"),
    ],
)
def test_bad_act_search_files_are_refused(text, expected):
    contents = "data:text/plain;base64," + base64.b64encode(text.encode()).decode()
    heads, message = callbacks.act_file_heads(contents, "act.jsonl")
    assert heads is no_update and expected in message and "act.jsonl" in message


def test_binary_uploads_are_refused():
    contents = "data:application/octet-stream;base64," + base64.b64encode(bytes([0xff, 0xfe, 0x00])).decode()
    assert "not a text file" in callbacks.act_file_heads(contents, "x.bin")[1]


def test_metric_registry_refuses_duplicates_and_skips_missing_plugins():
    with pytest.raises(ValueError, match="already registered"):
        register_metric(Metric("mean_entropy", "again", lambda r, l, p: None))
    assert load_plugin_metrics(("circuits.not_there.dashboard",)) == []


def test_cli_registers_the_dashboard_command():
    args = build_parser().parse_args(["dashboard", "--port", "8123", "--host", "0.0.0.0", "--max-prompt-tokens", "900"])
    assert (args.command, args.port, args.host, args.record, args.max_prompt_tokens) == ("dashboard", 8123, "0.0.0.0", None, 900)
    assert callable(args.func)
    with pytest.raises(ValueError, match="--no-model needs --record"):
        args.func(build_parser().parse_args(["dashboard", "--no-model"]))
