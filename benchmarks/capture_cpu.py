"""Time and peak memory of a plain forward, pattern mode and statistics mode on SmolLM2 (CPU).

Each (mode, length) runs in its own process so that the peak resident memory (``ru_maxrss``) is
that run's alone. The model's own weights are in every figure; the ``extra`` column subtracts
the process's resident memory just before the forward.

    python benchmarks/capture_cpu.py [--lengths 512 2048 8192] [--out notes/capture_cpu.md]

Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

MODES = ("plain", "pattern", "stats")


def run_one(mode: str, length: int) -> dict:
    """Measure one configuration in this process (called in a child)."""
    import torch

    from probe import CaptureConfig, capture, load_model
    from probe.capture.inputs import InputError

    torch.set_num_threads(torch.get_num_threads())
    model = load_model("smollm2-135m")
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * (length // 9 + 2))
    ids = model.tokenizer(text)["input_ids"][: length - 1]
    prompt = model.tokenizer.decode(ids)
    rss_before = _rss_mib()
    start = time.perf_counter()
    try:
        if mode == "plain":
            batch = model.tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                model.hf(**batch, use_cache=False)
            tokens = batch["input_ids"].shape[1]
        else:
            config = CaptureConfig(mode=mode, pattern_bytes_limit=16 * 2**30)
            record = capture(model, prompt, config)
            tokens = len(record.tokens[0])
    except InputError as err:
        return {"mode": mode, "length": length, "refused": str(err)}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "length": length, "tokens": tokens, "seconds": seconds, "peak_mib": peak,
            "extra_mib": max(0.0, peak - rss_before)}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--out", type=Path, default=Path("notes/capture_cpu.md"))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], int(args.child[1]))))
        return
    rows = []
    for length in args.lengths:
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(length)], capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {
                "mode": mode, "length": length, "refused": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}
            rows.append(row)
            print(_format_row(row), flush=True)
    write_notes(rows, args.out)


def _format_row(row: dict) -> str:
    if "refused" in row:
        return f"| {row['mode']} | {row['length']} | - | - | - | {row['refused'][:160]} |"
    return (f"| {row['mode']} | {row['tokens']} | {row['seconds']:.2f} | {row['peak_mib']:.0f} | "
            f"{row['extra_mib']:.0f} | |")


def write_notes(rows: list[dict], out: Path) -> None:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "# Capture on CPU: SmolLM2-135M-Instruct (fp32)",
        "",
        f"Measured {date.today()} on {platform.machine()} with {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}. One run each; other jobs may have "
        "shared the machine, so treat times as +-20%.",
        "",
        "| mode | tokens | seconds | peak RSS MiB | extra over loaded model MiB | note |",
        "|---|---|---|---|---|---|",
    ]
    out.write_text("\n".join(header + [_format_row(r) for r in rows]) + "\n")


if __name__ == "__main__":
    main()
