"""Circuit discovery on a real model: each method against the patching reference, over seeds, with times.

For each task: the model's behaviour; per-head activation patching (corrupted to clean) on every
item, the reference; a reference circuit from it by a stated rule; EAP and EAP-IG (deterministic:
one run each); the SAE method, node and edge scores, over ``--seeds`` seeds (the SAE of a seed
gives both scores; the head outputs are recorded once and their time is added to every seed's).
Every method is scored against the reference circuit: ROC AUC (scikit-learn), ACDC's pessimistic
staircase AUC, precision and recall at the circuit's size; and timed (wall clock, this machine).

    python benchmarks/circuits_study.py --model smollm2-135m --tasks ioi,docstring,colored_objects \
        --seeds 10 --out runs/circuits_smollm2.json [--threshold 0.1] [--threads 2]

The JSON file is rewritten atomically after each stage and read back on a rerun, so a killed
study resumes where it stopped. ``--summary`` prints the markdown tables of a finished file.

Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from circuits.discovery.behaviour import task_behaviour
from circuits.discovery.ground_truth import circuit_from_scores
from circuits.discovery.head_outputs import record_head_outputs
from circuits.discovery.methods import DiscoveryOptions, discover
from circuits.discovery.sae_codes import edge_head_scores, pair_scores
from circuits.discovery.sae_method import SAEOptions, sae_discovery
from circuits.discovery.scores import score_method
from circuits.discovery.tasks import load_task
from probe.errors import InputError
from probe.files import write_text_atomic
from probe.models import load_model


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.summary:
        print(summary(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    state = json.loads(args.out.read_text()) if args.out.exists() else {"model": args.model, "tasks": {}}
    model = load_model(args.model)
    for task in args.tasks.split(","):
        (time_task if args.timing else run_task)(model, task, args, state)
    print(summary(state))
    return 0


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default="ioi")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.1, help="reference circuit: |score| >= T x the largest")
    p.add_argument("--limit", type=int, default=None, help="first N items of each task")
    p.add_argument("--task-limit", action="append", default=[], metavar="TASK=N",
                   help="first N items of one task (repeatable; overrides --limit for it)")
    p.add_argument("--task-seeds", action="append", default=[], metavar="TASK=N",
                   help="SAE seeds of one task (repeatable; overrides --seeds for it; 0 skips the SAE)")
    p.add_argument("--position", choices=("mean", "last"), default="mean",
                   help="SAE method: head outputs averaged over positions (the reference) or at the last one")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summary", action="store_true", help="print the tables of a finished --out file")
    p.add_argument("--timing", action="store_true",
                   help="only time each method once per task (run it on a quiet machine); kept in the file's 'timing'")
    return p.parse_args(argv)


def save(state: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(state, indent=1))


def run_task(model, task: str, args, state: dict) -> None:
    record = state["tasks"].setdefault(task, {})
    try:
        loaded = load_task(task, model.tokenizer)
    except InputError as error:
        record["skipped"] = str(error)
        save(state, args.out)
        print(f"{task}: skipped: {error}", file=sys.stderr)
        return
    contrast = loaded.contrast
    limits = dict(item.split("=") for item in args.task_limit)
    limit = int(limits.get(task, args.limit or 0))
    if limit:
        contrast = contrast.first(limit)
    record["items"] = f"{len(contrast)} ({loaded.summary()})"
    if "behaviour" not in record:
        b = task_behaviour(model, contrast)
        record["behaviour"] = {"accuracy": b.accuracy, "pairwise_accuracy": b.pairwise_accuracy,
                               "clean_logit_diff": b.mean_clean_logit_diff,
                               "corrupted_logit_diff": float(b.corrupted_logit_diff.mean()), "wrong": len(b.wrong)}
        save(state, args.out)
    for name in ("patching", "eap", "eap-ig"):
        if name not in record:
            print(f"{task}: {name} ...", file=sys.stderr, flush=True)
            result = discover(model, contrast, name, DiscoveryOptions(batch_size=8, heads_per_forward=32))
            record[name] = {"scores": result.scores.tolist(), "seconds": result.seconds, "forwards": result.forwards}
            save(state, args.out)
    reference = circuit_from_scores(torch.tensor(record["patching"]["scores"]), task=task, model=args.model,
                                    threshold=args.threshold)
    record["reference"] = {"rule": reference.source, "heads": sorted(reference.heads)}
    for name in ("patching", "eap", "eap-ig"):  # by |score|, as the reference (negative movers are in circuits)
        record[name]["score"] = score_method(name, torch.tensor(record[name]["scores"]).abs(), reference,
                                             record[name]["seconds"]).to_dict()
    save(state, args.out)
    run_sae_seeds(model, contrast, reference, record, args, state)


def runs_key(position: str) -> str:
    """Where a study keeps the SAE runs of one position rule."""
    return "sae_runs" if position == "mean" else f"sae_runs_{position}"


def time_task(model, task: str, args, state: dict) -> None:
    """Each method once, end to end as a user runs it (the SAE: record, train, score), with the load average."""
    import os

    contrast = load_task(task, model.tokenizer).contrast
    limit = int(dict(item.split("=") for item in args.task_limit).get(task, args.limit or 0))
    contrast = contrast.first(limit) if limit else contrast
    timing = state.setdefault("timing", {}).setdefault(task, {})
    for name in ("eap", "eap-ig", "sae", "sae-edge", "patching"):
        if name in timing:
            continue
        before = os.getloadavg()[0]
        result = discover(model, contrast, name, DiscoveryOptions(batch_size=8, heads_per_forward=32))
        timing[name] = {"seconds": result.seconds, "load_before": before, "load_after": os.getloadavg()[0],
                        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "items": len(contrast)}
        print(f"{task} {name}: {result.seconds:.1f} s", file=sys.stderr, flush=True)
        save(state, args.out)


def run_sae_seeds(model, contrast, reference, record: dict, args, state: dict) -> None:
    runs = record.setdefault(runs_key(args.position), [])
    seeds = int(dict(item.split("=") for item in args.task_seeds).get(contrast.task, args.seeds))
    if len(runs) >= seeds:
        return
    start = time.perf_counter()
    outputs = record_head_outputs(model, contrast, position=args.position, batch_size=8)
    record_seconds = time.perf_counter() - start
    for seed in range(len(runs), seeds):
        print(f"sae seed {seed} ...", file=sys.stderr, flush=True)
        result = sae_discovery(model, contrast, SAEOptions(seed=seed, position=args.position), outputs=outputs,
                               model_name=args.model)
        node_seconds = record_seconds + result.scores.seconds
        start = time.perf_counter()
        edge = edge_head_scores(pair_scores(result.positive_codes, result.negative_codes, int(result.sae.cfg.d_sae)))
        edge_seconds = node_seconds + time.perf_counter() - start
        edge = edge.double().reshape(result.scores.scores.shape)
        runs.append({"seed": seed, "train_rows": list(result.train_rows),
                     "node": score_method("sae", result.scores.scores, reference, node_seconds).to_dict()
                     | {"scores": result.scores.scores.tolist()},
                     "edge": score_method("sae-edge", edge, reference, edge_seconds).to_dict() | {"scores": edge.tolist()}})
        save(state, args.out)


def summary(state: dict) -> str:
    lines = [f"### {state['model']}", ""]
    for task, record in state["tasks"].items():
        if "skipped" in record:
            lines += [f"**{task}**: not run: {record['skipped']}", ""]
            continue
        if "reference" not in record:
            continue
        b = record["behaviour"]
        lines += [f"**{task}** ({record['items']} items): accuracy {b['accuracy']:.1%} (answer above contrast "
                  f"{b['pairwise_accuracy']:.1%}), logit difference {b['clean_logit_diff']:+.2f} clean, "
                  f"{b['corrupted_logit_diff']:+.2f} corrupted. Reference circuit: {len(record['reference']['heads'])} "
                  f"heads ({record['reference']['rule']}).", "",
                  "| method | runs | ROC AUC | staircase AUC | precision@k | seconds (2 CPU cores) | x faster than patching |",
                  "|---|---|---|---|---|---|---|"]
        timing = state.get("timing", {}).get(task, {})
        quiet = {name: [timing[name]["seconds"]] for name in timing}
        rows = [(name, [record[name]["score"]], name) for name in ("patching", "eap", "eap-ig")]
        for position, label in (("mean", ""), ("last", ", last position")):
            runs = record.get(runs_key(position), [])
            if runs:
                rows += [(f"sae (node{label})", [r["node"] for r in runs], "sae" if not label else ""),
                         (f"sae (edge{label})", [r["edge"] for r in runs], "sae-edge" if not label else "")]
        patch_seconds = quiet.get("patching", [record["patching"]["seconds"]])[0]
        for name, scores, key in rows:
            lines.append(table_row(name, scores, patch_seconds, quiet.get(key), timed=not quiet or key in quiet))
        if not quiet:
            lines.append("\n(times from the study itself, on a shared machine: not comparable; see --timing)")
        lines += ["", *cut_lines(task, record, state["model"])]
        lines.append("")
    lines += reuse_lines(state, "ioi", "colored_objects")
    return "\n".join(lines)


def reuse_lines(state: dict, first: str, second: str) -> list[str]:
    """Component reuse (Merullo et al.): overlap of the two tasks' patching circuits, by several cuts."""
    from scipy.stats import spearmanr

    from circuits.discovery.scores import overlap

    tasks = state["tasks"]
    if not all("patching" in tasks.get(t, {}) for t in (first, second)):
        return []
    a, b = (torch.tensor(tasks[t]["patching"]["scores"]).abs() for t in (first, second))
    rho = spearmanr(a.flatten().numpy(), b.flatten().numpy())
    lines = [f"**Component reuse, {first} vs {second}** (|patching score| per head; Spearman rho "
             f"{rho.statistic:.2f}, p = {rho.pvalue:.2g}):", "",
             "| cut | heads per task | shared | overlap (shared / union) | only in " + first + " | only in " + second + " |",
             "|---|---|---|---|---|---|"]
    n = a.numel()
    for k in (max(1, round(0.02 * n)), 10, 20, max(1, round(0.1 * n))):
        ha = {divmod(int(i), a.shape[1]) for i in a.flatten().topk(k).indices}
        hb = {divmod(int(i), b.shape[1]) for i in b.flatten().topk(k).indices}
        lines.append(f"| top {k} | {k} | {len(ha & hb)} | {overlap(ha, hb):.0%} | {fmt_heads(ha - hb)} | {fmt_heads(hb - ha)} |")
    ra, rb = (set(map(tuple, tasks[t]["reference"]["heads"])) for t in (first, second))
    lines.append(f"| reference rule | {len(ra)} / {len(rb)} | {len(ra & rb)} | {overlap(ra, rb):.0%} | "
                 f"{fmt_heads(ra - rb)} | {fmt_heads(rb - ra)} |")
    return lines + [""]


def fmt_heads(heads) -> str:
    return " ".join(f"{l}.{h}" for l, h in sorted(heads)) or "-"


CUTS = (("magnitude >= 0.05 x the largest", dict(threshold=0.05)), ("magnitude >= 0.1 x the largest", dict(threshold=0.1)),
        ("magnitude >= 0.2 x the largest", dict(threshold=0.2)), ("top 10% of heads", dict(fraction=0.1)))


def cut_lines(task: str, record: dict, model: str) -> list[str]:
    """ROC AUC of each method (mean over runs) against reference circuits cut at other places."""
    patching = torch.tensor(record["patching"]["scores"])
    methods = [(name, [record[name]["scores"]], True) for name in ("eap", "eap-ig")]
    for position, label in (("mean", ""), ("last", ", last")):
        runs = record.get(runs_key(position), [])
        if runs:
            methods += [(f"sae (node{label})", [r["node"]["scores"] for r in runs], False),
                        (f"sae (edge{label})", [r["edge"]["scores"] for r in runs], False)]
    header = "| reference cut | heads | " + " | ".join(name for name, _, _ in methods) + " |"
    lines = ["ROC AUC against reference circuits cut elsewhere (the rule above is the second row):", "", header,
             "|" + "---|" * (len(methods) + 2)]
    for label, cut in CUTS:
        if "fraction" in cut:
            cut = dict(top_k=max(1, round(cut["fraction"] * patching.numel())))
        reference = circuit_from_scores(patching, task=task, model=model, **cut)
        cells = []
        for _, runs, absolute in methods:
            aucs = [score_method("m", torch.tensor(r).abs() if absolute else torch.tensor(r), reference, 0.0).roc_auc
                    for r in runs]
            cells.append(f"{np.mean(aucs):.3f}")
        lines.append(f"| {label} | {len(reference.heads)} | " + " | ".join(cells) + " |")
    return lines + [""]


def table_row(name: str, scores: list[dict], patch_seconds: float, seconds: list[float] | None = None,
              timed: bool = True) -> str:
    def spread(values: list[float], fmt: str) -> str:
        mean = float(np.mean(values))
        return f"{mean:{fmt}}" if len(values) == 1 else f"{mean:{fmt}} ± {float(np.std(values, ddof=1)):{fmt}}"

    auc = [s["roc_auc"] for s in scores]
    stair = [s["staircase_auc"] for s in scores]
    k = next(iter(scores[0]["precision_at_k"]))
    prec = [s["precision_at_k"][k] for s in scores]
    secs = seconds or [s["seconds"] for s in scores]
    speed = patch_seconds / float(np.mean(secs)) if np.mean(secs) > 0 else math.inf
    time_cells = f"{spread(secs, '.1f')} | {speed:.1f}" if timed else "not timed | -"
    return (f"| {name} | {len(scores)} | {spread(auc, '.3f')} | {spread(stair, '.3f')} | {spread(prec, '.2f')} (k={k}) "
            f"| {time_cells} |")


if __name__ == "__main__":
    sys.exit(main())
