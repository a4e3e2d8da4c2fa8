"""``--out`` and ``--cache`` are checked before the model loads, and their errors name the option."""

from __future__ import annotations

import os

import pytest

from probe.cli import main


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    def refuse(*args, **kwargs):
        pytest.fail("the output path must be checked before the model loads")

    monkeypatch.setattr("probe.models.load_model", refuse)
    monkeypatch.setattr("probe.models.loading.load_model", refuse)
    monkeypatch.setattr("circuits.sinks.cli.load_model", refuse)


def commands(out: str, cache: str | None = None) -> dict[str, list[str]]:
    extra = ["--cache", cache] if cache else []
    return {
        "capture": ["capture", "--prompt", "hello", "--out", out],
        "sinks": ["sinks", "--prompt", "hello", "--out", out],
        "act search": ["act", "search", "--tasks", "t.jsonl", "--out", out, *extra],
        "act eval": ["act", "eval", "--tasks", "t.jsonl", "--out", out, *extra],
    }


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", list(commands("x")))
def test_out_below_a_regular_file(command, tmp_path, capsys, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefile.txt").write_text("not a folder")
    assert main(commands("somefile.txt/rec")[command]) == 2
    line = error_line(capsys)
    assert "--out: somefile.txt is a file, not a folder" in line


@pytest.mark.parametrize("command", list(commands("x")))
def test_out_in_a_folder_that_cannot_take_files(command, tmp_path, capsys, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(commands("/proc/headscope-out/rec")[command]) == 2
    line = error_line(capsys)
    assert "--out" in line and "/proc" in line and ".tmp" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_out_in_a_read_only_folder(tmp_path, capsys, no_model_load):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(commands(str(locked / "rec"))["capture"]) == 2
    assert "--out" in error_line(capsys)


@pytest.mark.parametrize("command", ["act search", "act eval"])
def test_cache_that_is_a_folder(command, tmp_path, capsys, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cachedir").mkdir()
    assert main(commands("o.jsonl", cache="cachedir")[command]) == 2
    line = error_line(capsys)
    assert "--cache: cachedir is a folder" in line and "file" in line


def test_out_that_is_a_folder(tmp_path, capsys, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    assert main(commands("results")["sinks"]) == 2
    assert "--out: results is a folder" in error_line(capsys)


def test_garbage_cache_file_is_refused_before_loading(tmp_path, capsys, no_model_load, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.jsonl").write_text('{"input": "Go?", "target": "yes"}\n{"input": "Stop?", "target": "no"}\n')
    (tmp_path / "c.jsonl").write_text("this is not a cache\n")
    assert main(commands("o.jsonl", cache="c.jsonl")["act search"]) == 2
    line = error_line(capsys)
    assert "c.jsonl" in line and "--cache" in line


def test_commands_run_with_sigterm_unwinding_like_an_error(monkeypatch):
    """A killed save removes its temporary only if SIGTERM unwinds the stack: the CLI installs
    that handler around every command (and restores the old one after)."""
    import signal

    import probe.cli

    seen = []
    monkeypatch.setattr(probe.cli, "run_guarded", lambda action: seen.append(signal.getsignal(signal.SIGTERM)) or 0)
    before = signal.getsignal(signal.SIGTERM)
    assert probe.cli.main(["capture", "--prompt", "x"]) == 0
    assert seen and seen[0] not in (signal.SIG_DFL, signal.SIG_IGN, before)
    assert signal.getsignal(signal.SIGTERM) == before
