"""The prompt sets in ``data/``: readable by the CLIs, reproducible from their generator, and (on
the real SmolLM2 weights) an IOI set that the model solves and whose corruption removes the cue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from probe.capture.record import AttentionRecord
from probe.cli import main
from probe.cli_capture import read_prompts
from tests.helpers import load_script

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def make_ioi():
    """``data/make_ioi.py`` (``data/`` is a folder, not a package)."""
    return load_script(Path("data") / "make_ioi.py")


@pytest.mark.parametrize("name", ["demo.txt", "ioi.txt"])
def test_prompt_files_read_as_distinct_one_line_prompts(name):
    prompts = read_prompts(DATA / "prompts" / name)
    assert len(prompts) >= 8 and len(set(prompts)) == len(prompts)
    assert all(p == p.strip() for p in prompts)


def test_committed_ioi_files_are_what_the_generator_writes(make_ioi, tmp_path):
    make_ioi.main(["--out", str(tmp_path)])
    assert (tmp_path / "prompts" / "ioi.txt").read_bytes() == (DATA / "prompts" / "ioi.txt").read_bytes()
    assert (tmp_path / "ioi.jsonl").read_bytes() == (DATA / "ioi.jsonl").read_bytes()
    written = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file())
    assert written == ["ioi.jsonl", "prompts/ioi.txt"]  # no temporary left behind


def test_ioi_items_name_the_indirect_object_once_and_the_subject_twice(make_ioi):
    items = make_ioi.read_items(DATA / "ioi.jsonl")
    assert [item.prompt for item in items] == read_prompts(DATA / "prompts" / "ioi.txt")
    assert sum(item.order == "ABBA" for item in items) == sum(item.order == "BABA" for item in items)
    assert len({item.template for item in items}) == len(make_ioi.TEMPLATES)
    for item in items:
        io, s = item.answer.strip(), item.subject.strip()
        words = item.prompt.replace(",", " ").replace(".", " ").split()
        assert words.count(io) == 1 and words.count(s) == 2 and item.third not in words
        first = words.index(io) < words.index(s)
        assert first == (item.order == "ABBA")
        # The corrupted prompt differs only in the subject's second mention, now the third name.
        head, _, tail = item.prompt.rpartition(s)
        assert item.corrupted == head + item.third + tail
        assert item.answer.startswith(" ") and item.subject.startswith(" ")


def test_ioi_generator_is_seeded_and_checks_its_inputs(make_ioi):
    assert make_ioi.ioi_items(10, seed=3) == make_ioi.ioi_items(10, seed=3)
    assert make_ioi.ioi_items(10, seed=3) != make_ioi.ioi_items(10, seed=4)
    with pytest.raises(ValueError, match="even number"):
        make_ioi.ioi_items(7)


def test_malformed_ioi_file_names_the_line_and_the_fix(make_ioi, tmp_path):
    good = json.loads((DATA / "ioi.jsonl").read_text().splitlines()[0])
    path = tmp_path / "ioi.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"ioi.jsonl:2: not valid JSON.*make_ioi"):
        make_ioi.read_items(path)
    path.write_text(json.dumps({**good, "extra": 1}) + "\n")
    with pytest.raises(ValueError, match=r"ioi.jsonl:1: expected an object with the fields"):
        make_ioi.read_items(path)


def test_capture_cli_reads_the_shipped_prompt_file(tiny_folder, tmp_path, capsys):
    out = tmp_path / "rec"
    args = ["capture", "--model", str(tiny_folder), "--prompts-file", str(DATA / "prompts" / "demo.txt")]
    assert main(args + ["--out", str(out)]) == 0
    meta = AttentionRecord.load(tmp_path / "rec").metadata()
    assert len(meta["tokens"]) == len(read_prompts(DATA / "prompts" / "demo.txt"))  # one row per prompt
    assert "first-token share" in capsys.readouterr().out


def _logit_differences(model, prompts: list[str], answers: list[str], subjects: list[str]) -> torch.Tensor:
    """logit(answer) - logit(subject) at each prompt's last position (the tokenizer pads left)."""
    tok = model.tokenizer
    assert tok.padding_side == "left"
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        last = model.hf(**batch).logits[:, -1]
    ids = [[tok(name, add_special_tokens=False).input_ids for name in names] for names in (answers, subjects)]
    assert all(len(i) == 1 for group in ids for i in group), "every name should be one token"
    answer, subject = (torch.tensor([i[0] for i in group]) for group in ids)
    return last.gather(1, answer[:, None]).squeeze(1) - last.gather(1, subject[:, None]).squeeze(1)


@pytest.mark.real_model
def test_smollm2_solves_the_ioi_set_and_the_corruption_removes_the_cue(make_ioi):
    """Measured on CPU (torch 2.13): 47 of 48 prompts prefer the indirect object, mean logit difference
    4.45; the corrupted prompts -0.01. The bounds leave room for other torch builds."""
    from probe import load_model

    model = load_model("smollm2-135m")
    items = make_ioi.read_items(DATA / "ioi.jsonl")
    answers, subjects = [i.answer for i in items], [i.subject for i in items]
    clean = _logit_differences(model, [i.prompt for i in items], answers, subjects)
    corrupted = _logit_differences(model, [i.corrupted for i in items], answers, subjects)
    assert (clean > 0).float().mean() >= 0.85
    assert clean.mean() > 3.0
    assert corrupted.mean() < 0.25 * clean.mean()
