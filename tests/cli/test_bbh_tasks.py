"""BBH task names load from a folder the user names, or from the hub through ``datasets``."""

from __future__ import annotations

import json

import pytest

from circuits.evaluation.harness import load_tasks, resolve_task
from circuits.evaluation.tasks import TaskError
from probe.cli import main

ITEMS = [{"input": "Is the sky blue?\nOptions:\n- Yes\n- No", "target": "Yes"},
         {"input": "Is grass red?\nOptions:\n- Yes\n- No", "target": "No"},
         {"input": "Is snow white in the long winter of the far north?\nOptions:\n- Yes\n- No", "target": "Yes"}]


@pytest.fixture
def bbh_folder(tmp_path):
    folder = tmp_path / "bbh"
    folder.mkdir()
    (folder / "hyperbaton.json").write_text(json.dumps({"examples": ITEMS}))
    return folder


@pytest.fixture
def no_bbh_env(monkeypatch):
    monkeypatch.delenv("HEADSCOPE_BBH_DIR", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_named_folder(bbh_folder, no_bbh_env):
    assert resolve_task("hyperbaton", bbh_dir=bbh_folder) == bbh_folder / "hyperbaton.json"
    assert [len(t.items) for t in load_tasks(["hyperbaton"], bbh_dir=bbh_folder)] == [3]


def test_folder_from_the_environment(bbh_folder, no_bbh_env, monkeypatch):
    monkeypatch.setenv("HEADSCOPE_BBH_DIR", str(bbh_folder))
    assert load_tasks(["hyperbaton"])[0].name == "hyperbaton"


def test_unknown_name_in_a_folder_lists_the_known_ones(bbh_folder, no_bbh_env):
    with pytest.raises(TaskError, match=r"unknown task 'nope'.*hyperbaton"):
        load_tasks(["nope"], bbh_dir=bbh_folder)


def test_missing_folder_is_named(tmp_path, no_bbh_env):
    with pytest.raises(TaskError, match=r"BBH folder .*missing.* does not exist"):
        load_tasks(["hyperbaton"], bbh_dir=tmp_path / "missing")


def test_hub_through_datasets(no_bbh_env, monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(ITEMS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr("circuits.evaluation.harness.hub_reachable", lambda: True)
    tasks = load_tasks(["hyperbaton"], max_prompt_chars=50)
    assert calls == [("lukaemon/bbh", "hyperbaton", "test")]
    assert tasks[0].name == "hyperbaton" and len(tasks[0].items) == 2  # the long third prompt is left out
    assert tasks[0].items[0].options == (" Yes", " No")


def test_hub_unknown_config_is_a_task_error(no_bbh_env, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def load_dataset(path, name=None, split=None, **kwargs):
        raise ValueError(f"BuilderConfig '{name}' not found. Available: ['hyperbaton']")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr("circuits.evaluation.harness.hub_reachable", lambda: True)
    with pytest.raises(TaskError, match=r"unknown task 'nope'.*lukaemon/bbh"):
        load_tasks(["nope"])


def test_neither_folder_nor_hub(no_bbh_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(TaskError) as caught:
        load_tasks(["hyperbaton"])
    assert str(caught.value) == ("task 'hyperbaton': no BBH folder given (--bbh-dir or HEADSCOPE_BBH_DIR) and the "
                                 "hub is unreachable; pass --bbh-dir DIR or a .json/.jsonl path")


class ModelLoadReached(Exception):
    """Raised in place of loading a model: the command got that far."""


def test_cli_takes_bbh_dir(bbh_folder, no_bbh_env, tmp_path, monkeypatch):
    def stop(name):
        raise ModelLoadReached(name)

    monkeypatch.setattr("circuits.sinks.cli.load_model", stop)
    for argv in (["sinks", "--task", "hyperbaton"], ["act", "search", "--tasks", "hyperbaton"]):
        with pytest.raises(ModelLoadReached):
            main([*argv, "--bbh-dir", str(bbh_folder), "--out", str(tmp_path / "o.jsonl")])


@pytest.mark.parametrize("argv", [
    ["sinks", "--task", "hyperbaton"],
    ["act", "search", "--tasks", "hyperbaton"],
    ["act", "eval", "--tasks", "hyperbaton"],
])
def test_cli_without_folder_or_hub(argv, no_bbh_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("circuits.sinks.cli.load_model", lambda name: pytest.fail("must fail before loading"))
    assert main([*argv, "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "pass --bbh-dir DIR" in capsys.readouterr().err
