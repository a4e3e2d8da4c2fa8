"""``headscope vlm eval --answerer hf`` on a tiny random LLaVA folder: batched generation, edits, failures."""

from __future__ import annotations

import json

import pytest

from circuits.hallucination.conditions import register_edit
from probe.cli import main
from tests.hallucination.eval_fixtures import write_fixture
from tests.helpers import one_torch_thread
from tests.vision.tiny_vlms import save_tiny_vlm


def silence_every_head(model) -> list:
    """A test edit strong enough to change any answer: every head's output times 0."""
    from probe.edits import ScaleHeads

    return [ScaleHeads(0.0, layers=range(model.geometry.n_layers))]


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory):
    return save_tiny_vlm("llava", tmp_path_factory.mktemp("llava") / "tiny-llava")


def test_tiny_llava_answers_every_item_under_each_condition(llava_folder, tmp_path):
    register_edit("test-silence", silence_every_head, overwrite=True)
    fixture = write_fixture(tmp_path / "set")
    out = tmp_path / "out"
    argv = fixture.argv(out, "--model", str(llava_folder), "--edit", "test-silence", "--limit", "3",
                        "--answer-tokens", "2", "--max-new-tokens", "4", answerer="hf", batch_size=2)
    with one_torch_thread():
        assert main(argv) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["condition"] for r in records] == ["none"] * 6 + ["act"] * 6 + ["test-silence"] * 6
    failed = [r for r in records if r["error"] is not None]
    assert [r["image"] for r in failed] == ["corrupt.png"] * 3  # the CHAIR item of the corrupt image, per condition
    answers = {c: [r["answer"] for r in records if r["condition"] == c and r["error"] is None]
               for c in ("none", "test-silence")}
    assert all(isinstance(a, str) for a in answers["none"])
    assert answers["none"] != answers["test-silence"]  # the edits were applied during generate
    summary = json.loads((out / "summary.json").read_text())
    assert {(g["condition"], g["kind"]) for g in summary["groups"]} == {
        (c, k) for c in ("none", "act", "test-silence") for k in ("pope", "chair")}


def test_a_text_only_model_is_refused_before_any_item(tmp_path, tiny_folder):
    fixture = write_fixture(tmp_path / "set")
    out = tmp_path / "out"
    assert main(fixture.argv(out, "--model", str(tiny_folder), answerer="hf")) == 2
    assert all(path.stat().st_size == 0 for path in (out / "shards").iterdir())  # no record
    assert not (out / "run.json").exists()  # a mistyped --model does not pin the folder to it
