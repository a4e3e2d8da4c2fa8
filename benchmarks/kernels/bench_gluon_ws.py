"""The warp-specialised Gluon K1 next to the single-partition Gluon K1 and cuDNN, on a lent Hopper GPU.

    PYTHONUNBUFFERED=1 timeout 300 python benchmarks/kernels/bench_gluon_ws.py

Checks it against a float32 materialised reference first (dense, causal, GQA, odd lengths,
bias, statistics), then times both kernels and cuDNN in interleaved rounds. Nothing asserts a
timing.
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
from probe.kernels.gluon_launch import flash_forward_gluon  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16


def with_ws(flag: str, fn):
    """``fn`` as a call with HEADSCOPE_GLUON_WS set to ``flag`` ("1": warp-specialised, "0": single partition)."""
    return lambda: with_env("HEADSCOPE_GLUON_WS", flag, fn)


def check() -> None:
    for n, causal, group, stats in ((1000, False, 4, True), (4097, True, 1, True), (1000, True, 8, False),
                                    (4097, False, 2, False)):
        h, d = 8, 128
        q = torch.randn(1, h, n, d, device=DEV, dtype=BF16)
        k, v = (torch.randn(1, h // group, n, d, device=DEV, dtype=BF16) for _ in range(2))
        t = dense_table(n, causal=causal, device=DEV)
        bias = torch.randn(1, h, n, device=DEV) * 0.5
        r = with_ws("1", lambda: flash_forward_gluon(q, k, v, t, scaling=d**-0.5, key_bias=bias, entropy=stats, distance=stats))()
        out, st = materialised_attention(q, k, v, t.allowed_rows(0, n, h), key_bias=bias, dtype=torch.float32)
        errs = dict(out=rel(r.output, out), lse=rel(r.lse, st["lse"]))
        if stats:
            errs.update(entropy=rel(r.entropy, st["entropy"]), distance=rel(r.distance, st["distance"]))
        print("check", n, causal, group, " ".join(f"{k_}={v_:.2e}" for k_, v_ in errs.items()), flush=True)


def timing() -> None:
    for b, h, n, causal in ((4, 16, 4096, False), (4, 16, 4096, True), (1, 16, 16384, False), (1, 16, 16384, True),
                            (1, 16, 32768, False), (1, 16, 32768, True)):
        q, k, v = (torch.randn(b, h, n, 128, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)

        def cudnn():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        tm = interleaved({"cudnn": cudnn, "gluon": with_ws("0", lambda: flash_forward_gluon(q, k, v, t, scaling=128**-0.5)),
                          "ws": with_ws("1", lambda: flash_forward_gluon(q, k, v, t, scaling=128**-0.5))})
        print(f"time n={n} b={b} causal={causal} cudnn_ms={median(tm['cudnn']):.3f} gluon_over_cudnn="
              f"{1 / ratio(tm, 'gluon', 'cudnn'):.3f} ws_over_cudnn={1 / ratio(tm, 'ws', 'cudnn'):.3f}", flush=True)
        del q, k, v


def bias_timing() -> None:
    """The key bias added by the S product (default) against the softmax add, over the unbiased kernel."""
    for causal in (True, False):
        n = 16384
        q, k, v = (torch.randn(1, 16, n, 128, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)
        bias = torch.randn(1, 16, n, device=DEV)
        run = lambda key_bias: lambda: flash_forward_gluon(q, k, v, t, scaling=128**-0.5, key_bias=key_bias)  # noqa: E731
        tm = interleaved({"base": run(None), "product": lambda: with_env("HEADSCOPE_BIAS_IN_PRODUCT", "1", run(bias)),
                          "softmax": lambda: with_env("HEADSCOPE_BIAS_IN_PRODUCT", "0", run(bias))})
        print(f"bias n={n} causal={causal} base_ms={median(tm['base']):.3f} product/base={ratio(tm, 'product', 'base'):.3f} "
              f"softmax/base={ratio(tm, 'softmax', 'base'):.3f}", flush=True)


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), flush=True)
    check()
    if "--bias" in sys.argv:
        bias_timing()
    else:
        timing()
