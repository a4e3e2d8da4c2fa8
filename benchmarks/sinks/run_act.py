"""Run the ACT head search and evaluation on a real model; write JSON + a table.

Usage (searching layers 24.. only, to fit a shared 2-core machine):
    python benchmarks/sinks/run_act.py smollm2-135m benchmarks/sinks/results/smollm2 24
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import probe
from circuits.evaluation.harness import EvalConfig, act_evaluation, format_table, load_tasks
from circuits.sinks.search import SearchConfig
from probe.files import write_text_atomic

BBH_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "bbh"  # ../shared beside the checkout
TASKS = ("hyperbaton", "navigate", "ruin_names", "reasoning_about_colored_objects", "geometric_shapes")


def main(model_name: str, out: str, first_layer: int = 0, n_cal: int = 2, n_test: int = 12, max_chars: int = 300) -> None:
    torch.set_grad_enabled(False)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = probe.load_model(model_name)
    tasks = load_tasks(TASKS, max_prompt_chars=max_chars, bbh_dir=BBH_DIR)
    config = EvalConfig(n_calibration=n_cal, n_test=n_test, max_prompt_chars=max_chars, n_random=1)
    start = time.perf_counter()
    report = act_evaluation(model, tasks, SearchConfig(batch_size=10, layers=tuple(range(first_layer, model.geometry.n_layers))), config, cache=out_dir / "search_cache.jsonl")
    report["wall_seconds"] = time.perf_counter() - start
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=1))
    table = format_table(report)
    write_text_atomic(out_dir / "table.txt", table + "\n")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))
