"""The ``tune`` section: tile sweeps whose winners are used for the rest of the run.

The Triton K1's tiles and load path (TMA, pointer loads, warp-specialised) per head dim and
causal, the K2's query step, warps and stages, then the Gluon K1's (block_n, stages); each best
config is written into the kernels' tables (or their environment variables) for the sections
that follow in the same run. Configs that do not fit (shared memory, registers) are recorded as
errors, not raised.
"""

from __future__ import annotations

import os

import torch

from benchmarks.kernels.common import DEV, bench, flops, rand, record
from probe.kernels import backend, launch
from probe.kernels.blocks import dense_table
from probe.kernels.launch import column_stats, flash_forward

K1_CANDIDATES = {128: ("128,8,3", "128,8,2", "64,8,3", "64,4,3"), 64: ("64,4,3", "64,8,3", "128,8,3", "128,8,2")}
K2_CANDIDATES = (((64, 128), "0,8,2"), ((64, 128), "0,4,2"), ((64, 128), "0,4,3"), ((128, 128), "0,8,2"),
                 ((128, 128), "0,8,3"), ((64, 128), "0,8,3"))


def _try_bench(fn, rep=60):
    try:
        return bench(fn, rep)
    except Exception as e:  # a config may not fit in shared memory or registers
        return type(e).__name__


GLUON_CANDIDATES = ("128,2", "128,3")


def section_tune_gluon():
    """Pick the Gluon K1's (block_n, stages) at hd128 by the sum of 16k causal + non-causal."""
    d, h, n = 128, 16, 16384
    q, k, v = rand(1, h, n, d), rand(1, h, n, d), rand(1, h, n, d)
    best = None
    for cfg in GLUON_CANDIDATES:
        os.environ["HEADSCOPE_GLUON_CONFIG"] = cfg
        total = 0.0
        for causal in (False, True):
            t = dense_table(n, causal=causal, device=DEV)
            ms = _try_bench(lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
            record("tune-gluon", config=cfg, causal=causal, ms=ms,
                   tflops=flops(1, h, n, d, causal) / ms / 1e9 if not isinstance(ms, str) else ms)
            total = total + ms if not isinstance(ms, str) and not isinstance(total, str) else "err"
        if not isinstance(total, str) and (best is None or total < best[1]):
            best = (cfg, total)
    os.environ["HEADSCOPE_GLUON_CONFIG"] = best[0]
    record("tune-gluon-chosen", config=best[0])


def section_tune():
    """Pick the Triton K1's tiles per (head dim, causal) and K2's query step / warps / stages, at 16k."""
    os.environ["HEADSCOPE_GLUON"] = "0"  # tune the Triton K1 itself
    try:
        _tune_triton()
    finally:
        os.environ.pop("HEADSCOPE_GLUON")
    section_tune_gluon()


def _tune_triton():
    for d, h in ((128, 16), (64, 32)):
        q, k, v = rand(1, h, 16384, d), rand(1, h, 16384, d), rand(1, h, 16384, d)
        for causal in (False, True):
            t = dense_table(16384, causal=causal, device=DEV)
            best = None
            for tma in ("1", "0", "ws"):
                os.environ["HEADSCOPE_TMA"] = "0" if tma == "0" else "1"
                os.environ["HEADSCOPE_K1_WS"] = "1" if tma == "ws" else "0"
                for cfg in K1_CANDIDATES[d] if tma == "1" else K1_CANDIDATES[d][:2]:
                    os.environ["HEADSCOPE_K1_CONFIG"] = cfg
                    ms = _try_bench(lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
                    if isinstance(ms, str):
                        record("tune-k1", d=d, causal=causal, tma=tma, config=cfg, error=ms)
                        continue
                    record("tune-k1", d=d, causal=causal, tma=tma, config=cfg, ms=ms,
                           tflops=flops(1, h, 16384, d, causal) / ms / 1e9)
                    if tma == "1" and (best is None or ms < best[1]):
                        best = (cfg, ms)
            os.environ.pop("HEADSCOPE_TMA")
            os.environ.pop("HEADSCOPE_K1_CONFIG")
            os.environ.pop("HEADSCOPE_K1_WS")
            if best is not None:
                launch.K1_CONFIGS[(launch.dim_class(d), causal)] = launch.KernelConfig(*(int(x) for x in best[0].split(",")))
                record("tune-k1-chosen", d=d, causal=causal, config=best[0])
        if d == 128:
            lse = flash_forward(q, k, v, dense_table(16384, causal=True, device=DEV), scaling=d**-0.5).lse
            best = None
            for block, cfg in K2_CANDIDATES:
                os.environ["HEADSCOPE_K2_CONFIG"] = cfg
                total = 0.0
                for causal in (False, True):
                    t = dense_table(16384, causal=causal, block_q=block[0], block_kv=block[1], device=DEV)
                    ms = _try_bench(lambda: column_stats(q, k, lse, t, scaling=d**-0.5))
                    record("tune-k2", block=f"{block[0]}x{block[1]}", config=cfg, causal=causal, ms=ms)
                    total = total + ms if not isinstance(ms, str) and not isinstance(total, str) else "err"
                if not isinstance(total, str) and (best is None or total < best[2]):
                    best = (block, cfg, total)
            os.environ["HEADSCOPE_K2_CONFIG"] = best[1]
            backend.K2_BLOCK = best[0]
            record("tune-k2-chosen", block=f"{best[0][0]}x{best[0][1]}", config=best[1])
        del q, k, v
        torch.cuda.empty_cache()
