"""The Triton K1 and K2 at head dim 256 (Gemma-2/3) on a lent GPU: tile sweep, then the chosen tiles.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section head-dim-256 --out $OUT

Shapes: Gemma-3-4B-like attention (8 query heads, 4 KV heads, head dim 256), bf16, 16k tokens,
causal and not. Times each K1 tile config (``HEADSCOPE_K1_CONFIG``) and each K2 config
(``HEADSCOPE_K2_CONFIG``, with 128-block statistics) against PyTorch's SDPA forward, then the
backend's all-statistics call with the defaults of :data:`probe.kernels.launch.K1_CONFIGS`, and
the chunked reference that took head dim 256 before the kernels did.
Configs that do not fit (shared memory, registers) are reported as errors. Nothing asserts a
timing. Output: ``benchmarks/kernels/runs/head_dim_256.txt``.
"""

from __future__ import annotations

import torch

from benchmarks.kernels.common import bench, flops, note, sdpa, timed
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention
from probe.kernels.blocks import dense_table
from probe.kernels.launch import column_stats, flash_forward

DEV, BF16 = "cuda", torch.bfloat16
B, H, KVH, N, D = 1, 8, 4, 16384, 256
K1_CANDIDATES = ("64,8,2", "64,4,1", "64,8,1", "128,4,1", "128,8,1")
K2_CANDIDATES = ("0,4,1", "0,8,1", "0,4,2", "0,8,2", "0,4,3")


def section_head_dim_256() -> None:
    note(torch.cuda.get_device_name())
    q = torch.randn(B, H, N, D, device=DEV, dtype=BF16)
    k, v = (torch.randn(B, KVH, N, D, device=DEV, dtype=BF16) for _ in range(2))
    ke, ve = k.repeat_interleave(H // KVH, 1), v.repeat_interleave(H // KVH, 1)  # SDPA's GQA, expanded untimed
    for causal in (False, True):
        t = dense_table(N, causal=causal, device=DEV)
        sdpa_ms = bench(lambda: sdpa(q, ke, ve, causal))
        work = flops(B, H, N, D, causal)
        note(f"sdpa causal={causal} ms={sdpa_ms:.3f} tflops={work / sdpa_ms / 1e9:.0f}")
        for cfg in K1_CANDIDATES:
            ms = timed("HEADSCOPE_K1_CONFIG", cfg, lambda: flash_forward(q, k, v, t, scaling=D**-0.5))
            ms_s = timed("HEADSCOPE_K1_CONFIG", cfg, lambda: flash_forward(q, k, v, t, scaling=D**-0.5, entropy=True,
                                                                         distance=True))
            note(f"k1 causal={causal} config={cfg} ms={ms} ent_dist_ms={ms_s}")
        lse = flash_forward(q, k, v, t, scaling=D**-0.5).lse
        for cfg in K2_CANDIDATES:
            ms = timed("HEADSCOPE_K2_CONFIG", cfg, lambda: column_stats(q, k, lse, t, scaling=D**-0.5, block_stats=True))
            note(f"k2 causal={causal} config={cfg} blocks_ms={ms}")
        mask = LazyMask(B, N, N, device=DEV, causal=causal)
        want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
        every = bench(lambda: triton_attention(q, k, v, mask, want=want))
        k1 = bench(lambda: flash_forward(q, k, v, t, scaling=D**-0.5))
        before = bench(lambda: reference_attention(q, k, v, mask, scaling=D**-0.5, want=want))
        note(f"defaults causal={causal} k1_ms={k1:.3f} k1_tflops={work / k1 / 1e9:.0f} k1/sdpa={k1 / sdpa_ms:.2f} "
              f"all_stats_ms={every:.3f} all_stats/sdpa={every / sdpa_ms:.2f} "
              f"reference_route_ms={before:.1f} (where head dim 256 went before)")

