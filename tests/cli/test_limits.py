"""Nonsense counts, limits and ports fail at parse time with a message naming the option."""

from __future__ import annotations

import pytest

from probe.cli import build_parser

SINKS = ["sinks", "--out", "o.jsonl", "--prompt", "x"]
SEARCH = ["act", "search", "--out", "o.jsonl"]
EVAL = ["act", "eval", "--out", "o.jsonl"]
CAPTURE = ["capture", "--prompt", "x"]


@pytest.mark.parametrize("argv, option", [
    (SINKS + ["--limit", "0"], "--limit"),
    (SINKS + ["--limit", "-1"], "--limit"),
    (SINKS + ["--min-visible", "0"], "--min-visible"),
    (CAPTURE + ["--top", "-1"], "--top"),
    (CAPTURE + ["--block-size", "0"], "--block-size"),
    (SEARCH + ["--n-calibration", "-1"], "--n-calibration"),
    (SEARCH + ["--batch-size", "0"], "--batch-size"),
    (SEARCH + ["--min-visible", "0"], "--min-visible"),
    (SEARCH + ["--max-prompt-chars", "-5"], "--max-prompt-chars"),
    (EVAL + ["--n-test", "0"], "--n-test"),
    (EVAL + ["--n-random", "-1"], "--n-random"),
    (["dashboard", "--port", "99999"], "--port"),
    (["dashboard", "--port", "0"], "--port"),
    (["dashboard", "--long-input", "0"], "--long-input"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else value)
def test_bad_number_fails_at_parse_time(argv, option, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and option in error[0], error


@pytest.mark.parametrize("argv, attribute, value", [
    (CAPTURE + ["--top", "0"], "top", 0),
    (SEARCH + ["--max-prompt-chars", "0"], "max_prompt_chars", 0),
    (EVAL + ["--n-random", "0"], "n_random", 0),
    (["dashboard", "--port", "65535"], "port", 65535),
    (["dashboard", "--port", "1"], "port", 1),
    (SINKS + ["--limit", "1"], "limit", 1),
])
def test_edge_values_that_make_sense_are_kept(argv, attribute, value):
    assert getattr(build_parser().parse_args(argv), attribute) == value
