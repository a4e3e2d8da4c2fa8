"""``headscope vlm eval`` in this process with the test answerer: records, failures, resume, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuits.hallucination.answerers import HashAnswerer, Request
from circuits.hallucination.items import EvalItem, ImageError, load_image, register_image_source
from circuits.hallucination.runner import RunSettings, run_items
from circuits.hallucination.shards import Shard, shard_from_env
from circuits.hallucination.store import ShardWriter, check_manifest, read_records, shard_path
from probe.cli import main
from probe.errors import InputError
from tests.hallucination.eval_fixtures import CHAIR_ITEMS, FAILED_ITEMS, POPE_ITEMS, write_fixture


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def fixture(tmp_path):
    return write_fixture(tmp_path / "set")


def test_failed_images_are_listed_and_the_other_items_complete(fixture, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(fixture.argv(out)) == 0
    records = lines(out / "results.jsonl")
    assert len(records) == 2 * (POPE_ITEMS + CHAIR_ITEMS)
    assert [r["condition"] for r in records] == ["none"] * 23 + ["act"] * 23
    failed = [r for r in records if r["error"] is not None]
    assert len(failed) == 2 * FAILED_ITEMS
    assert all(r["answer"] is None for r in failed)
    assert {r["image"] for r in failed} == {"missing.png", "corrupt.png"}
    assert all("not found" in r["error"] for r in failed if r["image"] == "missing.png")
    assert all("corrupt" in r["error"] and str(fixture.root) not in r["error"] for r in failed
               if r["image"] == "corrupt.png")
    assert all(isinstance(r["answer"], str) and r["answer"] for r in records if r["error"] is None)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["failures"]) == 2 * FAILED_ITEMS and summary["missing"] == []
    pope = [g for g in summary["groups"] if g["kind"] == "pope"]
    assert [(g["condition"], g["items"], g["failed"]) for g in pope] == [("none", 16, 4), ("act", 16, 4)]
    assert pope[0]["metrics"]["n"] == 12 and 0 <= pope[0]["metrics"]["accuracy"] <= 1
    accuracy = pope[0]["intervals"]["accuracy"]
    assert accuracy["low"] <= accuracy["value"] == pope[0]["metrics"]["accuracy"] <= accuracy["high"]
    chair = [g for g in summary["groups"] if g["kind"] == "chair"]
    assert [(g["answered"], g["failed"]) for g in chair] == [(6, 1), (6, 1)]
    assert set(chair[0]["metrics"]) >= {"chair_s", "chair_i", "recall"} == set(chair[0]["intervals"])
    printed = capsys.readouterr().out
    assert "POPE" in printed and "CHAIR" in printed and "10 failed" in printed
    assert (out / "summary.html").read_text().count("plotly") > 0
    assert "corrupt.png" in (out / "summary.txt").read_text()


def test_rerun_after_a_torn_shard_gives_the_same_results(fixture, tmp_path):
    """A shard cut mid-unit (whole lines, then half a line) is continued to the same results."""
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert main(fixture.argv(reference)) == 0
    shard = out / "shards" / "rank000-of-001.jsonl"
    shard.parent.mkdir(parents=True)
    whole = (reference / "shards" / "rank000-of-001.jsonl").read_text().splitlines(keepends=True)
    shard.write_text("".join(whole[:9]) + whole[9][:25])
    assert main(fixture.argv(out, batch_size=4)) == 0
    assert (out / "results.jsonl").read_bytes() == (reference / "results.jsonl").read_bytes()
    assert (out / "summary.json").read_text() == (reference / "summary.json").read_text()
    keys = [(r["condition"], r["item_id"]) for r in lines(shard)]
    assert len(keys) == len(set(keys)) == 46


def test_a_finished_run_answers_nothing_again(fixture, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(fixture.argv(out)) == 0
    before = (out / "shards" / "rank000-of-001.jsonl").read_bytes()
    capsys.readouterr()
    assert main(fixture.argv(out)) == 0
    assert "46 records done before, 0 items to answer" in capsys.readouterr().out
    assert (out / "shards" / "rank000-of-001.jsonl").read_bytes() == before


def test_limit_takes_the_first_items_of_each_set(fixture, tmp_path):
    out = tmp_path / "out"
    assert main(fixture.argv(out, "--limit", "2")) == 0
    ids = [r["item_id"] for r in lines(out / "results.jsonl") if r["condition"] == "none"]
    assert ids == ["pope/fixture/1", "pope/fixture/2", "chair/captions/corrupt.png", "chair/captions/img0.png"]


def test_read_records_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    good = '{"condition": "none", "item_id": "a"}\n'
    path.write_text(good + '{"condition": "no')
    assert read_records(path) == ([{"condition": "none", "item_id": "a"}], len(good))
    path.write_text(good + "\0\0\0\n")  # a zero-filled tail
    assert read_records(path)[1] == len(good)
    path.write_text("not json\n" + good)
    with pytest.raises(InputError, match="line 1 is not a result record"):
        read_records(path)


def test_shard_writer_truncates_a_torn_tail_and_appends_whole_units(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"condition": "none", "item_id": "a"}\n{"condition"')
    with ShardWriter(path) as writer:
        writer.append([{"condition": "none", "item_id": "b"}, {"condition": "act", "item_id": "b"}])
    assert [r["item_id"] for r in read_records(path)[0]] == ["a", "b", "b"]
    assert path.read_text().endswith("}\n")


def test_a_restart_with_other_settings_is_refused(tmp_path):
    check_manifest(tmp_path, {"model": "a", "answer_tokens": 8}, write=True)
    check_manifest(tmp_path, {"model": "a", "answer_tokens": 8}, write=True)
    with pytest.raises(InputError, match="other settings \\(answer_tokens\\)"):
        check_manifest(tmp_path, {"model": "a", "answer_tokens": 4}, write=False)


class PickyAnswerer(HashAnswerer):
    """Refuses any batch that holds the prompt ``bad`` (as a model refuses a too-long prompt)."""

    def answer(self, batch, request):
        if any(prompt == "bad" for _, prompt in batch):
            raise ValueError("prompt refused")
        return super().answer(batch, request)


def pope_item(i: int, image: str, prompt: str = "Is there a dog in the image?") -> EvalItem:
    return EvalItem(f"pope/t/{i}", image, prompt, "pope", "t", label="yes")


def test_a_batch_the_answerer_refuses_is_retried_item_by_item(fixture, tmp_path):
    items = [pope_item(0, "img0.png"), pope_item(1, "img1.png", "bad"), pope_item(2, "img2.png")]
    settings = RunSettings(("none",), batch_size=3, max_new_tokens={"pope": 2}, images_dir=fixture.images)
    with ShardWriter(tmp_path / "s.jsonl") as writer:
        counts = run_items(items, PickyAnswerer(), writer, set(), settings)
    records = read_records(tmp_path / "s.jsonl")[0]
    assert (counts.records, counts.failures) == (3, 1)
    assert [r["error"] for r in records] == [None, "ValueError: prompt refused", None]
    assert records[0]["answer"] in ("Yes.", "No.")


def test_done_items_are_skipped(fixture, tmp_path):
    items = [pope_item(0, "img0.png"), pope_item(1, "img1.png")]
    settings = RunSettings(("none", "act"), batch_size=2, max_new_tokens={"pope": 2}, images_dir=fixture.images)
    with ShardWriter(tmp_path / "s.jsonl") as writer:
        run_items(items, HashAnswerer(), writer, {("none", "pope/t/0"), ("act", "pope/t/0"), ("none", "pope/t/1")},
                  settings)
    assert [(r["condition"], r["item_id"]) for r in read_records(tmp_path / "s.jsonl")[0]] == [("act", "pope/t/1")]


def test_shards_split_items_by_position():
    items = list(range(7))
    assert [Shard(r, 3).take(items) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard_from_env({}) == Shard(0, 1, 0)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Shard(1, 2, 1)
    with pytest.raises(InputError, match="bad torchrun environment"):
        shard_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    assert shard_path(Path("o"), 1, 2) == Path("o/shards/rank001-of-002.jsonl")


def test_image_sources_are_a_registry(fixture):
    from PIL import Image

    register_image_source("testcolour", lambda ref, root: Image.new("RGB", (4, 4), ref.split(":")[1]), overwrite=True)
    assert load_image("testcolour:red").getpixel((0, 0)) == (255, 0, 0)
    assert load_image("img0.png", fixture.images).size == (16, 16)
    assert load_image(f"file:{fixture.images / 'img1.png'}").size == (16, 16)
    with pytest.raises(ImageError, match="no such file below the image folder"):
        load_image("nothere.png", fixture.images)
    with pytest.raises(ImageError, match="cannot load image 'testcolour:nocolour'"):
        load_image("testcolour:nocolour")


def test_the_hash_answerer_depends_on_image_prompt_and_condition(fixture):
    answerer = HashAnswerer()
    image = load_image("img0.png", fixture.images)
    pope, chair = Request("none", "pope", 2), Request("none", "chair", 9)
    assert answerer.answer([(image, "q")], pope) == answerer.answer([(image, "q")], pope)
    assert answerer.answer([(image, "q")], chair)[0].startswith("A picture of a")


def test_unreadable_sets_are_skipped_and_listed_while_the_others_run(fixture, tmp_path, capsys):
    bad_pope = tmp_path / "extra_pope.json"
    bad_pope.write_text(json.dumps({"question_id": 1, "image": "img0.png", "text": "Is there a dog in the image?",
                                    "label": "yes", "answer": "yes"}) + "\n")
    bad_annotations = tmp_path / "objects.json.gz"
    bad_annotations.write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "out"
    argv = ["vlm", "eval", "--answerer", "fake-hash", "--out", str(out), "--images", str(fixture.images),
            "--pope", str(bad_pope), "--pope", str(fixture.pope), "--chair-captions",
            "--annotations", str(bad_annotations), "--chair-vocabulary", str(fixture.vocabulary), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 2 and "error:" not in err
    assert "--pope " + str(bad_pope) + " skipped" in err and "unknown field 'answer'" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [s["set"] for s in summary["skipped_sets"]] == [f"--pope {bad_pope}", "--chair-captions"]
    assert "gzip" in summary["skipped_sets"][1]["error"]
    assert [(g["kind"], g["items"]) for g in summary["groups"]] == [("pope", POPE_ITEMS)]
    assert "2 item set(s) skipped" in (out / "summary.txt").read_text()


def test_an_unregistered_scheme_is_named(fixture):
    with pytest.raises(ImageError, match="'nosuchsource' is no registered image source either \\(sources: file"):
        load_image("nosuchsource:scene:1", fixture.images)


def test_a_group_whose_items_all_failed_shows_dashes():
    from circuits.hallucination.summary import summarize, summary_table

    records = [{"condition": "none", "item_id": f"pope/a/{i}", "kind": "pope", "split": "a", "image": "x.png",
                "label": "yes", "answer": None, "error": "image 'x.png' not found"} for i in range(2)]
    records.append({"condition": "none", "item_id": "pope/b/0", "kind": "pope", "split": "b", "image": "y.png",
                    "label": "yes", "answer": "Yes", "error": None})
    table = summary_table(summarize(records))
    assert table.splitlines()[2].split() == ["none", "a", "2", "2", "-", "-", "-", "-", "-"]
    assert table.splitlines()[3].split()[:5] == ["none", "b", "1", "0", "1.0000"]


def test_split_names_follow_pope_file_names():
    from circuits.hallucination.item_sets import split_name

    assert [split_name(Path(name)) for name in ("coco_pope_random.json", "world_pope_adversarial.json",
                                                "mine.jsonl.gz", "_pope_x.json")] == [
        "random", "world-adversarial", "mine", "_pope_x"]


def test_items_of_a_registered_image_source_run_end_to_end(fixture, tmp_path):
    """As the synthetic world's sets do: POPE questions and annotation keys naming ``SCHEME:...`` images."""
    from PIL import Image

    register_image_source("testcolour", lambda ref, root: Image.new("RGB", (4, 4), ref.split(":")[1]), overwrite=True)
    pope = tmp_path / "colours_pope_random.json"
    pope.write_text("".join(json.dumps({"question_id": i, "image": f"testcolour:{c}", "text": "Is there a cat?",
                                        "label": "yes"}) + "\n" for i, c in enumerate(("red", "blue", "nocolour"))))
    annotations = tmp_path / "colours.jsonl"
    annotations.write_text("".join(json.dumps({"image": f"testcolour:{c}", "objects": ["cat"]}) + "\n"
                                   for c in ("red", "green")))
    out = tmp_path / "out"
    assert main(["vlm", "eval", "--answerer", "fake-hash", "--out", str(out), "--pope", str(pope), "--chair-captions",
                 "--annotations", str(annotations), "--chair-vocabulary", str(fixture.vocabulary),
                 "--no-progress"]) == 0
    records = lines(out / "results.jsonl")
    assert [(r["item_id"], r["error"] is None) for r in records] == [
        ("pope/colours-random/0", True), ("pope/colours-random/1", True), ("pope/colours-random/2", False),
        ("chair/captions/testcolour:green", True), ("chair/captions/testcolour:red", True)]


def test_a_shard_being_written_is_not_opened_twice(tmp_path):
    path = tmp_path / "s.jsonl"
    with ShardWriter(path):
        with pytest.raises(InputError, match="another process is writing"):
            ShardWriter(path)
    with ShardWriter(path) as writer:  # the lock went with the first writer
        writer.append([{"condition": "none", "item_id": "a"}])
