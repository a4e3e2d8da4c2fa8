"""Task parsing, splits, bootstrap, and the clear errors for bad input (library and CLI)."""

from __future__ import annotations

import json

import pytest

from circuits.evaluation.bootstrap import bootstrap_difference, bootstrap_mean
from circuits.evaluation.tasks import TaskError, build_task, load_task, split_items
from circuits.sinks.search import SearchConfig
from probe.cli import main as cli_main
from tests.helpers import SHARED

BBH_DIR = str(SHARED / "data" / "bbh")


def _write(path, records):
    path.write_text(json.dumps({"examples": records}))
    return path


def test_lettered_dashed_and_label_options(tmp_path):
    lettered = build_task("t", [{"input": "Pick.\nOptions:\n(A) red\n(B) blue", "target": "(B)"}])
    assert lettered.items[0].options == ("A", "B") and lettered.items[0].answer == 1
    assert lettered.items[0].prompt.endswith("Answer: (")
    dashed = build_task("t", [{"input": "Go?\nOptions:\n- Yes\n- No", "target": "No"}])
    assert dashed.items[0].options == (" Yes", " No") and dashed.items[0].answer == 1
    labels = build_task("t", [{"input": "a", "target": "yes"}, {"input": "b", "target": "no"}])
    assert labels.items[1].options == (" no", " yes") and labels.items[1].answer == 0
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"input": "q", "target": "b", "options": ["a", "b", "c"]}\n')
    assert load_task(jsonl).items[0].answer == 1


def test_target_not_among_options_is_dropped():
    task = build_task("t", [{"input": "P\nOptions:\n(A) x\n(B) y", "target": "(A)"},
                            {"input": "P\nOptions:\n(A) x\n(B) y", "target": "zzz"}])
    assert len(task.items) == 1 and task.dropped == 1


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TaskError, match="not valid JSON"):
        load_task(bad)
    with pytest.raises(TaskError, match="'target'"):
        load_task(_write(tmp_path / "m.json", [{"input": "q"}]))
    with pytest.raises(TaskError, match="no examples"):
        load_task(_write(tmp_path / "e.json", []))
    with pytest.raises(TaskError, match="cannot read"):
        load_task(tmp_path / "missing.json")


def test_task_with_no_options():
    records = [{"input": f"q{i}", "target": str(i)} for i in range(12)]
    with pytest.raises(TaskError, match="no options"):
        build_task("open", records)


def test_split_is_disjoint_and_seeded():
    task = build_task("t", [{"input": f"q{i}", "target": "yes" if i % 2 else "no"} for i in range(20)])
    cal, test = split_items(task, 5, 10, seed=1)
    assert len(cal) == 5 and len(test) == 10 and not set(cal) & set(test)
    assert split_items(task, 5, 10, seed=1) == (cal, test)
    assert split_items(task, 5, 10, seed=2) != (cal, test)


def test_bootstrap():
    interval = bootstrap_mean([True] * 30 + [False] * 10, n_boot=500)
    assert interval.low < 0.75 < interval.high and interval.value == pytest.approx(0.75)
    same = bootstrap_difference([True, False] * 10, [True, False] * 10, n_boot=200)
    assert same.low == same.high == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        bootstrap_difference([True], [True, False])


def test_search_config_ranges():
    with pytest.raises(ValueError, match="tau"):
        SearchConfig(tau=0.0)
    with pytest.raises(ValueError, match="beta"):
        SearchConfig(beta=-0.1)


@pytest.mark.parametrize("argv, message", [
    (["act", "search", "--out", "o.jsonl", "--tasks", "no_such_task", "--bbh-dir", BBH_DIR], "unknown task"),
    (["act", "eval", "--out", "o.jsonl", "--tau", "2"], "tau"),
    (["act", "search", "--out", "o.jsonl", "--beta", "1.5"], "beta"),
    (["sinks", "--out", "o.jsonl", "--prompt", "hi", "--tau", "0"], "tau"),
])
def test_cli_errors(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("circuits.sinks.cli.load_model", lambda name: pytest.fail("must fail before loading"))
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_malformed_task_file(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "q", "target": "a"}\n{broken\n')
    monkeypatch.setattr("circuits.sinks.cli.load_model", lambda name: pytest.fail("must fail before loading"))
    assert cli_main(["act", "search", "--out", str(tmp_path / "o.jsonl"), "--tasks", str(bad)]) == 2
    assert "not valid JSON lines" in capsys.readouterr().err
