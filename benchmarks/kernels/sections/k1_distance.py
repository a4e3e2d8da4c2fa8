"""The warp-specialised K1's mean-distance paths on a lent Hopper GPU: exactness, then paired timings.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section k1-distance --out $OUT

Variants (:func:`probe.kernels.gluon.k1_launch.tc_distance`): ``tc`` sums ``p x column`` on the
tensor cores (the default), ``fma`` in float32 on the FMA pipe (``HEADSCOPE_K1_TC_DISTANCE=0``).
Checks each against a float32 materialised reference (odd lengths, GQA, causal and not, key
bias), then times them: interleaved rounds for ratios to SDPA, and ``paired`` ratios (the two
calls alternately, back to back) against the FMA path. Nothing asserts a timing. Outputs:
``benchmarks/kernels/runs/k1_stats_h100.txt``.
"""

from __future__ import annotations

import torch

from benchmarks.kernels.common import envs, interleaved, median, note, paired, ratio, rel, sdpa
from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention
from probe.kernels.blocks import dense_table
from probe.kernels.launch import flash_forward
from probe.kernels.materialised import materialised_attention

DEV, BF16 = "cuda", torch.bfloat16
VARIANTS = {"fma": {"HEADSCOPE_K1_TC_DISTANCE": "0"}, "tc": {}}


def check() -> None:
    for n, causal, group, bias in ((1000, False, 4, True), (4097, True, 1, False), (1000, True, 8, True),
                                   (4097, False, 2, False), (4097, True, 3, True)):
        h, d = 6 if group == 3 else 8, 128
        q = torch.randn(1, h, n, d, device=DEV, dtype=BF16)
        k, v = (torch.randn(1, h // group, n, d, device=DEV, dtype=BF16) for _ in range(2))
        key_bias = None
        if bias:
            key_bias = 2 * torch.randn(1, h, n, device=DEV)
            key_bias[..., -37:] = -1.0e30  # padding keys
        t = dense_table(n, causal=causal, device=DEV)
        out, ref = materialised_attention(q, k, v, t.allowed_rows(0, n, h), key_bias=key_bias, dtype=torch.float32)
        for name, env in VARIANTS.items():
            r = envs(env, lambda: flash_forward(q, k, v, t, scaling=d**-0.5, key_bias=key_bias, entropy=True,
                                                distance=True))()
            worst_abs = (r.distance.double() - ref["distance"].double()).abs().max().item()
            note(f"check n={n} causal={causal} group={group} bias={bias} {name}: output={rel(r.output, out):.2e} "
                  f"lse={rel(r.lse, ref['lse']):.2e} entropy={rel(r.entropy, ref['entropy']):.2e} "
                  f"distance={rel(r.distance, ref['distance']):.2e} distance_max_abs={worst_abs:.3f}")


def timing() -> None:
    for b, h, n in ((4, 16, 4096), (1, 16, 16384), (1, 16, 32768)):
        d = 128
        q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
        for causal in (False, True):
            t = dense_table(n, causal=causal, device=DEV)
            mask = LazyMask(b, n, n, device=DEV, causal=causal)
            want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
            k1 = lambda: flash_forward(q, k, v, t, scaling=d**-0.5)  # noqa: E731
            k1s = lambda: flash_forward(q, k, v, t, scaling=d**-0.5, entropy=True, distance=True)  # noqa: E731
            every = lambda: triton_attention(q, k, v, mask, want=want)  # noqa: E731
            fns = {"sdpa": lambda: sdpa(q, k, v, causal), "k1": k1}
            for name, env in VARIANTS.items():
                fns[f"k1s_{name}"] = envs(env, k1s)
                fns[f"all_{name}"] = envs(env, every)
            tm = interleaved(fns)
            line = [f"time n={n} b={b} causal={causal} sdpa_ms={median(tm['sdpa']):.3f}",
                    f"k1/sdpa={ratio(tm, 'k1', 'sdpa'):.3f}"]
            line += [f"{x}/k1={ratio(tm, x, 'k1'):.3f}" for x in fns if x.startswith("k1s")]
            line += [f"{x}/sdpa={ratio(tm, x, 'sdpa'):.3f}" for x in fns if x.startswith("all")]
            line.append("paired:")
            line += [f"k1s_tc/k1s_fma={paired(fns['k1s_fma'], fns['k1s_tc']):.3f}",
                     f"all_tc/all_fma={paired(fns['all_fma'], fns['all_tc']):.3f}"]
            line += [f"k1s_{x}/k1={paired(k1, fns[f'k1s_{x}']):.3f}" for x in VARIANTS]
            note(" ".join(line))
        del q, k, v
        torch.cuda.empty_cache()



def section_k1_distance() -> None:
    note(torch.cuda.get_device_name())
    check()
    timing()
