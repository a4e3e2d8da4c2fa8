"""EXPERIMENT: the Gluon K2's consumer schedules, paired on a lent Hopper GPU.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_k2_schedules.py

``plain`` is the kept loop (product, wait, exponentials, reductions). ``halves`` splits each
consumer's 128 keys into two 64-key halves with one product always in flight (run G in
runs/gluon_k2_h100.txt). ``turns`` adds to ``halves`` a hand-over between the two consumers
around each burst of exponentials, so that the exponential unit serves one warpgroup at a time
while the other reduces and its products run (the hardware counters in
runs/profile_pipes_h100.txt show a consumer warp spending 39 % of its time in its bursts, at
11 cycles per exponential where the unit takes 8). Checks every schedule against the float32
reference first; the ratios are paired, both orders (bench_kernels.paired_both_orders).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.bench_gluon_k2 import NAMES, envs  # noqa: E402
from benchmarks.kernels.bench_kernels import paired_both_orders, rel  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
SCHEDULES = ("plain", "halves", "turns")


def check() -> None:
    for n, causal, group, bias in ((1000, False, 4, True), (4097, True, 1, False), (1000, True, 8, True),
                                   (4097, False, 2, False)):
        h, d = 8, 128
        q = torch.randn(1, h, n, d, device=DEV, dtype=BF16)
        k = torch.randn(1, h // group, n, d, device=DEV, dtype=BF16)
        key_bias = None
        if bias:
            key_bias = torch.randn(1, h, n, device=DEV)
            key_bias[..., -37:] = -1.0e30
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, k, t, scaling=d**-0.5, key_bias=key_bias).lse
        _, ref = materialised_attention(q, k, k, t.allowed_rows(0, n, h), key_bias=key_bias, block_size=128,
                                        dtype=torch.float32)
        for schedule in SCHEDULES:
            got = envs({"HEADSCOPE_K2_SCHEDULE": schedule}, lambda: column_stats(
                q, k, lse, t, scaling=d**-0.5, key_bias=key_bias, block_stats=True))()
            errs = " ".join(f"{name}={rel(got[name], ref[name]):.2e}" for name in NAMES)
            print(f"check n={n} causal={causal} group={group} bias={bias} {schedule:6s} {errs}", flush=True)


def timing() -> None:
    for b, n, causal in ((4, 4096, False), (1, 16384, False), (1, 16384, True), (1, 32768, False), (1, 32768, True)):
        q, k, v = (torch.randn(b, 16, n, 128, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, v, t, scaling=128**-0.5).lse
        line = []
        for blocks in (False, True):
            call = {s: envs({"HEADSCOPE_K2_SCHEDULE": s}, lambda blocks=blocks: column_stats(
                q, k, lse, t, scaling=128**-0.5, block_stats=blocks)) for s in SCHEDULES}
            k1 = lambda: flash_forward(q, k, v, t, scaling=128**-0.5)  # noqa: E731
            tag = "_blocks" if blocks else ""
            line.append(f"plain{tag}/k1={paired_both_orders(k1, call['plain']):.3f}")
            for s in SCHEDULES[1:]:
                line.append(f"{s}{tag}/plain{tag}={paired_both_orders(call['plain'], call[s]):.3f}")
        print(f"time n={n} b={b} causal={causal} paired: " + " ".join(line), flush=True)
        del q, k, v


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), flush=True)
    check()
    timing()
