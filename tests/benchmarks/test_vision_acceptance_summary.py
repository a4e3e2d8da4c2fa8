"""benchmarks/vision_acceptance_summary.py, the tables behind issue 25's figures: the t-interval over seed
sets, records read from a cut run's shards, and the absent-partner rate, on hand-made records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from circuits.vision.language import question
from circuits.vision.world import PARTNER, parse_reference
from tests.helpers import load_script

summary = load_script(Path("benchmarks") / "vision_acceptance_summary.py")


def test_over_seeds_is_the_mean_with_a_student_t_interval():
    got = summary.over_seeds([0.5, 0.6, 0.7, float("nan")])  # a NaN seed (no items) is left out
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(k), by hand
    assert got["seeds"] == 3 and got["mean"] == pytest.approx(0.6)
    assert (got["low"], got["high"]) == pytest.approx((0.6 - half, 0.6 + half), abs=1e-6)
    assert summary.over_seeds([0.2])["low"] is None  # one seed: no interval
    assert summary.over_seeds([0.98, 1.0, 0.9])["high"] == 1.0  # clipped to a rate's range


def _record(condition, item, answer="No", error=None, **more):
    return {"condition": condition, "item_id": item, "kind": "pope", "split": "world-broken-adversarial",
            "image": "world:broken:0", "prompt": "Is there a cup in the image?", "label": "no", "answer": answer,
            "error": error, **more}


def test_read_results_takes_the_last_write_skips_cut_lines_and_failures(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    lines = [json.dumps(_record("none", "a", "Yes")), json.dumps(_record("none", "b", error="bad image")),
             json.dumps(_record("none", "a", "No")), '{"condition": "none", "item_id": "c", "ans']
    (shards / "rank000-of-001.jsonl").write_text("\n".join(lines))
    got = summary.read_results(tmp_path)
    assert [(r["item_id"], r["answer"]) for r in got] == [("a", "No")]


def test_the_partner_rate_counts_distinct_adversarial_partner_questions_only():
    image = "world:broken:0"
    member = next((name for name in parse_reference(image).names if name in PARTNER), None)
    if member is None:
        pytest.skip(f"scene {image} holds no member of a planted pair")
    asked = question(PARTNER[member])  # the absent partner, in the world's own words
    records = [
        _record("vhr", "0", "No", prompt=asked, set="broken0", split="world-broken-popular"),  # not adversarial
        _record("vhr", "1", "Yes", prompt=asked, set="broken0"),
        _record("vhr", "2", "No", prompt=asked, set="broken0"),  # the same scene-object question again
        _record("vhr", "3", "No", prompt="Is there a cup in the image?", set="broken0"),
    ]
    got = summary.partner_yes(records)["vhr"]
    assert got["n"] == 1 and got["pooled"]["value"] == 1.0
