"""The Gluon K2's per-tile reductions on a lent Hopper GPU: exactness, then paired timings.

    PYTHONUNBUFFERED=1 timeout 500 python benchmarks/kernels/bench_k2_reduce.py

Variants (:mod:`probe.kernels.gluon_k2_ws`, full tiles): ``max_first`` takes each key's maximum
over the tile's logits before the exponentials, ``2^max(st)`` (the default), ``exp_first`` over
the exponentials, ``max(2^st)`` (``HEADSCOPE_K2_MAX_FIRST=0``). The two are equal as long as the
exponential is monotone; the first leaves the maxima independent of the exponential unit, so the
compiler can issue them between exponentials. Checks each against a float32 materialised
reference, then times them: interleaved rounds for ratios to K1 and SDPA, and ``paired`` ratios
(the two calls alternately, back to back). Nothing asserts a timing. Outputs:
``benchmarks/kernels/runs/k2_reduce_h100.txt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.bench_gluon_k2 import NAMES, envs  # noqa: E402
from benchmarks.kernels.bench_kernels import interleaved, median, paired, ratio, rel, sdpa  # noqa: E402
from probe.attention.mask import LazyMask  # noqa: E402
from probe.attention.spec import StatRequest  # noqa: E402
from probe.kernels.backend import triton_attention  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
VARIANTS = {"exp_first": {"HEADSCOPE_K2_MAX_FIRST": "0"}, "max_first": {}}
BASE, NEW = "exp_first", "max_first"


def check() -> None:
    for n, causal, group, bias in ((1000, False, 4, True), (4097, True, 1, False), (1000, True, 8, True),
                                   (4097, False, 2, False)):
        h, d = 8, 128
        q = torch.randn(1, h, n, d, device=DEV, dtype=BF16)
        k = torch.randn(1, h // group, n, d, device=DEV, dtype=BF16)
        key_bias = None
        if bias:
            key_bias = 2 * torch.randn(1, h, n, device=DEV)
            key_bias[..., -37:] = -1.0e30  # padding keys
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, k, t, scaling=d**-0.5, key_bias=key_bias).lse
        _, ref = materialised_attention(q, k, k, t.allowed_rows(0, n, h), key_bias=key_bias, block_size=128,
                                        dtype=torch.float32)
        got = {name: envs(env, lambda: column_stats(q, k, lse, t, scaling=d**-0.5, key_bias=key_bias,
                                                    block_stats=True))() for name, env in VARIANTS.items()}
        for name, stats in got.items():
            errs = " ".join(f"{s}={rel(stats[s], ref[s]):.2e}" for s in NAMES)
            same = all(torch.equal(stats[s], got[BASE][s]) for s in NAMES)
            print(f"check n={n} causal={causal} group={group} bias={bias} {name}: {errs} "
                  f"equal_to_{BASE}={same}", flush=True)


def timing() -> None:
    for b, h, n in ((4, 16, 4096), (1, 16, 16384), (1, 16, 32768)):
        d = 128
        q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
        for causal in (False, True):
            t = dense_table(n, causal=causal, device=DEV)
            lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
            mask = LazyMask(b, n, n, device=DEV, causal=causal)
            want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
            k1 = lambda: flash_forward(q, k, v, t, scaling=d**-0.5)  # noqa: E731
            k2b = lambda: column_stats(q, k, lse, t, scaling=d**-0.5, block_stats=True)  # noqa: E731
            every = lambda: triton_attention(q, k, v, mask, want=want)  # noqa: E731
            fns = {"sdpa": lambda: sdpa(q, k, v, causal), "k1": k1}
            for name, env in VARIANTS.items():
                fns[f"k2b_{name}"] = envs(env, k2b)
                fns[f"all_{name}"] = envs(env, every)
            tm = interleaved(fns)
            line = [f"time n={n} b={b} causal={causal} sdpa_ms={median(tm['sdpa']):.3f}",
                    f"k1/sdpa={ratio(tm, 'k1', 'sdpa'):.3f}"]
            line += [f"{x}/k1={ratio(tm, x, 'k1'):.3f}" for x in fns if x.startswith("k2b")]
            line += [f"{x}/sdpa={ratio(tm, x, 'sdpa'):.3f}" for x in fns if x.startswith("all")]
            line.append("paired:")
            line += [f"k2b_{NEW}/k2b_{BASE}={paired(fns[f'k2b_{BASE}'], fns[f'k2b_{NEW}']):.3f}",
                     f"all_{NEW}/all_{BASE}={paired(fns[f'all_{BASE}'], fns[f'all_{NEW}']):.3f}"]
            line += [f"k2b_{x}/k1={paired(k1, fns[f'k2b_{x}']):.3f}" for x in VARIANTS]
            print(" ".join(line), flush=True)


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), flush=True)
    check()
    timing()
