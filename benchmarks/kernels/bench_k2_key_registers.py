"""The Gluon K2 with each consumer's 128-key tile in registers against the same tile read from
shared memory by every product, on a lent Hopper GPU.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_k2_key_registers.py

Why: with 128 keys per consumer both operands of ``S^T = K Q^T`` come from shared memory, and
each of a consumer's two m64 products reads the whole query tile, so the products read 96 B of
shared memory per cycle of tensor work at the datasheet's rate (K1: ~78). With the key tile as
the register operand they read 64. The build then holds 64 more registers per thread and spills
a few words per step (sm_90a: 6 stores and 6 loads per unmasked step). ``HEADSCOPE_K2_AREG=all``
selects it.

First checks it against the float32 materialised reference, then times, per shape: the ratio of
the two (paired: alternately, back to back, median of 40), each against K1 (interleaved rounds),
and the all-statistics backend call against SDPA, paired, under each. Nothing asserts a timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.bench_gluon_k2 import NAMES, envs, rel  # noqa: E402
from benchmarks.kernels.bench_kernels import interleaved, paired, ratio  # noqa: E402
from probe.attention.mask import LazyMask  # noqa: E402
from probe.attention.spec import StatRequest  # noqa: E402
from probe.kernels.backend import triton_attention  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
IN_REGISTERS = {"HEADSCOPE_K2_AREG": "all"}


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
        got = envs(IN_REGISTERS, lambda: column_stats(q, k, lse, t, scaling=d**-0.5, key_bias=key_bias,
                                                      block_stats=True))()
        errs = " ".join(f"{name}={rel(got[name], ref[name]):.2e}" for name in NAMES)
        print(f"check n={n} causal={causal} group={group} bias={bias} {errs}", flush=True)


def timing() -> None:
    want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
    for b, h, n, causal in ((4, 16, 4096, False), (1, 16, 16384, False), (1, 16, 16384, True),
                            (1, 16, 32768, False), (1, 16, 32768, True)):
        q, k, v = (torch.randn(b, h, n, 128, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, v, t, scaling=128**-0.5).lse
        mask = LazyMask(b, n, n, device=DEV, causal=causal)
        k2 = lambda blocks=False: column_stats(q, k, lse, t, scaling=128**-0.5, block_stats=blocks)  # noqa: E731
        k2b = lambda: k2(True)  # noqa: E731
        every = lambda: triton_attention(q, k, v, mask, want=want)  # noqa: E731
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
        tm = interleaved({
            "k1": lambda: flash_forward(q, k, v, t, scaling=128**-0.5),
            "smem": k2, "regs": envs(IN_REGISTERS, k2),
            "smem_blocks": k2b, "regs_blocks": envs(IN_REGISTERS, k2b),
        })
        parts = " ".join(f"{name}/k1={ratio(tm, name, 'k1'):.3f}" for name in tm if name != "k1")
        print(f"time n={n} b={b} causal={causal} {parts} "
              f"paired: regs/smem={paired(k2, envs(IN_REGISTERS, k2)):.3f} "
              f"regs_blocks/smem_blocks={paired(k2b, envs(IN_REGISTERS, k2b)):.3f} "
              f"all_smem/sdpa={paired(sdpa, every):.3f} all_regs/sdpa={paired(sdpa, envs(IN_REGISTERS, every)):.3f}",
              flush=True)
        del q, k, v


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    check()
    timing()
