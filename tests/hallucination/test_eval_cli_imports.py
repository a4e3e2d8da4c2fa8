"""``headscope vlm eval --help`` and its argument errors import neither torch nor transformers, and a
single-process run of the test answerer needs no torch at all (fresh interpreters: this one has
imported both long ago)."""

from __future__ import annotations

import pytest

from tests.cli.test_lazy_imports import run_in_fresh_interpreter
from tests.hallucination.eval_fixtures import write_fixture


@pytest.mark.parametrize("argv", [["vlm", "--help"], ["vlm", "eval", "--help"]], ids=" ".join)
def test_help_imports_no_heavy_module(argv, tmp_path):
    assert run_in_fresh_interpreter(argv, tmp_path) == {"code": 0, "heavy": []}


def test_argument_error_imports_no_heavy_module(tmp_path):
    argv = ["vlm", "eval", "--out", "o", "--pope", "p.json", "--batch-size", "0"]
    assert run_in_fresh_interpreter(argv, tmp_path) == {"code": 2, "heavy": []}


def test_a_run_with_the_test_answerer_imports_no_heavy_module(tmp_path):
    fixture = write_fixture(tmp_path / "set")
    result = run_in_fresh_interpreter(fixture.argv(tmp_path / "out"), tmp_path)
    assert result == {"code": None, "heavy": []}  # main returned 0 without raising SystemExit
