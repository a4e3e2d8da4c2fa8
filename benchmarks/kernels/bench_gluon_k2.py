"""The warp-specialised Gluon K2 next to the Triton K2, K1 and cuDNN, on a lent Hopper GPU.

    PYTHONUNBUFFERED=1 timeout 400 python benchmarks/kernels/bench_gluon_k2.py

Checks it against a float32 materialised reference first (dense, causal, GQA, odd lengths,
bias with padding, block statistics), then times the column pass in interleaved rounds: the
Gluon K2 with 128 and 64 keys per consumer, 2 or 3 query stages, 64-query tiles, and the Triton K2
it replaces, each as a ratio to K1's time and to cuDNN's forward. Nothing asserts a timing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.bench_kernels import interleaved, median, ratio, rel, with_env  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
NAMES = ("received_sum", "received_max", "count", "block_sum", "block_max")


def envs(pairs: dict[str, str], fn):
    """``fn`` as a call with the environment variables in ``pairs`` set for the call only."""
    def call():
        inner = fn
        for var, value in pairs.items():
            inner = (lambda f, v, x: (lambda: with_env(v, x, f)))(inner, var, value)
        return inner()
    return call


def check() -> None:
    for n, causal, group, bias in ((1000, False, 4, True), (4097, True, 1, False), (1000, True, 8, True),
                                   (4097, False, 2, False)):
        h, d = 8, 128
        q = torch.randn(1, h, n, d, device=DEV, dtype=BF16)
        k = torch.randn(1, h // group, n, d, device=DEV, dtype=BF16)
        key_bias = None
        if bias:
            key_bias = torch.randn(1, h, n, device=DEV)
            key_bias[..., -37:] = -1.0e30  # padding keys; every query still sees real keys
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, k, t, scaling=d**-0.5, key_bias=key_bias).lse
        _, ref = materialised_attention(q, k, k, t.allowed_rows(0, n, h), key_bias=key_bias, block_size=128,
                                        dtype=torch.float32)
        for keys in ("128", "64"):
            got = envs({"HEADSCOPE_K2_KEYS": keys}, lambda: column_stats(
                q, k, lse, t, scaling=d**-0.5, key_bias=key_bias, block_stats=True))()
            errs = " ".join(f"{name}={rel(got[name], ref[name]):.2e}" for name in NAMES)
            print(f"check n={n} causal={causal} group={group} bias={bias} keys={keys} {errs}", flush=True)


def timing() -> None:
    for b, h, n, causal in ((4, 16, 4096, False), (4, 16, 4096, True), (1, 16, 16384, False), (1, 16, 16384, True),
                            (1, 16, 32768, False), (1, 16, 32768, True)):
        q, k, v = (torch.randn(b, h, n, 128, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)
        t64 = dense_table(n, causal=causal, block_q=64, block_kv=128, device=DEV)
        lse = flash_forward(q, k, v, t, scaling=128**-0.5).lse

        def cudnn():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        k2 = lambda table=t, blocks=False: column_stats(q, k, lse, table, scaling=128**-0.5, block_stats=blocks)  # noqa: E731
        tm = interleaved({
            "cudnn": cudnn,
            "k1": lambda: flash_forward(q, k, v, t, scaling=128**-0.5),
            "keys128": k2,
            "keys64_kregs": envs({"HEADSCOPE_K2_KEYS": "64"}, k2),
            "keys64_ksmem": envs({"HEADSCOPE_K2_KEYS": "64", "HEADSCOPE_K2_AREG": "0"}, k2),
            "keys64_kregs_q64": envs({"HEADSCOPE_K2_KEYS": "64"}, lambda: k2(t64)),
            "keys128_blocks": lambda: k2(t, True),
            "keys64_kregs_blocks": envs({"HEADSCOPE_K2_KEYS": "64"}, lambda: k2(t, True)),
            "triton": envs({"HEADSCOPE_GLUON_K2": "0"}, lambda: k2(t64)),
            "triton_blocks": envs({"HEADSCOPE_GLUON_K2": "0"}, lambda: k2(t, True)),
        })
        parts = " ".join(f"{name}/k1={ratio(tm, name, 'k1'):.3f}" for name in tm if name not in ("k1", "cudnn"))
        print(f"time n={n} b={b} causal={causal} cudnn_ms={median(tm['cudnn']):.3f} k1_ms={median(tm['k1']):.3f} "
              f"k1/cudnn={ratio(tm, 'k1', 'cudnn'):.3f} {parts}", flush=True)
        del q, k, v


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), flush=True)
    check()
    timing()
