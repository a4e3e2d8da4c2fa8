"""Head dims 80 and 96 as two column parts (64 + 16, 64 + 32) against padding them to 128.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section head-dim-split --out $OUT
    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section head-dim-split-tiles --out $OUT

Shapes: 16 query heads over 4 KV heads, bf16, 16k tokens (batch 1) and 4k (batch 4), causal and
not. For each head dim: PyTorch's SDPA forward; the Triton K1 alone and the backend's
all-statistics call (entropy, distance, attention received, 128-block sums and maxima), each
with the parts of :func:`probe.kernels.launch.head_dim_parts` and with the head dim padded to
128 in one part (the kernels before this change), as paired ratios (``bench_kernels.paired``:
the two calls alternately, median of 40 per-pair ratios). TFLOP/s count the real head dim.
First, bf16 outputs and every statistic of both variants against a float32 materialised
reference (N = 1000 and 4097, GQA 4, causal and not). ``head-dim-split-tiles`` times tile configs
(``HEADSCOPE_K1_CONFIG`` / ``HEADSCOPE_K2_CONFIG``) at 16k for both head dims. Nothing asserts a
timing.
Output: ``benchmarks/kernels/runs/head_dim_split.txt``.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import triton

import probe.kernels.launch as launch
from benchmarks.kernels.common import backend_errors, bench, flops, note, paired, rand, sdpa, timed, with_env
from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention
from probe.kernels.blocks import dense_table

H, KVH = 16, 4
SHAPES = ((1, 16384), (4, 4096))
WANT = StatRequest(received=True, entropy=True, distance=True, block_size=128)
STATS = ("lse", "entropy", "distance", "received_sum", "received_max", "block_sum", "block_max")


@contextmanager
def padded(active: bool = True):
    """The kernels as they were: one part, padded to the next power of two."""
    split = launch.head_dim_parts
    if active:
        launch.head_dim_parts = lambda d: (max(16, triton.next_power_of_2(d)), 0)
    try:
        yield
    finally:
        launch.head_dim_parts = split


def check(d: int) -> None:
    for n in (1000, 4097):
        for causal in (False, True):
            q, k, v = rand(1, H, n, d), rand(1, KVH, n, d), rand(1, KVH, n, d)
            for name, use_padding in (("split", False), ("padded", True)):
                with padded(use_padding):
                    errs = backend_errors(q, k, v, causal, WANT, STATS)
                note(f"check d={d} n={n} causal={causal} {name} {errs}")


def timings(d: int) -> None:
    for b, n in SHAPES:
        q, k, v = rand(b, H, n, d), rand(b, KVH, n, d), rand(b, KVH, n, d)
        ke, ve = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)  # SDPA's GQA, expanded untimed
        for causal in (False, True):
            table = dense_table(n, causal=causal, device="cuda")
            mask = LazyMask(b, n, n, device="cuda", causal=causal)
            k1 = lambda: launch.flash_forward(q, k, v, table, scaling=d**-0.5)  # noqa: E731
            every = lambda: triton_attention(q, k, v, mask, want=WANT)  # noqa: E731
            sdpa_ms = bench(lambda: sdpa(q, ke, ve, causal))
            k1_ms, every_ms = bench(k1), bench(every)
            with padded():
                k1_pad_ms, every_pad_ms = bench(k1), bench(every)
            k1_ratio = _paired_against_padded(k1)
            every_ratio = _paired_against_padded(every)
            work = flops(b, H, n, d, causal)
            note(f"time d={d} b={b} n={n} causal={causal} sdpa_ms={sdpa_ms:.3f} "
                  f"sdpa_tflops={work / sdpa_ms / 1e9:.0f} k1_ms={k1_ms:.3f} k1_tflops={work / k1_ms / 1e9:.0f} "
                  f"k1_padded_ms={k1_pad_ms:.3f} paired_k1_split/padded={k1_ratio:.3f} k1/sdpa={k1_ms / sdpa_ms:.2f} "
                  f"all_stats_ms={every_ms:.3f} all_stats_padded_ms={every_pad_ms:.3f} "
                  f"paired_all_split/padded={every_ratio:.3f} all_stats/sdpa={every_ms / sdpa_ms:.2f}")


def _paired_against_padded(fn) -> float:
    """time(split) / time(padded), paired; the padded call swaps the parts in and out around itself."""
    def padded_call():
        with padded():
            fn()
    return 1.0 / paired(fn, padded_call)


K1_SWEEP = ("128,8,2", "128,8,3", "64,4,3", "64,8,3", "128,4,2")
K2_SWEEP = ("0,4,3", "0,4,2", "0,8,2", "0,8,3")


def sweep(d: int) -> None:
    """Tile configs at 16k, batch 1: K1 alone and K2 with 128-block statistics (64-query tiles,
    the backend's table for the Triton K2)."""
    q, k, v = rand(1, H, 16384, d), rand(1, KVH, 16384, d), rand(1, KVH, 16384, d)
    for causal in (False, True):
        t1 = dense_table(16384, causal=causal, device="cuda")
        t2 = dense_table(16384, causal=causal, block_q=64, block_kv=128, device="cuda")
        lse = launch.flash_forward(q, k, v, t1, scaling=d**-0.5).lse
        k1_call = lambda: launch.flash_forward(q, k, v, t1, scaling=d**-0.5)  # noqa: E731
        k2_call = lambda: launch.column_stats(q, k, lse, t2, scaling=d**-0.5, block_stats=True)  # noqa: E731
        k1 = {c: timed("HEADSCOPE_K1_CONFIG", c, k1_call) for c in K1_SWEEP}
        k2 = {c: timed("HEADSCOPE_K2_CONFIG", c, k2_call) for c in K2_SWEEP}
        note(f"sweep d={d} causal={causal} k1_ms " + " ".join(f"{c}={ms}" for c, ms in k1.items())
              + " k2_blocks_ms " + " ".join(f"{c}={ms}" for c, ms in k2.items()))
        stages = paired(lambda: with_env("HEADSCOPE_K2_CONFIG", "0,4,3", k2_call),
                        lambda: with_env("HEADSCOPE_K2_CONFIG", "0,4,2", k2_call))
        warps = paired(lambda: with_env("HEADSCOPE_K1_CONFIG", "128,8,2", k1_call),
                       lambda: with_env("HEADSCOPE_K1_CONFIG", "128,4,2", k1_call))
        note(f"paired d={d} causal={causal} k2_0,4,2/0,4,3={stages:.3f} k1_128,4,2/128,8,2={warps:.3f}")


def _versions() -> None:
    note(f"{torch.cuda.get_device_name()} {torch.__version__} {triton.__version__}")


def section_head_dim_split() -> None:
    """Checks, then the paired timings, at head dims 80 and 96."""
    _versions()
    for d in (80, 96):
        note(f"parts d={d}: {launch.head_dim_parts(d)}")
        check(d)
    for d in (80, 96):
        timings(d)


def section_head_dim_split_tiles() -> None:
    """The tile sweep at head dims 80 and 96 (what chose ``K2_TWO_PART_CONFIGS``)."""
    _versions()
    for d in (80, 96):
        sweep(d)
