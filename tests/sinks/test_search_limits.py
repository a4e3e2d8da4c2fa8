"""The ACT head search and evaluation at their limits: layer indices past the model, items past the
context. Each test failed before the hardening fixes (layer 99 searched layer 9; a 9,000-token item
was scored past SmolLM2's 8,192-token window with exit 0)."""

from __future__ import annotations

import pytest
import torch

from circuits.evaluation.harness import EvalConfig, act_evaluation, fit_context, format_table
from circuits.evaluation.scoring import score_items
from circuits.evaluation.tasks import Item, Task
from circuits.sinks.search import SearchConfig, search_heads, search_space
from tests.helpers import tiny_loaded

SHORT = [Item(f"Is {word} a colour?\nAnswer:", (" yes", " no"), int(word != "red")) for word in ("red", "cat", "sky")]
LONG = Item("word " * 200 + "\nAnswer:", (" yes", " no"), 0)  # ~200 tokens, past the tiny model's 160


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_loaded("llama")  # context of 160 tokens


@pytest.mark.parametrize("layers", [(99,), (30,), (-31,)])
def test_a_layer_past_the_model_is_an_error_not_another_layer(layers):
    with pytest.raises(ValueError, match="out of range"):
        search_space(SearchConfig(layers=layers), n_layers=30, n_heads=9)


def test_negative_layers_count_from_the_end():
    assert search_space(SearchConfig(layers=(-1, 0)), n_layers=30, n_heads=2) == [(0, 0), (0, 1), (29, 0), (29, 1)]


def test_scoring_refuses_an_item_past_the_context(tiny):
    with pytest.raises(ValueError, match="context"):
        score_items(tiny, [SHORT[0], LONG])
    with pytest.raises(ValueError, match="context"):
        search_heads(tiny, [LONG], SearchConfig(layers=(0,)), progress=False)


def test_fit_context_lists_what_it_leaves_out(tiny):
    tasks, skipped = fit_context([Task("t", (SHORT[0], LONG, SHORT[1]))], tiny.tokenizer, 160)
    assert tasks[0].items == (SHORT[0], SHORT[1])
    assert len(skipped) == 1 and skipped[0]["task"] == "t" and skipped[0]["item"] == 1
    assert skipped[0]["tokens"] > 160 and skipped[0]["context"] == 160


def test_act_evaluation_skips_and_reports_items_past_the_context(tiny):
    task = Task("mixed", (*SHORT, LONG))
    report = act_evaluation(tiny, [task], SearchConfig(layers=(1,)),
                            EvalConfig(n_calibration=1, n_test=None, n_random=0, n_boot=20), progress=False)
    assert [s["item"] for s in report["skipped_over_context"]] == [3]
    assert sum(row["n"] for row in report["rows"] if row["task"] == "mixed" and row["condition"] == "baseline") == 2
    assert "longer than the context" in format_table(report)


def test_cli_act_search_leaves_out_and_lists_items_past_the_context(tiny_folder, tmp_path, capsys):
    import json

    from probe.cli import main

    folder = tiny_folder
    task = tmp_path / "mixed.jsonl"
    rows = [{"input": item.prompt.removesuffix("\nAnswer:"), "target": item.options[item.answer].strip(),
             "options": [o.strip() for o in item.options]} for item in (*SHORT, LONG)]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "search.jsonl"
    code = main(["act", "search", "--model", str(folder), "--tasks", str(task), "--layers", "1",
                 "--n-calibration", "4", "--max-prompt-chars", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "left out 1 item(s)" in capsys.readouterr().out
    selected = [json.loads(line) for line in out.read_text().splitlines()][-1]
    assert [s["item"] for s in selected["skipped_over_context"]] == [3]
