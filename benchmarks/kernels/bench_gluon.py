"""Gluon K1 on the lent Hopper GPU: correctness first, then its speed next to cuDNN and the Triton K1.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_gluon.py --out $OUT [--configs 128,2;64,3]

Checks the Gluon kernel against a float32 materialised reference (dense, causal, GQA, odd
lengths, entropy, distance, key bias, head scale) and against the Triton K1 on sparse and
sliding-window tables; then times it (``triton.testing.do_bench`` medians, bf16) at the issue's
shapes for each tile config given. Prints one line per measurement; nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.kernels.bench_kernels import rel  # noqa: E402
from probe.kernels import launch  # noqa: E402
from probe.kernels.blocks import dense_table, random_block_table, sliding_window_table  # noqa: E402
from probe.kernels.gluon_launch import flash_forward_gluon, gluon_eligible  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402

DEV, BF16 = "cuda", torch.bfloat16
ROWS: list[dict] = []


def record(section: str, **fields) -> None:
    ROWS.append({"section": section, **fields})
    print(f"[{section}] " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in fields.items()), flush=True)


def qkv(b, h, hkv, n, d, layout="bhnd"):
    if layout == "bnhd":  # HF's memory order, viewed as [B, H, N, d]
        make = lambda heads: torch.randn(b, n, heads, d, device=DEV, dtype=BF16).transpose(1, 2)  # noqa: E731
    else:
        make = lambda heads: torch.randn(b, heads, n, d, device=DEV, dtype=BF16)  # noqa: E731
    return make(h), make(hkv), make(hkv)


def check_dense() -> None:
    for n in (1000, 4097):
        for d in (64, 128):
            for group in (1, 4):
                for causal in (False, True):
                    layout = "bnhd" if (n == 1000 and group == 4) else "bhnd"
                    q, k, v = qkv(1, 8, 8 // group, n, d, layout)
                    table = dense_table(n, causal=causal, block_q=128, block_kv=128, device=DEV)
                    bias = torch.randn(1, 8, n, device=DEV) * 0.5
                    hs = torch.rand(8, device=DEV) + 0.5
                    assert gluon_eligible(q, k, v, table), "not eligible"
                    res = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, key_bias=bias, entropy=True,
                                              distance=True, head_scale=hs)
                    allowed = table.allowed_rows(0, n, 8)
                    out, st = materialised_attention(q, k, v, allowed, scaling=d**-0.5, key_bias=bias, head_scale=hs,
                                                     dtype=torch.float32)
                    plain = flash_forward_gluon(q, k, v, table, scaling=d**-0.5)
                    out0, st0 = materialised_attention(q, k, v, allowed, scaling=d**-0.5, dtype=torch.float32)
                    record("check", n=n, d=d, group=group, causal=causal, layout=layout,
                           out=rel(res.output, out), lse=rel(res.lse, st["lse"]),
                           entropy=rel(res.entropy, st["entropy"]), distance=rel(res.distance, st["distance"]),
                           plain_out=rel(plain.output, out0),
                           plain_lse=rel(plain.lse, st0["lse"]))


def check_configs(configs: list[str]) -> None:
    """Each tile config (64-row programs, 64-key steps inside 128-key table blocks) vs the reference."""
    n, d = 4097, 128
    q, k, v = qkv(1, 8, 2, n, d)
    for cfg in configs:
        os.environ["HEADSCOPE_GLUON_CONFIG"] = cfg
        for causal in (False, True):
            table = dense_table(n, causal=causal, block_q=128, block_kv=128, device=DEV)
            res = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, entropy=True, distance=True)
            out, st = materialised_attention(q, k, v, table.allowed_rows(0, n, 8), scaling=d**-0.5,
                                             dtype=torch.float32)
            record("check", config=cfg, causal=causal, out=rel(res.output, out), lse=rel(res.lse, st["lse"]),
                   entropy=rel(res.entropy, st["entropy"]), distance=rel(res.distance, st["distance"]))
        os.environ.pop("HEADSCOPE_GLUON_CONFIG")


def check_tables() -> None:
    n, d = 4097, 128
    q, k, v = qkv(1, 8, 2, n, d)
    for name, table in (("window_1000", sliding_window_table(n, 1000, device=DEV)),
                        ("random_0.3", random_block_table(0.3, n, 8, device=DEV))):
        g = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, entropy=True, distance=True)
        os.environ["HEADSCOPE_GLUON"] = "0"
        t = launch.flash_forward(q, k, v, table, scaling=d**-0.5, entropy=True, distance=True)
        os.environ.pop("HEADSCOPE_GLUON")
        record("check", table=name, out_vs_triton=rel(g.output, t.output), lse_vs_triton=rel(g.lse, t.lse),
               entropy_vs_triton=rel(g.entropy, t.entropy), distance_vs_triton=rel(g.distance, t.distance))


def bench(fn) -> float:
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def time_dense(configs: list[str]) -> None:
    shapes = [(4, 16, 4096, 128), (1, 16, 16384, 128), (1, 16, 32768, 128), (1, 32, 16384, 64)]
    for b, h, n, d in shapes:
        q, k, v = qkv(b, h, h, n, d)
        for causal in (False, True):
            flops = 4 * b * h * n * n * d * (0.5 if causal else 1.0)
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                cudnn = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
            table = dense_table(n, causal=causal, block_q=128, block_kv=128, device=DEV)
            os.environ["HEADSCOPE_GLUON"] = "0"
            tri = bench(lambda: launch.flash_forward(q, k, v, table, scaling=d**-0.5))
            os.environ.pop("HEADSCOPE_GLUON")
            row = dict(b=b, h=h, n=n, d=d, causal=causal, cudnn_ms=cudnn, cudnn_tflops=flops / cudnn / 1e9,
                       triton_ms=tri, triton_over_cudnn=cudnn / tri)
            for cfg in configs:
                os.environ["HEADSCOPE_GLUON_CONFIG"] = cfg
                tab = table
                try:
                    ms = bench(lambda: flash_forward_gluon(q, k, v, tab, scaling=d**-0.5))
                    stats = bench(lambda: flash_forward_gluon(q, k, v, tab, scaling=d**-0.5, entropy=True,
                                                              distance=True))
                    bias = torch.randn(1, h, n, device=DEV)
                    hs = torch.rand(h, device=DEV)
                    edit = bench(lambda: flash_forward_gluon(q, k, v, tab, scaling=d**-0.5, key_bias=bias,
                                                             head_scale=hs))
                    row.update({f"g{cfg}_ms": ms, f"g{cfg}_over_cudnn": cudnn / ms, f"g{cfg}_tflops": flops / ms / 1e9,
                                f"g{cfg}_entdist_over": stats / ms, f"g{cfg}_bias_hs_over": edit / ms})
                except Exception as exc:  # report and go on with the next config
                    row[f"g{cfg}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                os.environ.pop("HEADSCOPE_GLUON_CONFIG")
            record("dense", **row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--configs", default="128,2;64,3;64,4")
    parser.add_argument("--sections", default="check,tables,dense")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    sections = args.sections.split(",")
    if "check" in sections:
        check_dense()
    if "tables" in sections:
        check_tables()
        check_configs(args.configs.split(";"))
    if "dense" in sections:
        time_dense(args.configs.split(";"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gluon.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))


if __name__ == "__main__":
    main()
