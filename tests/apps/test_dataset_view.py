"""Data-set views: prompt files, IOI roles found in tokens, averages over prompts."""

from __future__ import annotations

import json

import pytest
import torch

from apps.heads_dashboard.dataset_view import (averaged_attention, averaged_metric, read_prompt_set,
                                               role_positions)
from apps.heads_dashboard.metrics import metric_grid
from circuits.heads.roles import RoleText, find_roles
from probe import CaptureConfig, capture
from probe.errors import InputError
from tests.helpers import REPO

N_ITEMS = 6


@pytest.fixture(scope="module")
def ioi_set(tmp_path_factory):
    lines = (REPO / "data" / "ioi.jsonl").read_text().splitlines()[:N_ITEMS]
    path = tmp_path_factory.mktemp("sets") / "ioi6.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return read_prompt_set(path), [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def ioi_record(tiny, ioi_set):
    return capture(tiny, list(ioi_set[0].prompts), CaptureConfig(mode="pattern"))


def _by_offsets(tokenizer, text: str, word: str, occurrence: int) -> int:
    """The token holding the last character of the ``occurrence``-th `` word`` (tokenizer offsets)."""
    start = -1
    for _ in range(occurrence):
        start = text.index(word, start + 1)
    last = start + len(word) - 1
    spans = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return next(i for i, (a, b) in enumerate(spans) if a <= last < b)


def test_shipped_files_read():
    ioi = read_prompt_set(REPO / "data" / "ioi.jsonl")
    assert len(ioi.prompts) == 48 and ioi.role_names == ("IO", "S1", "S2", "END")
    plain = read_prompt_set(REPO / "data" / "prompts" / "ioi.txt")
    assert plain.prompts == ioi.prompts and plain.roles is None


def test_roles_match_the_tokenizer_offsets(tiny, ioi_set, ioi_record):
    prompt_set, items = ioi_set
    positions = role_positions(ioi_record, prompt_set)
    for p, (item, found) in enumerate(zip(items, positions)):
        text = item["prompt"]
        assert found["IO"] == _by_offsets(tiny.tokenizer, text, item["answer"], 1)
        assert found["S1"] == _by_offsets(tiny.tokenizer, text, item["subject"], 1)
        assert found["S2"] == _by_offsets(tiny.tokenizer, text, item["subject"], 2)
        assert found["END"] == len(ioi_record.tokens[p]) - 1
        assert found["S1"] < found["S2"] < found["END"]


def test_averaged_attention_by_role_and_from_the_end(ioi_set, ioi_record):
    positions = role_positions(ioi_record, ioi_set[0])
    by_role = averaged_attention(ioi_record, "END", "IO", positions)
    expected = torch.stack([torch.stack([ioi_record.pattern(layer, p)[:, positions[p]["END"], positions[p]["IO"]]
                                         for layer in ioi_record.layers]) for p in range(N_ITEMS)]).mean(0)
    torch.testing.assert_close(by_role.values, expected, rtol=1e-5, atol=1e-7)
    assert (by_role.used, by_role.skipped) == (N_ITEMS, 0) and "END → IO over 6 prompts" in by_role.label
    from_end = averaged_attention(ioi_record, -1, -3)
    expected = torch.stack([torch.stack([ioi_record.pattern(layer, p)[:, -1, -3] for layer in ioi_record.layers])
                            for p in range(N_ITEMS)]).mean(0)
    torch.testing.assert_close(from_end.values, expected, rtol=1e-5, atol=1e-7)


def test_short_prompts_are_skipped_and_counted(tiny, tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_text("Hi there\nThe cat sat on the mat and looked around\nA dog ran home quickly today\n")
    prompt_set = read_prompt_set(path)
    record = capture(tiny, list(prompt_set.prompts), CaptureConfig(mode="pattern"))
    averaged = averaged_attention(record, -1, -5)
    assert (averaged.used, averaged.skipped) == (2, 1)
    expected = (torch.stack([record.pattern(layer, 1)[:, -1, -5] for layer in record.layers])
                + torch.stack([record.pattern(layer, 2)[:, -1, -5] for layer in record.layers])) / 2
    torch.testing.assert_close(averaged.values, expected, rtol=1e-5, atol=1e-7)
    mean_share = averaged_metric(record, "first_token_share")
    direct = torch.stack([metric_grid(record, "first_token_share", p) for p in range(3)]).mean(0)
    torch.testing.assert_close(mean_share, direct)


def test_a_name_opening_the_prompt_and_a_name_of_two_tokens():
    tokens = ["Mary", " and", " Jo", "hanna", " met", ".", " Jo", "hanna", " left"]
    spec = {"IO": RoleText("Mary"), "S2": RoleText(" Johanna", 2), "END": None}
    assert find_roles(tokens, spec) == {"IO": 0, "S2": 7, "END": 8}


@pytest.mark.parametrize("query, key, roles, message", [
    ("END", "XX", True, "unknown role 'XX'; this data set's roles: IO, S1, S2, END"),
    (-1, 2, True, "give a negative integer"),
    ("END", "IO", False, "unknown role 'END'; this data set's roles: none"),
    (-1, -99, False, "no prompt has both"),
])
def test_bad_positions(ioi_set, ioi_record, query, key, roles, message):
    positions = role_positions(ioi_record, ioi_set[0]) if roles else None
    with pytest.raises(InputError, match=message):
        averaged_attention(ioi_record, query, key, positions)


@pytest.mark.parametrize("name, text, message", [
    ("set.csv", "a,b", "is a .txt file"),
    ("set.jsonl", "{not json", "line 1 is not JSON"),
    ("set.jsonl", '{"text": "no prompt field"}', "needs a non-empty text field"),
    ("set.txt", "\n\n", "holds no prompts"),
])
def test_bad_prompt_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_prompt_set(path)


def test_roles_of_another_record_are_refused(ioi_set, pattern_record):
    with pytest.raises(InputError, match="the record holds 2 prompts"):
        role_positions(pattern_record, ioi_set[0])
    with pytest.raises(InputError, match="names no roles"):
        role_positions(pattern_record, read_prompt_set(REPO / "data" / "prompts" / "ioi.txt"))
    with pytest.raises(InputError, match="occurs 0 time"):
        find_roles(["a", " b"], {"IO": RoleText("Mary")})
