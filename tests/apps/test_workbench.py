"""The dashboard's logic without a browser: caching, long inputs, loading, bad input, settings, CLI."""

from __future__ import annotations

import threading

import pytest

from apps.heads_dashboard import callbacks
from apps.heads_dashboard.metrics import Metric, load_plugin_metrics, register_metric
from apps.heads_dashboard.settings import DashboardSettings, EditSettings, parse_heads
from apps.heads_dashboard.state import LRUCache, ModelHolder, ModelNotReady
from apps.heads_dashboard.workbench import Source, Workbench
from probe import InputError
from probe.cli import build_parser
from probe.edits import ScaleHeads, ScaleKeys

PROMPT = "When Mary and John went to the store, John gave a drink to"


def _bench(model, **settings) -> Workbench:
    holder = ModelHolder(model.name, lambda _: model).start()
    assert holder.wait(30).state == "ready"
    return Workbench(DashboardSettings(**settings), holder)


def _store(prompt: str) -> dict:
    return Source(prompt=prompt).to_store()


def test_captures_are_cached_per_prompt_and_edits(tiny):
    bench = _bench(tiny)
    first = bench.view(Source(prompt=PROMPT)).record
    assert bench.view(Source(prompt=PROMPT)).record is first
    edited = bench.view(Source(prompt=PROMPT), EditSettings(act=True)).record
    assert edited is not first
    assert bench.view(Source(prompt=PROMPT), EditSettings(act=True)).record is edited
    assert (bench.cache.hits, bench.cache.misses) == (2, 2)


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


def test_callbacks_answer_at_once_while_the_model_loads(tiny):
    release = threading.Event()
    holder = ModelHolder("tiny", lambda _: (release.wait(30), tiny)[1]).start()
    bench = Workbench(DashboardSettings(), holder)
    _, _, message = callbacks.grid_view(bench, _store(PROMPT), "mean_entropy", 0, 0)
    assert "loading model tiny" in message
    assert callbacks.model_status(bench) == ("loading model tiny…", False, False)
    release.set()
    assert holder.wait(30).state == "ready"
    _, info, message = callbacks.grid_view(bench, _store(PROMPT), "mean_entropy", 0, 0)
    assert message == "" and "full patterns" in info


def test_a_failed_load_is_reported_not_raised():
    def broken(name):
        raise OSError("weights missing")

    holder = ModelHolder("nope", broken).start()
    assert holder.wait(30).state == "failed"
    with pytest.raises(ModelNotReady, match="weights missing"):
        holder.get()


@pytest.mark.parametrize(
    ("prompt", "layer", "head", "expected"),
    [
        ("   ", 0, 0, "the prompt is empty"),
        ("word " * 400, 0, 0, "longer than the model's context window"),
        (PROMPT, 0, 7, "head 7 does not exist: each layer has 5 heads"),
        (PROMPT, 9, 0, "layer 9 does not exist"),
        (PROMPT, None, None, "click a head"),
    ],
)
def test_bad_input_becomes_a_message(tiny, prompt, layer, head, expected):
    bench = _bench(tiny)
    _, _, message = callbacks.head_view(bench, _store(prompt), layer, head)
    assert expected in message


def test_bad_edits_become_a_message(tiny):
    bench = _bench(tiny)
    for heads, expected in [("1.9", "head 9 does not exist"), ("banana", "write heads as LAYER.HEAD"), ("7.0", "layer 7")]:
        _, _, message = callbacks.edit_view(bench, _store(PROMPT), 0, 0, [], heads, 0.0)
        assert expected in message


def test_edit_view_compares_before_and_after(tiny):
    bench = _bench(tiny)
    next_fig, compare, message = callbacks.edit_view(bench, _store(PROMPT), 1, 2, [], "1.2, 2.0", 0.0)
    assert message == ""
    before, after = next_fig.data
    assert len(before.y) == len(after.y) >= bench.settings.top_tokens
    assert list(before.y) == sorted(before.y, reverse=True)
    assert list(before.y) != list(after.y)  # ablating two heads moves the distribution
    assert "L1.H2, L2.H0 x 0" in compare.layout.title.text


def test_unexpected_errors_are_shown_and_logged(tiny, monkeypatch, caplog):
    bench = _bench(tiny)
    monkeypatch.setattr(bench, "view", lambda *a, **k: 1 / 0)
    _, _, message = callbacks.grid_view(bench, _store(PROMPT), "mean_entropy", 0, 0)
    assert message.startswith("internal error (ZeroDivisionError")
    assert "grid_view failed" in caplog.text


def test_saved_records_are_shown_without_a_model_and_refuse_edits(pattern_record):
    bench = Workbench(DashboardSettings(), holder=None, record=pattern_record)
    fig, info, message = callbacks.grid_view(bench, Source(record_prompt=1).to_store(), "first_token_share", 0, 0)
    assert message == "" and info.startswith("3 tokens")
    _, _, message = callbacks.edit_view(bench, Source(record_prompt=0).to_store(), 0, 0, ["act"], "", 0.0)
    assert "edits need a live prompt" in message
    _, _, message = callbacks.grid_view(bench, _store(PROMPT), "first_token_share", 0, 0)
    assert "runs without a model" in message


def test_edit_settings_parse_and_build_probe_edits():
    assert parse_heads("3.4, L5.H1,5:1 , 3.4") == ((3, 4), (5, 1))
    settings = EditSettings.from_ui(["act"], "2.1", 0.5)
    act, scale = settings.to_edits(n_layers=6)
    assert isinstance(act, ScaleKeys) and act.factor == 0.4 and act.layers == (2, 3, 4, 5)
    assert isinstance(scale, ScaleHeads) and (scale.layers, scale.heads, scale.factor) == ((2,), (1,), 0.5)
    assert EditSettings.from_ui([], "", None).is_empty
    with pytest.raises(InputError):
        parse_heads("3")


def test_metric_registry_refuses_duplicates_and_skips_missing_plugins():
    with pytest.raises(ValueError, match="already registered"):
        register_metric(Metric("mean_entropy", "again", lambda r, l, p: None))
    assert load_plugin_metrics(("circuits.not_there.dashboard",)) == []


def test_cli_registers_the_dashboard_command():
    args = build_parser().parse_args(["dashboard", "--port", "8123", "--host", "0.0.0.0"])
    assert (args.command, args.port, args.host, args.record) == ("dashboard", 8123, "0.0.0.0", None)
    assert callable(args.func)
    with pytest.raises(ValueError, match="--no-model needs --record"):
        args.func(build_parser().parse_args(["dashboard", "--no-model"]))
