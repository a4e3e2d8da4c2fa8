"""The task generators in ``data/``: seeded (the shipped files are what they write), balanced, and
each item's corrupted twin differs from the clean prompt only in the task's cue."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import SHARED, gpt2_tokenizer, load_script

DATA = Path(__file__).resolve().parents[2] / "data"
GENERATORS = {
    "greater_than.jsonl": "make_greater_than.py",
    "docstring.jsonl": "make_docstring.py",
    "colored_objects.jsonl": "make_colored_objects.py",
}
BBH_COLOURED = SHARED / "data" / "bbh" / "reasoning_about_colored_objects.json"


@pytest.fixture(scope="module")
def scripts():
    return {name: load_script(Path("data") / script) for name, script in GENERATORS.items()}


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_shipped_file_is_what_the_generator_writes(name, scripts, tmp_path):
    out = tmp_path / name
    assert scripts[name].main(["--out", str(out)]) == 0
    assert out.read_bytes() == (DATA / name).read_bytes()
    assert [f.name for f in tmp_path.iterdir()] == [name]  # no temporary left behind
    other = tmp_path / "other.jsonl"
    scripts[name].main(["--out", str(other), "--seed", "1"])
    assert other.read_bytes() != out.read_bytes()


def test_greater_than_balances_yy_and_corrupts_to_01(scripts):
    records = _records("greater_than.jsonl")
    assert Counter(r["yy"] for r in records) == {yy: 2 for yy in range(2, 99)}
    for r in records:
        xx, yy = str(r["century"]), r["yy"]
        assert r["prompt"] == f"The {r['noun']} lasted from the year {xx}{yy:02d} to the year {xx}"
        assert r["corrupted"] == f"The {r['noun']} lasted from the year {xx}01 to the year {xx}"
        assert (r["answer"], r["contrast"]) == (f"{yy + 1:02d}", f"{yy - 1:02d}")
        assert 12 <= r["century"] <= 18


def test_greater_than_year_table_is_gpt2s():
    tok = gpt2_tokenizer()
    make = load_script(Path("data") / "make_greater_than.py")
    split_otherwise = {y for y in range(1200, 2000)
                       if tok.convert_ids_to_tokens(tok(f" {y}")["input_ids"]) != [f"Ġ{y // 100}", f"{y % 100:02d}"]}
    assert split_otherwise == make.GPT2_SPLIT_OTHERWISE


def test_ioi_is_balanced_over_abba_and_baba():
    items = load_script(Path("data") / "make_ioi.py").read_items(DATA / "ioi.jsonl")
    assert Counter(item.order for item in items) == {"ABBA": 24, "BABA": 24}


def test_docstring_answer_is_the_def_argument_after_the_documented_ones():
    for r in _records("docstring.jsonl"):
        def_args = re.search(r"\(self, (.*)\):", r["prompt"])[1].split(", ")
        documented = re.findall(r":param (\w+):", r["prompt"])
        assert len(def_args) == 6 and documented == def_args[2:4]
        assert r["answer"] == " " + def_args[4] and r["contrast"] == " " + def_args[5]
        assert r["prompt"].endswith("\n    :param") and r["corrupted"].endswith("\n    :param")
        corrupt_args = re.search(r"\(self, (.*)\):", r["corrupted"])[1].split(", ")
        assert corrupt_args[:2] == def_args[:2] and corrupt_args[5] == def_args[5]
        corrupt_documented = re.findall(r":param (\w+):", r["corrupted"])
        assert not set(corrupt_args[2:5] + corrupt_documented) & set(def_args)
        names = {" " + name for name in def_args + corrupt_args + corrupt_documented}
        assert set(r["wrong"]) == names - {r["answer"]} and len(r["wrong"]) == len(names) - 1


def _question(prompt: str) -> tuple[list[str], list[str], str]:
    """Colours, objects and the asked object of a prompt's last question."""
    last = prompt.split("Q: ")[-1]
    pairs = re.findall(r"\ban? (\w+) (\w+)", last.split(". What")[0])
    return [c for c, _ in pairs], [o for _, o in pairs], re.search(r"What color is the (\w+)\?", last)[1]


def test_colored_objects_balance_the_asked_place_and_swap_two_colours():
    records = _records("colored_objects.jsonl")
    assert Counter(r["asked"] for r in records) == {0: 50, 1: 50, 2: 50}
    for r in records:
        colours, objects, asked = _question(r["prompt"])
        bad_colours, bad_objects, bad_asked = _question(r["corrupted"])
        assert (bad_objects, bad_asked) == (objects, asked) and objects.index(asked) == r["asked"]
        assert r["answer"] == " " + colours[r["asked"]] and r["contrast"] == " " + colours[r["swapped"]]
        swapped = list(colours)
        swapped[r["asked"]], swapped[r["swapped"]] = swapped[r["swapped"]], swapped[r["asked"]]
        assert bad_colours == swapped and r["answer"] != r["contrast"]
        shot, _, _ = r["prompt"].rpartition("Q: ")
        assert r["corrupted"].startswith(shot) and shot.count("\nA: ") == 1  # one solved example first


DESK = "On the desk, I see a red pen, an orange cup, and a grey bowl. What color is the cup?"


def test_colored_objects_from_a_bbh_file(scripts, tmp_path):
    bbh = tmp_path / "bbh.json"
    bbh.write_text(json.dumps({"examples": [
        {"input": f"{DESK}\nOptions:\n(A) red", "target": "(B)"},
        {"input": "On the floor, you see a bunch of things arranged in a row: a blue mug and a red pen. "
                  "What is the color of the left-most thing?\nOptions:\n(A) red", "target": "(A)"},
        {"input": "On the table, there is a mauve pair of sunglasses and a teal jug. What is the color of the pair "
                  "of sunglasses?", "target": "(C)"},
    ]}))
    items = scripts["colored_objects.jsonl"].bbh_items(bbh)
    assert len(items) == 2  # the positional question is left out
    assert items[0].prompt == f"Q: {DESK}\nA:"
    assert items[0].answer == " orange" and items[0].contrast in (" red", " grey")
    colours, _, _ = _question(items[0].corrupted)
    assert colours[1] == items[0].contrast.strip() and colours.count("orange") == 1
    assert " a orange" not in items[0].corrupted and " an red" not in items[0].corrupted
    assert (items[1].answer, items[1].contrast) == (" mauve", " teal")
    assert items[1].corrupted.endswith("a teal pair of sunglasses and a mauve jug. What color is the pair of "
                                       "sunglasses?\nA:")


@pytest.mark.skipif(not BBH_COLOURED.exists(), reason="needs ../shared/data/bbh")
def test_colored_objects_from_the_shared_bbh_task(scripts):
    items = scripts["colored_objects.jsonl"].bbh_items(BBH_COLOURED)
    assert len(items) == 28  # its questions about a named object's colour


def test_generators_check_their_inputs(scripts):
    with pytest.raises(ValueError, match="multiple of 3"):
        scripts["colored_objects.jsonl"].colored_objects_items(10)
    with pytest.raises(ValueError, match="per_yy"):
        scripts["greater_than.jsonl"].greater_than_items(per_yy=0)
    with pytest.raises(ValueError, match="no century"):
        scripts["greater_than.jsonl"].greater_than_items(centuries=(19, 19))
    with pytest.raises(ValueError, match="at least 1"):
        scripts["docstring.jsonl"].docstring_items(0)
