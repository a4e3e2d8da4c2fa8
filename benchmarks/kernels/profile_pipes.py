"""Which units bind the statistics calls: SM clock and power while each call runs, and one call
at a time for Nsight Compute.

    python benchmarks/kernels/profile_pipes.py --clocks            # clock, power, time per call
    ncu --clock-control none --profile-from-start off ... \\
        python benchmarks/kernels/profile_pipes.py --call k2b      # one warm call under ncu
    python benchmarks/kernels/profile_pipes.py --summary DIR       # tables from the ncu outputs

``benchmarks/kernels/profile_pipes.sh`` runs all of it on the lent machine (outputs in $OUT).

The calls are the benchmark's hd128 bf16 shapes at 16k tokens, not causal: SDPA (cuDNN), the
plain K1, K1 with entropy and distance, the K2 with and without block statistics. ``--clocks``
runs each back to back for a few seconds while ``nvidia-smi`` samples the SM clock, the power
draw and the active clock-event reasons, and prints the median of each next to the call's time,
so a call that is slower only because the chip clocks down under it shows as such. A
diagnostic: nothing is asserted and nothing here is a benchmark figure.
"""

from __future__ import annotations

import argparse
import collections
import csv
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.common import sdpa  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
SMI_FIELDS = "clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active"


def build_calls(n: int = 16384, heads: int = 16, d: int = 128) -> dict:
    """name -> zero-argument call, on one set of random inputs."""
    q, k, v = (torch.randn(1, heads, n, d, device=DEV, dtype=BF16) for _ in range(3))
    t = dense_table(n, causal=False, device=DEV)
    tb = dense_table(n, causal=False, block_q=128, block_kv=128, device=DEV)
    lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
    return {
        "sdpa": lambda: sdpa(q, k, v, False, SDPBackend.CUDNN_ATTENTION),
        "k1": lambda: flash_forward(q, k, v, t, scaling=d**-0.5),
        "k1s": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, entropy=True, distance=True),
        "k2": lambda: column_stats(q, k, lse, tb, scaling=d**-0.5),
        "k2b": lambda: column_stats(q, k, lse, tb, scaling=d**-0.5, block_stats=True),
    }


def clocks(calls: dict, seconds: float = 3.0) -> None:
    """Each call back to back for ``seconds`` while nvidia-smi samples; medians printed."""
    print(f"{'call':6s} {'ms/call':>8s} {'SM MHz':>7s} {'W':>6s} {'degC':>5s}  event reasons (mask: count)")
    for name, fn in calls.items():
        fn(), torch.cuda.synchronize()
        smi = subprocess.Popen(["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits",
                                "-lms", "100"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        start, done = time.perf_counter(), 0
        ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ev0.record()
        while time.perf_counter() - start < seconds:
            for _ in range(10):
                fn()
            done += 10
            torch.cuda.synchronize()
        ev1.record()
        ev1.synchronize()
        smi.terminate()
        rows = [[f.strip() for f in line.split(",")] for line in smi.communicate()[0].splitlines()
                if line.count(",") == 3]
        busy = rows[4:-2] or rows  # drop the samples taken before the loop ramped up and after it ended
        reasons = dict(collections.Counter(r[3] for r in busy))
        print(f"{name:6s} {ev0.elapsed_time(ev1) / done:8.3f} {statistics.median(float(r[0]) for r in busy):7.0f} "
              f"{statistics.median(float(r[1]) for r in busy):6.1f} {statistics.median(float(r[2]) for r in busy):5.0f}  "
              f"{reasons}")
        time.sleep(1.0)


def one_call(calls: dict, name: str) -> None:
    """Two warm calls, then one between cudaProfilerStart/Stop (ncu --profile-from-start off)."""
    fn = calls[name]
    fn(), fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def ncu_table(folder: Path) -> None:
    """Clock, cycles, and tensor / exponential-unit / ALU / FMA / issue activity of each call's
    main kernel, from ``ncu_<call>.txt`` (``--print-details all``)."""
    kernels = {"sdpa": "cudnn", "k1": "k1_ws_kernel", "k1s": "k1_ws_kernel", "k2": "k2_ws_kernel",
               "k2b": "k2_ws_kernel"}
    print("  call   GHz   Mcycles   ms  cyc/sdpa tensor%  XU%   sum   ALU%  FMA%  issue%")
    base = None
    for call, kernel in kernels.items():
        text = (folder / f"ncu_{call}.txt").read_text()
        block = next(b for b in re.split(r"\n  (?=\S)", text) if b.startswith(kernel))

        def metric(name: str) -> float:
            found = re.search(r"\n\s+" + re.escape(name) + r"\s+(?:\S+\s+)?([\d,.]+)\n", block)
            return float(found.group(1).replace(",", ""))

        cycles = metric("Elapsed Cycles")
        base = base or cycles
        tensor, xu = metric("SM: Pipe Tensor Cycles Active"), metric("SM: Inst Executed Pipe Xu")
        print(f"  {call:5s} {metric('SM Frequency'):5.2f} {cycles / 1e6:6.2f} {metric('Duration'):6.2f} "
              f"{cycles / base:6.3f} {tensor:6.1f} {xu:6.1f} {tensor + xu:6.1f} "
              f"{metric('SM: Pipe Alu Cycles Active'):5.1f} {metric('SM: Pipe Fma Cycles Active'):5.1f} "
              f"{metric('SM: Issue Active'):5.1f}")


def stall_table(source_csv: Path, kernel: str = "k2_ws_kernel") -> None:
    """Warp-state samples of ``kernel`` summed by SASS opcode (ncu ``--page source --csv
    --print-source sass``), as a share of the consumer warps' samples: the producer warpgroup's
    idle warps (NOP at the final barrier) and its wait loop (BRA) are left out."""
    header, rows, current = None, [], None
    for row in csv.reader(source_csv.open()):
        if row[:1] == ["Kernel Name"]:
            current = row[1]
        elif row[:1] == ["Address"]:
            header = row
        elif row and header and current == kernel:
            rows.append(dict(zip(header, row)))
    reasons = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    by_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        words = r["Source"].split()
        op = (words[1] if words and words[0].startswith("@") else (words or ["?"])[0]).split(".")[0]
        for reason in reasons + ["Warp Stall Sampling (All Samples)"]:
            by_op[op][reason] += float(r[reason].replace(",", "") or 0)
    total = "Warp Stall Sampling (All Samples)"
    consumers = sum(c[total] for op, c in by_op.items() if op not in ("NOP", "BRA"))
    for op, c in sorted(by_op.items(), key=lambda item: -item[1][total]):
        if op in ("NOP", "BRA") or c[total] < 0.005 * consumers:
            continue
        parts = ", ".join(f"{r[6:]} {c[r] / c[total]:.0%}" for r in reasons if c[r] > 0.08 * c[total])
        print(f"  {op:10s} {c[total] / consumers:6.1%}   {parts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clocks", action="store_true", help="clock, power and time per call")
    ap.add_argument("--call", choices=["sdpa", "k1", "k1s", "k2", "k2b"], help="one warm call, for ncu")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--summary", type=Path, help="folder with profile_pipes.sh's ncu outputs: print the tables")
    args = ap.parse_args()
    if args.summary:
        ncu_table(args.summary)
        stall_table(args.summary / "k2b_source.csv")
        return
    calls = build_calls()
    if args.clocks:
        clocks(calls, args.seconds)
    if args.call:
        one_call(calls, args.call)


if __name__ == "__main__":
    main()
