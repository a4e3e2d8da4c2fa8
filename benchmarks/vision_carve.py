"""CARVE on synth-llava, CPU: where the contrast map peaks, accuracy with and without CARVE by clutter
level, and the complexity/entropy correlations (methods.md section e).

    python benchmarks/vision_carve.py --heldout 40 --broken 24 --out benchmarks/vision_carve_results
    python benchmarks/vision_carve.py --world-seed 1 --device cuda --out OUT   # another scene set, on a GPU
    python benchmarks/vision_carve.py --summarise benchmarks/vision_carve_results/items.jsonl

Writes ``items.jsonl`` (one record per question, appended as it goes: a killed run keeps its items and
continues) and ``summary.json``; prints the tables. Intervals: percentile bootstrap over items
(:mod:`circuits.evaluation.bootstrap`; correlations over scenes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from circuits.evaluation.bootstrap import bootstrap_difference, bootstrap_mean


def run(args) -> Path:
    from probe.models import load_model
    from circuits.vision.carve_study import study_scene
    from circuits.vision.world import WorldConfig, scenes

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "items.jsonl"
    done = {json.loads(line)["scene"] for line in path.open()} if path.exists() else set()
    model = load_model("synth-llava", device=args.device)
    world = WorldConfig(seed=args.world_seed)
    mixed = _interleaved(scenes("heldout", args.heldout, world), scenes("broken", args.broken, world))
    todo = [s for s in mixed if s.reference not in done]
    for scene in todo:
        start = time.process_time()
        records = study_scene(model, scene)
        seconds = time.process_time() - start
        with path.open("a") as out:
            for record in records:
                out.write(json.dumps({**record, "cpu_seconds": seconds / len(records)}) + "\n")
        print(scene.reference, [(r["object"], r["plain_answer"], r["carve_answer"], r["peak_in_box"]) for r in records],
              f"{seconds:.1f}s", flush=True)
    return path


def _interleaved(first: list, second: list) -> list:
    """Alternate the two lists (then the longer one's rest), so a run cut short holds both splits."""
    merged = [x for pair in zip(first, second) for x in pair]
    return merged + first[len(second):] + second[len(first):]


def _rate(values) -> dict:
    values = [v for v in values if v is not None]  # records written before a field was added lack it
    return {"n": len(values), **bootstrap_mean(values).as_dict()} if values else {"n": 0}


def _spearman(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _correlation(x, y, n_boot: int = 2000, seed: int = 0) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    draws = [_spearman(x[i], y[i]) for i in rng.integers(0, len(x), size=(n_boot, len(x)))]
    draws = [d for d in draws if np.isfinite(d)]
    return {"n": len(x), "spearman": _spearman(x, y), "pearson": float(np.corrcoef(x, y)[0, 1]),
            "low": float(np.quantile(draws, 0.025)), "high": float(np.quantile(draws, 0.975))}


def summarise(path: Path) -> dict:
    items = list({(r["scene"], r["object"]): r for r in map(json.loads, path.open())}.values())
    present = [r for r in items if r["label"] == "yes"]
    summary: dict = {"items": len(items), "scenes": len({r["scene"] for r in items}),
                     "cpu_seconds_per_question": float(np.mean([r["cpu_seconds"] for r in items]))}
    for level in ("all", 0, 1, 2):
        rows = [r for r in present if level == "all" or r["clutter"] == level]
        every = [r for r in items if level == "all" or r["clutter"] == level]
        summary[f"clutter_{level}"] = {
            "peak_in_box_contrast": _rate([r["peak_in_box"] for r in rows]),
            "peak_in_box_query": _rate([r["plain_peak_in_box"] for r in rows]),
            "peak_in_box_contrast_last_step": _rate([r.get("last_step_peak_in_box") for r in rows]),
            "peak_in_box_uniform": float(np.mean([r["box_share"] for r in rows])) if rows else None,
            "accuracy_plain": _rate([r["plain_correct"] for r in every]),
            "accuracy_carve": _rate([r["carve_correct"] for r in every]),
            "accuracy_refined_only": _rate([r.get("refined_only_correct") for r in every]),
            "accuracy_difference": bootstrap_difference([r["carve_correct"] for r in every],
                                                        [r["plain_correct"] for r in every]).as_dict()
            if every else None,
        }
    for split in ("heldout", "broken"):
        for label in ("yes", "no"):
            rows = [r for r in items if f":{split}:" in r["scene"] and r["label"] == label]
            summary[f"{split}_{label}"] = {"accuracy_plain": _rate([r["plain_correct"] for r in rows]),
                                           "accuracy_carve": _rate([r["carve_correct"] for r in rows]),
                                           "accuracy_refined_only": _rate([r.get("refined_only_correct") for r in rows])}
    scenes = {r["scene"]: r for r in present}.values()
    for what in ("texture", "colour"):
        summary[f"{what}_vs_entropy"] = _correlation([r[what] for r in scenes], [r["entropy"] for r in scenes])
    summary["clutter_vs_entropy"] = _correlation([r["clutter"] for r in scenes], [r["entropy"] for r in scenes])
    summary["entropy_vs_plain_correct"] = _correlation([r["entropy"] for r in present],
                                                       [r["plain_correct"] for r in present])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=int, default=40)
    parser.add_argument("--broken", type=int, default=24)
    parser.add_argument("--world-seed", type=int, default=0, help="the scenes' seed (0: the first results' scenes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/vision_carve_results"))
    parser.add_argument("--summarise", type=Path, default=None, help="only summarise this items.jsonl")
    args = parser.parse_args()
    path = args.summarise or run(args)
    summary = summarise(path)
    (path.parent / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
