"""How much of a K1 or K2 call is fixed cost per program (tile loads, pipeline fill, epilogue)?

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section program-overhead --out $OUT

Holds the number of programs at 8 per SM (132 SMs: 1056 programs, one resident per SM) and
varies only the tiles each program walks: for K2, the queries (a 256-key program walks
``n_q / 128`` query tiles); for K1, the keys (a 128-query program walks ``n_kv / 128`` key
steps). Non-causal, bf16, hd128. If a program costs ``a + b * tiles``, the time per tile falls
as the programs get longer; the fit ``a / b`` is the fixed cost in tiles, which a persistent
kernel (programs that prefetch their next work item) could hide. Prints measurements only.
"""

from __future__ import annotations

import torch
import triton

from benchmarks.kernels.common import note
from probe.kernels.blocks import dense_table
from probe.kernels.launch import column_stats, flash_forward

DEV, BF16, D = "cuda", torch.bfloat16, 128
TILES = (8, 16, 32, 64, 128, 256)


def timed(fn) -> float:
    """Milliseconds per call, replayed from a CUDA graph so that the host's launch cost (which
    bounds the short calls here) is not counted."""
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench_cudagraph(fn, rep=300)


def fit(tiles: list[int], per_wave_us: list[float]) -> tuple[float, float]:
    """Least squares ``t = a + b * tiles`` over the measured waves; returns (a, b) in µs."""
    x = torch.tensor(tiles, dtype=torch.float64)
    y = torch.tensor(per_wave_us, dtype=torch.float64)
    design = torch.stack([torch.ones_like(x), x], 1)
    a, b = torch.linalg.lstsq(design, y[:, None]).solution[:, 0].tolist()
    return a, b


def report(name: str, tiles: list[int], per_wave_us: list[float]) -> None:
    a, b = fit(tiles, per_wave_us)
    for t, us in zip(tiles, per_wave_us):
        note(f"{name} tiles={t} us_per_program={us:.2f} us_per_tile={us / t:.3f}")
    note(f"{name} fit: fixed={a:.2f} us per program, {b:.3f} us per tile, fixed = {a / b:.2f} tiles")


def k2_call(heads: int, tiles: int):
    """K2 over 4096 keys (16 programs of 256 keys per head), each program walking ``tiles`` query tiles."""
    n_q, n_kv = 128 * tiles, 4096
    q = torch.randn(1, heads, n_q, D, device=DEV, dtype=BF16)
    k = torch.randn(1, heads, n_kv, D, device=DEV, dtype=BF16)
    table = dense_table(n_q, n_kv, causal=False, device=DEV)
    lse = flash_forward(q, k, k, table, scaling=D**-0.5).lse
    return lambda: column_stats(q, k, lse, table, scaling=D**-0.5)


def k1_call(heads: int, tiles: int):
    """K1 over 4096 queries (32 programs of 128 queries per head), each program walking ``tiles`` key steps."""
    n_q, n_kv = 4096, 128 * tiles
    q = torch.randn(1, heads, n_q, D, device=DEV, dtype=BF16)
    k, v = (torch.randn(1, heads, n_kv, D, device=DEV, dtype=BF16) for _ in range(2))
    table = dense_table(n_q, n_kv, causal=False, device=DEV)
    return lambda: flash_forward(q, k, v, table, scaling=D**-0.5)


def series(name: str, make_call, programs_per_head: int, waves: int, sms: int) -> None:
    heads = waves * sms // programs_per_head
    per_program_us = [timed(make_call(heads, t)) * 1e3 / waves for t in TILES]
    report(name, list(TILES), per_program_us)


def section_program_overhead() -> None:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    note(f"{torch.cuda.get_device_name()} {sms} SMs")
    if sms != 132:
        raise RuntimeError(f"the program counts assume 132 SMs; this GPU has {sms}")
    series("k2", k2_call, 16, 8, sms)
    series("k1", k1_call, 32, 8, sms)
