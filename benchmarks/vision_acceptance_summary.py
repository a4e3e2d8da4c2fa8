"""Tables of issue 25's acceptance runs (``benchmarks/vision_acceptance.sh``): per condition, POPE and CHAIR
per world seed, their mean over seeds with a t-interval over seeds, the "yes" rate to the absent planted
partner, CARVE's accuracy by clutter level, and where CARVE's contrast map peaks.

    python benchmarks/vision_acceptance_summary.py RUN_DIR [--study benchmarks/vision_carve_results/items.jsonl]
        [--out benchmarks/vision_acceptance_results/summary.json]

``RUN_DIR`` holds ``eval-SPLITSEED/`` and ``carve-SPLITSEED/`` (``results.jsonl`` or ``shards/*.jsonl``,
complete or not: a cut run is summarised over what it answered, and the table says how many items) and
``carve-study-SEED/items.jsonl``. Intervals: over seeds, the mean +- t(0.975, k-1) standard errors of the k
per-seed values (k = 3 gives wide intervals: the scene sets are the unit of replication); over items, a
percentile bootstrap of the pooled items (:mod:`circuits.evaluation.bootstrap`).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from circuits.evaluation.bootstrap import bootstrap_mean
from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from circuits.hallucination.pope import parse_yes_no, pope_metrics
from circuits.vision.item_sets import world_vocabulary
from circuits.vision.language import question
from circuits.vision.world import PARTNER, parse_reference
from probe.files import write_text_atomic

RUN = re.compile(r"^(eval|carve)-(heldout|broken)(\d+)$")


def read_results(folder: Path) -> list[dict]:
    """The records of one ``vlm eval`` output folder, merged or still in shards (last write of a key wins)."""
    paths = [folder / "results.jsonl"] if (folder / "results.jsonl").exists() else sorted(folder.glob("shards/*.jsonl"))
    records: dict[tuple[str, str], dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            records[(record["condition"], record["item_id"])] = record
    return [r for r in records.values() if r.get("error") is None]


def over_seeds(values: list[float]) -> dict:
    """Mean of per-seed values and its t-interval, clipped to [0, 1] where every value here lies (None for one
    seed)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    mean = float(np.mean(values)) if values else None
    if len(values) < 2:
        return {"seeds": len(values), "mean": mean, "low": None, "high": None, "values": values}
    half = float(student_t.ppf(0.975, len(values) - 1)) * float(np.std(values, ddof=1)) / np.sqrt(len(values))
    return {"seeds": len(values), "mean": mean, "low": max(0.0, mean - half), "high": min(1.0, mean + half),
            "values": values}


def pope_table(records: list[dict]) -> dict:
    """(condition, pope split) -> accuracy, F1, precision, yes ratio per seed set and over seeds."""
    cells: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    by_set: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in records:
        if r["kind"] == "pope":
            by_set[(r["condition"], r["split"].rsplit("-", 1)[-1], r["set"])].append(r)
    for (condition, split, _), members in sorted(by_set.items()):
        m = pope_metrics([r["label"] for r in members], [r["answer"] for r in members])
        cell = cells[(condition, split)]
        for name in ("accuracy", "f1", "precision", "recall", "yes_ratio"):
            cell[name].append(float(getattr(m, name)))
        cell["n"].append(len(members))
    return {f"{c}|{s}": {name: (over_seeds(v) if name != "n" else sum(v)) for name, v in cell.items()}
            for (c, s), cell in cells.items()}


def partner_yes(records: list[dict]) -> dict:
    """Per condition, the share of "yes" to a POPE adversarial question about the absent partner of a
    drawn pair member (distinct scene-object questions), per seed set and pooled with a bootstrap
    interval. Only the adversarial split counts: it is the one that asks for partners by design, and
    the table shows the rate on its row (popular and random ask for a partner now and then too)."""
    seen: dict[str, dict[tuple[str, str], bool]] = defaultdict(dict)
    sets: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["kind"] != "pope" or r["label"] != "no" or not r["split"].endswith("adversarial"):
            continue
        partners = {question(PARTNER[name]): PARTNER[name] for name in parse_reference(r["image"]).names
                    if name in PARTNER}
        asked = partners.get(r["prompt"])  # the world's own question text names the object
        if asked is not None and (r["image"], asked) not in seen[r["condition"]]:
            yes = parse_yes_no(r["answer"]) == "yes"
            seen[r["condition"]][(r["image"], asked)] = yes
            sets[r["condition"]][r["set"]].append(yes)
    out = {}
    for condition, hits in seen.items():
        pooled = list(hits.values())
        out[condition] = {"n": len(pooled), "pooled": bootstrap_mean(pooled).as_dict(),
                          "over_seeds": over_seeds([float(np.mean(v)) for v in sets[condition].values()])}
    return out


def chair_table(records: list[dict]) -> dict:
    vocabulary = ChairVocabulary.from_lists(world_vocabulary(), "the world's CHAIR lists")
    by_set: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        if r["kind"] == "chair":
            by_set[(r["condition"], r["set"])].append(r)
    cells: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (condition, _), members in sorted(by_set.items()):
        m = chair_metrics(vocabulary, [r["answer"] for r in members], [frozenset(r["truth"]) for r in members])
        for name in ("chair_s", "chair_i", "recall"):
            cells[condition][name].append(float(getattr(m, name)))
        cells[condition]["n"].append(len(members))
    return {c: {name: (over_seeds(v) if name != "n" else sum(v)) for name, v in cell.items()} for c, cell in cells.items()}


def carve_by_clutter(records: list[dict], plain: list[dict]) -> dict:
    """CARVE's POPE accuracy against the plain model's on the same questions, by the scene's clutter level."""
    plain_answers = {(r["set"], r["item_id"]): r["answer"] for r in plain if r["condition"] == "none"}
    out = {}
    for level in ("all", 0, 1, 2):
        rows = [r for r in records if level == "all" or parse_reference(r["image"]).clutter == level]
        pairs = [(parse_yes_no(r["answer"]) == r["label"], parse_yes_no(plain_answers[(r["set"], r["item_id"])]) == r["label"])
                 for r in rows if (r["set"], r["item_id"]) in plain_answers]
        if pairs:
            out[str(level)] = {"n": len(pairs), "carve": bootstrap_mean([a for a, _ in pairs]).as_dict(),
                               "plain": bootstrap_mean([b for _, b in pairs]).as_dict()}
    return out


def study_peaks(paths: list[Path]) -> dict:
    """Where the contrast map peaks (present objects), per study file and pooled."""
    per_seed, pooled, uniform = [], [], []
    for path in paths:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        present = list({(r["scene"], r["object"]): r for r in rows if r["label"] == "yes"}.values())
        hits = [bool(r["peak_in_box"]) for r in present]
        per_seed.append(float(np.mean(hits)) if hits else None)
        pooled += hits
        uniform += [r["box_share"] for r in present]
    return {"n": len(pooled), "pooled": bootstrap_mean(pooled).as_dict() if pooled else None,
            "over_seeds": over_seeds(per_seed), "uniform_peak_rate": float(np.mean(uniform)) if uniform else None}


def collect(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(eval records, carve records), each tagged with its set name ``SPLITSEED``."""
    evals, carves = [], []
    for folder in sorted(run_dir.iterdir()):
        match = RUN.match(folder.name)
        if folder.is_dir() and match:
            records = [{**r, "set": f"{match[2]}{match[3]}"} for r in read_results(folder)]
            (evals if match[1] == "eval" else carves).extend(records)
    return evals, carves


def summarise(run_dir: Path, studies: list[Path]) -> dict:
    evals, carves = collect(run_dir)
    summary = {}
    for split in ("broken", "heldout"):
        rows = [r for r in evals if r["set"].startswith(split)]
        crows = [r for r in carves if r["set"].startswith(split)]
        summary[split] = {"sets": sorted({r["set"] for r in rows}), "pope": pope_table(rows + [
            {**r, "condition": "carve"} for r in crows]), "chair": chair_table(rows),
            "partner_yes": partner_yes(rows + [{**r, "condition": "carve"} for r in crows]),
            "carve_by_clutter": carve_by_clutter(crows, rows)}
    summary["carve_peaks"] = study_peaks(studies + sorted(run_dir.glob("carve-study-*/items.jsonl")))
    return summary


def _cell(stat: dict) -> str:
    if stat["low"] is None:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def markdown(summary: dict) -> str:
    """The POPE, partner and CHAIR tables of the notes (means over seeds, t-intervals)."""
    lines = []
    for split in ("broken", "heldout"):
        part = summary[split]
        lines += [f"{split} ({len(part['sets'])} scene sets)", "",
                  "| condition | POPE split | items | accuracy | F1 | yes ratio | yes to the absent partner (pooled) |",
                  "|---|---|---|---|---|---|---|"]
        for key, cell in sorted(part["pope"].items()):
            condition, pope_split = key.split("|")
            partner = part["partner_yes"].get(condition) if pope_split == "adversarial" else None
            shown = (f"{partner['pooled']['value']:.3f} [{partner['pooled']['low']:.3f}, {partner['pooled']['high']:.3f}]"
                     f" (n={partner['n']})" if partner else "")
            lines.append(f"| {condition} | {pope_split} | {cell['n']} | {_cell(cell['accuracy'])} | {_cell(cell['f1'])} "
                         f"| {_cell(cell['yes_ratio'])} | {shown} |")
        for condition, cell in sorted(part["chair"].items()):
            lines.append(f"| {condition} | CHAIR | {cell['n']} captions | CHAIR_S {_cell(cell['chair_s'])} | "
                         f"CHAIR_I {_cell(cell['chair_i'])} | recall {_cell(cell['recall'])} | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--study", type=Path, action="append", default=[],
                        help="more CARVE study items.jsonl (e.g. the CPU run of seed 0)")
    parser.add_argument("--out", type=Path, default=None, help="write the summary JSON here (atomically)")
    parser.add_argument("--markdown", action="store_true", help="print the notes' tables instead of the JSON")
    args = parser.parse_args()
    summary = summarise(args.run_dir, args.study)
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, text + "\n")
    print(markdown(summary) if args.markdown else text)


if __name__ == "__main__":
    main()
