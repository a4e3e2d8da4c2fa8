"""Median latency of the dashboard's callbacks on CPU, for a 64- and a 512-token prompt (not a test).

Each callback is timed as the server runs it: the callback function plus the JSON encoding of
its outputs (what Dash sends to the browser). Two regimes per prompt:

    cold: a new prompt (or a new edit): the capture runs, then the figure is built;
    warm: the capture is cached (clicking another head, switching metric).

A plain HF forward of the same tokens is timed too, as the floor set by the model itself.
Run:  python benchmarks/dashboard/bench_callbacks.py [--model smollm2-135m] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

import plotly.io
import torch
from dash import no_update

from apps.heads_dashboard import callbacks
from apps.heads_dashboard.settings import DashboardSettings, EditSettings
from apps.heads_dashboard.state import ModelHolder
from apps.heads_dashboard.workbench import Source, Workbench
from probe import CaptureConfig, capture
from probe.models import DEFAULT_MODEL

TEXT = ("The old lighthouse keeper watched the storm roll in over the grey sea, counting the waves that broke "
        "against the rocks below while the gulls circled the tower and the lamp turned slowly above him. ")


def prompt_of(tokenizer, n_tokens: int) -> str:
    """Text that tokenizes to exactly ``n_tokens`` tokens (special tokens included)."""
    special = len(tokenizer("", add_special_tokens=True)["input_ids"])
    ids = tokenizer(TEXT * (n_tokens // 20 + 2), add_special_tokens=False)["input_ids"]
    for cut in range(n_tokens - special, 0, -1):
        text = tokenizer.decode(ids[:cut])
        if len(tokenizer(text, add_special_tokens=True)["input_ids"]) == n_tokens:
            return text
    raise RuntimeError(f"no text of exactly {n_tokens} tokens")


def served(outputs) -> None:
    """JSON-encode callback outputs as Dash does."""
    plotly.io.json.to_json_plotly(list(outputs))


def median_seconds(run: Callable[[], None], reps: int, before_each: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(reps):
        before_each()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_prompt(bench: Workbench, n_tokens: int, reps: int, warmup: int) -> dict[str, float]:
    model = bench.holder.get()
    text = prompt_of(model.tokenizer, n_tokens)
    store = Source(prompt=text).to_store()
    act = EditSettings(act=True)
    def grid():  # Run: the capture (a background job in the app, in this process here), then the heatmap
        if callbacks.submit_prompt(bench, "run", text, None)[1] is not no_update:
            callbacks.capture_job(bench, {"prompt": text})
        served(callbacks.grid_view(bench, store, "first_token_share", 3, 4))

    def edit():  # tick ACT: the edited capture (a job in the app) if not cached, then the figures
        session, request, _ = callbacks.submit_edits(bench, store, ["act"], "", "0", "")
        if request is not no_update:
            session, _ = callbacks.edit_job(bench, request)
        served(callbacks.edit_view(bench, session, 3, 4))

    head = lambda: served(callbacks.head_view(bench, store, 3, 4))  # noqa: E731
    clear = bench.cache.clear
    drop_edited = lambda: bench.cache.discard((model.name, text, _mode(bench, n_tokens), act))  # noqa: E731
    for _ in range(warmup):
        clear(), grid(), head(), edit()
    ids = model.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        forward = lambda: model.hf(**ids, use_cache=False)  # noqa: E731
        results = {"plain HF forward (floor)": median_seconds(forward, reps)}
    config = CaptureConfig(mode=_mode(bench, n_tokens))
    results["probe.capture alone (pattern mode <= 256 tokens, else stats)"] = median_seconds(lambda: capture(model, text, config), reps)
    results["grid, new prompt (capture + figure)"] = median_seconds(grid, reps, before_each=clear)
    results["grid, cached (metric switch)"] = median_seconds(grid, reps)
    results["head view, cached (click a head)"] = median_seconds(head, reps)
    results["edits: ACT on (capture edited + figures)"] = median_seconds(edit, reps, before_each=drop_edited)
    results["edits, cached (click a head)"] = median_seconds(edit, reps)
    return results


def _mode(bench: Workbench, n_tokens: int) -> str:
    return "stats" if n_tokens > bench.settings.long_input_tokens else "pattern"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    holder = ModelHolder(args.model).start()
    if holder.wait().state != "ready":
        raise SystemExit(holder.status.message)
    bench = Workbench(DashboardSettings(model=args.model), holder)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average before {os.getloadavg()[0]:.2f}")
    rows = {}
    for n in args.lengths:
        rows[n] = bench_prompt(bench, n, args.reps, args.warmup)
        print(f"{n} tokens: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[n].items()), flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}; median of {args.reps} after {args.warmup} warm-up round(s)\n")
    print("| callback | " + " | ".join(f"{n} tokens (s)" for n in args.lengths) + " |")
    print("|---|" + "---|" * len(args.lengths))
    for name in rows[args.lengths[0]]:
        print(f"| {name} | " + " | ".join(f"{rows[n][name]:.3f}" for n in args.lengths) + " |")


if __name__ == "__main__":
    main()
