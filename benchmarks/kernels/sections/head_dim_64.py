"""The Gluon kernels at head dim 64 (SmolLM2, GPT-2, Pythia) against the Triton ones.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section head-dim-64 --out $OUT

Shapes: 32 query / 8 KV heads, head dim 64, bf16; 16k (batch 1) and 4k (batch 4), causal and
not. First the output and every statistic of the backend call (the Gluon K1 and K2) against a
float32 materialised reference (N = 1000 and 4097). Then K1, the K2 with 128-block
statistics on each kernel (``HEADSCOPE_GLUON_K2=0`` for the Triton one; paired: the two
alternately, median of 40 per-pair ratios), the all-statistics backend call each way, and SDPA.
Then the warp-specialised Gluon K1 (``flash_forward_gluon``) against the Triton K1
(``HEADSCOPE_GLUON=0``), plain and with entropy + distance, the same way.
Nothing asserts a timing. Output: ``benchmarks/kernels/runs/head_dim_64.txt``.
"""

from __future__ import annotations

import torch
import triton

from benchmarks.kernels.common import backend_errors, bench, note, paired, rand, sdpa, with_env
from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention
from probe.kernels.blocks import dense_table
from probe.kernels.gluon.k1_launch import flash_forward_gluon
from probe.kernels.launch import column_stats, flash_forward

H, KVH, D = 32, 8, 64
WANT = StatRequest(received=True, entropy=True, distance=True, block_size=128)
STATS = ("lse", "entropy", "distance", "received_sum", "received_max", "received_mean", "block_sum", "block_max")


def triton_k2(fn):
    return lambda: with_env("HEADSCOPE_GLUON_K2", "0", fn)


def check() -> None:
    """Every statistic and the output of the backend call (the Gluon K1 and K2 at 64) against float32."""
    for n in (1000, 4097):
        for causal in (False, True):
            q, k, v = rand(1, H, n, D), rand(1, KVH, n, D), rand(1, KVH, n, D)
            note(f"check n={n} causal={causal} {backend_errors(q, k, v, causal, WANT, STATS)}")


def timings() -> None:
    for b, n in ((1, 16384), (4, 4096)):
        q, k, v = rand(b, H, n, D), rand(b, KVH, n, D), rand(b, KVH, n, D)
        ke, ve = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)  # SDPA's GQA, expanded untimed
        for causal in (False, True):
            table = dense_table(n, causal=causal, device="cuda")
            lse = flash_forward(q, k, v, table, scaling=D**-0.5).lse
            k2 = lambda: column_stats(q, k, lse, table, scaling=D**-0.5, block_stats=True)  # noqa: E731
            every = lambda: triton_attention(q, k, v, LazyMask(b, n, n, device="cuda", causal=causal),  # noqa: E731
                                             want=WANT)
            sdpa_ms = bench(lambda: sdpa(q, ke, ve, causal))
            k1_ms = bench(lambda: flash_forward(q, k, v, table, scaling=D**-0.5))
            g_ms, t_ms = bench(k2), bench(triton_k2(k2))
            all_g, all_t = bench(every), bench(triton_k2(every))
            k2_ratio = paired(triton_k2(k2), k2)
            all_ratio = paired(triton_k2(every), every)
            note(f"time b={b} n={n} causal={causal} sdpa_ms={sdpa_ms:.3f} k1_ms={k1_ms:.3f} "
                  f"k2_blocks_gluon_ms={g_ms:.3f} k2_blocks_triton_ms={t_ms:.3f} paired_k2_gluon/triton={k2_ratio:.3f} "
                  f"k2_gluon/k1={g_ms / k1_ms:.2f} k2_triton/k1={t_ms / k1_ms:.2f} all_stats_gluon_ms={all_g:.3f} "
                  f"all_stats_triton_ms={all_t:.3f} paired_all_gluon/triton={all_ratio:.3f} "
                  f"all_gluon/sdpa={all_g / sdpa_ms:.2f} all_triton/sdpa={all_t / sdpa_ms:.2f}")


def timings_k1() -> None:
    for b, n in ((1, 16384), (4, 4096)):
        q, k, v = rand(b, H, n, D), rand(b, KVH, n, D), rand(b, KVH, n, D)
        for causal in (False, True):
            table = dense_table(n, causal=causal, device="cuda")
            for stats in (False, True):
                kw = dict(scaling=D**-0.5, entropy=stats, distance=stats)
                tri = lambda: with_env("HEADSCOPE_GLUON", "0", lambda: flash_forward(q, k, v, table, **kw))  # noqa: E731
                glu = lambda: flash_forward_gluon(q, k, v, table, **kw)  # noqa: E731
                t_ms, g_ms = bench(tri), bench(glu)
                note(f"time_k1 b={b} n={n} causal={causal} ent_dist={stats} triton_ms={t_ms:.3f} gluon_ms={g_ms:.3f} "
                      f"paired_gluon/triton={paired(tri, glu):.3f}")


def section_head_dim_64() -> None:
    note(f"{torch.cuda.get_device_name()} {torch.__version__} {triton.__version__}")
    check()
    timings()
    timings_k1()
