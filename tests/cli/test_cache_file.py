"""The head-search cache: garbage is refused at once; a kill's partial last line is tolerated."""

from __future__ import annotations

import json

import pytest

from circuits.sinks.cache import CacheMismatch, append_record, read_cache, start_cache

HEADER = {"model": "tiny", "tau": 0.1}


def header_line() -> str:
    return json.dumps({"kind": "header", "settings": HEADER}, sort_keys=True) + "\n"


@pytest.mark.parametrize("text", [
    "hello\nworld\n",
    "{not json\n",
    '{"layer": 0, "head": 1}\n',
    "[1, 2]\n",
    '42\n{"kind": "header"}\n',
], ids=["words", "broken-json", "no-header", "list", "number-first"])
def test_garbage_first_line_is_refused_and_left_alone(tmp_path, text):
    cache = tmp_path / "c.jsonl"
    cache.write_text(text)
    with pytest.raises(ValueError, match=r"c\.jsonl.*delete it or pass another --cache"):
        start_cache(cache, HEADER)
    assert cache.read_text() == text


def test_garbage_line_after_the_header_is_refused(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text(header_line() + "garbage\n" + '{"layer": 0, "head": 0}\n')
    with pytest.raises(ValueError, match=r"line 2"):
        read_cache(cache, HEADER)


def test_other_settings_are_still_a_mismatch(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text(header_line())
    with pytest.raises(CacheMismatch, match="--cache"):
        read_cache(cache, {"model": "other"})


def test_partial_last_line_is_tolerated_and_dropped(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text(header_line() + '{"layer": 0, "head": 0}\n{"layer": 0, "he')
    assert start_cache(cache, HEADER) == [{"layer": 0, "head": 0}]
    append_record(cache, {"layer": 0, "head": 1})
    assert read_cache(cache, HEADER) == [{"layer": 0, "head": 0}, {"layer": 0, "head": 1}]
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_record_cut_just_before_its_newline_is_kept(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text(header_line() + '{"head": 0, "layer": 0}')
    assert start_cache(cache, HEADER) == [{"head": 0, "layer": 0}]
    append_record(cache, {"layer": 0, "head": 1})
    assert len(read_cache(cache, HEADER)) == 2


def test_partial_header_starts_the_cache_again(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text('{"kind": "hea')
    assert start_cache(cache, HEADER) == []
    append_record(cache, {"layer": 0, "head": 0})
    assert read_cache(cache, HEADER) == [{"layer": 0, "head": 0}]


def test_unterminated_line_that_is_no_header_is_refused(tmp_path):
    cache = tmp_path / "c.jsonl"
    cache.write_text("hello")
    with pytest.raises(ValueError, match="delete it or pass another --cache"):
        start_cache(cache, HEADER)
    assert cache.read_text() == "hello"
