"""One command for the lent GPU: correctness sweep, then every figure of issue 4's acceptance.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --out $OUT

Sections (all in one run, so ratios share the machine state): env, tune (K1 tiles and load
path per head dim and causal; K2 warps/stages and query step; the best are used for the rest of
the run), check (outputs and every statistic vs a float32 materialised reference), dense (K1 vs
SDPA), stats (K1+K2 vs SDPA), sparse (32k block-sparse vs dense K1), edits, e2e
(Llama-3-8B-shaped; not in the default list). Times are medians of ``triton.testing.do_bench``;
nothing here asserts a timing. Results go to ``<out>/results.jsonl``, ``<out>/log.txt`` and the
report ``<out>/kernels.md``, which is also written to ``notes/kernels.md`` of the checkout the
script runs in (copy it back from ``<out>`` when the run was on a lent machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probe.attention.mask import LazyMask  # noqa: E402
from probe.attention.spec import StatRequest  # noqa: E402
from probe.kernels import backend, launch  # noqa: E402
from probe.kernels.backend import triton_attention  # noqa: E402
from probe.kernels.blocks import dense_table, random_block_table, sliding_window_table  # noqa: E402
from probe.kernels.gluon_k2_launch import gluon_k2_operands  # noqa: E402
from probe.kernels.launch import ActScale, column_stats, flash_forward  # noqa: E402
from probe.kernels.materialised import causal_allowed, materialised_attention  # noqa: E402

DEV = "cuda"
BF16 = torch.bfloat16
RESULTS: list[dict] = []
LINES: list[str] = []


def record(section: str, **fields) -> None:
    RESULTS.append({"section": section, **fields})
    text = f"[{section}] " + " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
    print(text, flush=True)
    LINES.append(text)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v


def bench(fn, rep: int = 100) -> float:
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def interleaved(fns: dict, rounds: int = 5, rep: int = 40) -> dict[str, list[float]]:
    """Times of every function in ``rounds`` interleaved rounds (a, b, c, a, b, c, ...).

    The lent GPU's speed drifts by up to ~10 % between runs and within one (clocks, heat), so a
    ratio is taken per round, between neighbours in time, and its median reported (:func:`ratio`).
    """
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(triton.testing.do_bench(fn, warmup=10, rep=rep, return_mode="median"))
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``time[num] / time[den]``."""
    per_round = sorted(a / b for a, b in zip(times[num], times[den]))
    return per_round[len(per_round) // 2]


def paired(base, other, pairs: int = 40) -> float:
    """Median over ``pairs`` of ``time(other) / time(base)``, the two called alternately, back to
    back, each between its own CUDA events (no cache flush, no synchronisation in between).

    For ratios near 1 (edits): neighbours in time share the GPU's clocks, which drift by up to
    ~10 % over a few seconds, more than the effect measured. Valid while the host enqueues a
    call faster than the GPU runs it (true at 16k; at 4k the calls are host-bound).
    """
    base(), other()
    torch.cuda.synchronize()
    events = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in range(pairs)]
    for ev in events:
        ev[0].record()
        base()
        ev[1].record()
        ev[2].record()
        other()
        ev[3].record()
    torch.cuda.synchronize()
    return median([ev[2].elapsed_time(ev[3]) / ev[0].elapsed_time(ev[1]) for ev in events])


def paired_both_orders(base, other, pairs: int = 40) -> float:
    """:func:`paired` taken both ways round (``other`` second, then first), the geometric mean of
    the two: whatever the call before does to the call after (clocks, caches) cancels."""
    forward, backward = paired(base, other, pairs), paired(other, base, pairs)
    return (forward / backward) ** 0.5


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def rand(*shape, dtype=BF16):
    return torch.randn(*shape, device=DEV, dtype=dtype)


def rel(a, b) -> float:
    """Relative error ``|a - b| / |b|`` over the reference's finite entries (e.g. the log-sum-exp of
    queries that see nothing is -inf in both); inf if ``a`` is not finite where ``b`` is, so a NaN
    result can never read as a small error."""
    a, b = a.double(), b.double()
    keep = torch.isfinite(b)
    if not torch.isfinite(a[keep]).all():
        return float("inf")
    return float((a[keep] - b[keep]).norm() / b[keep].norm().clamp_min(1e-30))


def backend_errors(q, k, v, causal: bool, want, names) -> str:
    """``output=… name=…`` relative errors of the backend call against the float32 materialised
    reference (128-blocks), for the benchmarks' accuracy lines."""
    n = q.shape[2]
    allowed = (causal_allowed(n, n) if causal else torch.ones(1, 1, n, n, dtype=torch.bool)).to(q.device)
    out, ref = materialised_attention(q, k, v, allowed, block_size=128, dtype=torch.float32)
    got = triton_attention(q, k, v, LazyMask(q.shape[0], n, n, device=q.device, causal=causal), want=want)
    return f"output={rel(got.output, out):.1e} " + " ".join(f"{s}={rel(got.stats[s], ref[s]):.1e}" for s in names)


def flops(b, h, n, d, causal) -> float:
    return 4 * b * h * n * n * d / (2 if causal else 1)


# ----------------------------------------------------------------------------------------- env
def section_env():
    props = torch.cuda.get_device_properties(0)
    a = rand(8192, 8192)
    mm = bench(lambda: a @ a)
    x = torch.empty(2**30, device=DEV, dtype=torch.uint8)
    cp = bench(lambda: x.clone())
    record("env", device=props.name, sms=props.multi_processor_count, torch=torch.__version__,
           triton=triton.__version__, cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
           date=datetime.date.today().isoformat(), matmul_tflops=2 * 8192**3 / mm / 1e9,
           copy_tbs=2 * 2**30 / cp / 1e9)
    del a, x


# --------------------------------------------------------------------------------------- check
BLOCKS_128 = (64, 128)  # head dims whose check uses 128-blocks (the Gluon K2 on Hopper)


def section_check():
    worst = {}
    for n in (1000, 4097):
        for d in (64, 80, 128):
            for ratio in (1, 3, 4, 8):
                for causal in (True, False):
                    kvh = 2 if ratio == 1 else 1
                    h = kvh * ratio
                    q, k, v = rand(1, h, n, d), rand(1, kvh, n, d), rand(1, kvh, n, d)
                    mask = LazyMask(1, n, n, device=DEV, causal=causal)
                    block = 128 if d in BLOCKS_128 else 64  # the Gluon K2's head dims on Hopper; else the Triton K2
                    want = StatRequest(received=True, entropy=True, distance=True, block_size=block)
                    got = triton_attention(q, k, v, mask, want=want)
                    allowed = (causal_allowed(n, n) if causal else torch.ones(1, 1, n, n, dtype=torch.bool)).to(DEV)
                    out, ref = materialised_attention(q, k, v, allowed, block_size=block, dtype=torch.float32)
                    errs = {"output": rel(got.output, out)}
                    for name in ("lse", "entropy", "distance", "received_sum", "received_max", "received_mean",
                                 "block_sum", "block_max"):
                        errs[name] = rel(got.stats[name], ref[name])
                    errs["visible_count"] = rel(got.stats["visible_count"], ref["count"][:, 0])
                    for key, e in errs.items():
                        worst[key] = max(worst.get(key, 0.0), e)
                    bad = [k_ for k_, e in errs.items() if not (e < (1e-2 if k_ == "output" else 1e-3))]
                    if bad:
                        record("check-fail", n=n, d=d, ratio=ratio, causal=causal,
                               **{k_: errs[k_] for k_ in bad})
                    del q, k, v, got, out, ref, allowed
                    torch.cuda.empty_cache()
    record("check", cases=48, blocks_128_at="/".join(map(str, BLOCKS_128)), **{f"worst_{k}": v for k, v in worst.items()})
    # Edits: key bias + head scale + ACT against the materialised reference.
    n, d, h, kvh = 1000, 128, 8, 2
    q, k, v = rand(1, h, n, d), rand(1, kvh, n, d), rand(1, kvh, n, d)
    bias = torch.randn(1, h, n, device=DEV)
    hs = torch.rand(h, device=DEV) + 0.5
    sel = torch.zeros(1, h, n, dtype=torch.bool, device=DEV)
    sel[..., :3] = True
    fac = torch.rand(h, device=DEV)
    table = dense_table(n, device=DEV)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, head_scale=hs, act=ActScale(sel, fac))
    out, _ = materialised_attention(q, k, v, causal_allowed(n, n).to(DEV), key_bias=bias, head_scale=hs,
                                    scale_keys=sel, scale_factor=fac, dtype=torch.float32)
    record("check-edits", output_rel_err=rel(r.output, out))
    # Block-sparse against the expanded dense reference.
    t = random_block_table(0.3, 4097, h, device=DEV)
    q2, k2, v2 = rand(1, h, 4097, d), rand(1, kvh, 4097, d), rand(1, kvh, 4097, d)
    r = flash_forward(q2, k2, v2, t, scaling=d**-0.5, entropy=True)
    out, ref = materialised_attention(q2, k2, v2, t.allowed_rows(0, 4097, h), dtype=torch.float32)
    record("check-sparse", output_rel_err=rel(r.output, out), lse_rel_err=rel(r.lse, ref["lse"]),
           entropy_rel_err=rel(r.entropy, ref["entropy"]))


# ---------------------------------------------------------------------------------------- tune
K1_CANDIDATES = {128: ("128,8,3", "128,8,2", "64,8,3", "64,4,3"), 64: ("64,4,3", "64,8,3", "128,8,3", "128,8,2")}
K2_CANDIDATES = (((64, 128), "0,8,2"), ((64, 128), "0,4,2"), ((64, 128), "0,4,3"), ((128, 128), "0,8,2"),
                 ((128, 128), "0,8,3"), ((64, 128), "0,8,3"))


def _try_bench(fn, rep=60):
    try:
        return bench(fn, rep)
    except Exception as e:  # a config may not fit in shared memory or registers
        return type(e).__name__


GLUON_CANDIDATES = ("128,2", "128,3")


def section_tune_gluon():
    """Pick the Gluon K1's (block_n, stages) at hd128 by the sum of 16k causal + non-causal."""
    d, h, n = 128, 16, 16384
    q, k, v = rand(1, h, n, d), rand(1, h, n, d), rand(1, h, n, d)
    best = None
    for cfg in GLUON_CANDIDATES:
        os.environ["HEADSCOPE_GLUON_CONFIG"] = cfg
        total = 0.0
        for causal in (False, True):
            t = dense_table(n, causal=causal, device=DEV)
            ms = _try_bench(lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
            record("tune-gluon", config=cfg, causal=causal, ms=ms,
                   tflops=flops(1, h, n, d, causal) / ms / 1e9 if not isinstance(ms, str) else ms)
            total = total + ms if not isinstance(ms, str) and not isinstance(total, str) else "err"
        if not isinstance(total, str) and (best is None or total < best[1]):
            best = (cfg, total)
    os.environ["HEADSCOPE_GLUON_CONFIG"] = best[0]
    record("tune-gluon-chosen", config=best[0])


def section_tune():
    """Pick the Triton K1's tiles per (head dim, causal) and K2's query step / warps / stages, at 16k."""
    os.environ["HEADSCOPE_GLUON"] = "0"  # tune the Triton K1 itself
    try:
        _tune_triton()
    finally:
        os.environ.pop("HEADSCOPE_GLUON")
    section_tune_gluon()


def _tune_triton():
    for d, h in ((128, 16), (64, 32)):
        q, k, v = rand(1, h, 16384, d), rand(1, h, 16384, d), rand(1, h, 16384, d)
        for causal in (False, True):
            t = dense_table(16384, causal=causal, device=DEV)
            best = None
            for tma in ("1", "0", "ws"):
                os.environ["HEADSCOPE_TMA"] = "0" if tma == "0" else "1"
                os.environ["HEADSCOPE_K1_WS"] = "1" if tma == "ws" else "0"
                for cfg in K1_CANDIDATES[d] if tma == "1" else K1_CANDIDATES[d][:2]:
                    os.environ["HEADSCOPE_K1_CONFIG"] = cfg
                    ms = _try_bench(lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
                    if isinstance(ms, str):
                        record("tune-k1", d=d, causal=causal, tma=tma, config=cfg, error=ms)
                        continue
                    record("tune-k1", d=d, causal=causal, tma=tma, config=cfg, ms=ms,
                           tflops=flops(1, h, 16384, d, causal) / ms / 1e9)
                    if tma == "1" and (best is None or ms < best[1]):
                        best = (cfg, ms)
            os.environ.pop("HEADSCOPE_TMA")
            os.environ.pop("HEADSCOPE_K1_CONFIG")
            os.environ.pop("HEADSCOPE_K1_WS")
            if best is not None:
                launch.K1_CONFIGS[(launch.dim_class(d), causal)] = launch.KernelConfig(*(int(x) for x in best[0].split(",")))
                record("tune-k1-chosen", d=d, causal=causal, config=best[0])
        if d == 128:
            lse = flash_forward(q, k, v, dense_table(16384, causal=True, device=DEV), scaling=d**-0.5).lse
            best = None
            for block, cfg in K2_CANDIDATES:
                os.environ["HEADSCOPE_K2_CONFIG"] = cfg
                total = 0.0
                for causal in (False, True):
                    t = dense_table(16384, causal=causal, block_q=block[0], block_kv=block[1], device=DEV)
                    ms = _try_bench(lambda: column_stats(q, k, lse, t, scaling=d**-0.5))
                    record("tune-k2", block=f"{block[0]}x{block[1]}", config=cfg, causal=causal, ms=ms)
                    total = total + ms if not isinstance(ms, str) and not isinstance(total, str) else "err"
                if not isinstance(total, str) and (best is None or total < best[2]):
                    best = (block, cfg, total)
            os.environ["HEADSCOPE_K2_CONFIG"] = best[1]
            backend.K2_BLOCK = best[0]
            record("tune-k2-chosen", block=f"{best[0][0]}x{best[0][1]}", config=best[1])
        del q, k, v
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------- dense
def sdpa(q, k, v, causal, backend=None):
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def section_dense_and_stats():
    for n, b in ((4096, 4), (16384, 1), (32768, 1)):
        h, d = 16, 128
        q, k, v = rand(b, h, n, d), rand(b, h, n, d), rand(b, h, n, d)
        for causal in (False, True):
            t = dense_table(n, causal=causal, device=DEV)
            f = flops(b, h, n, d, causal)
            lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
            # K2's tiles as the backend picks them (128-query tiles for the Gluon K2), and the Triton K2's own.
            t2 = dense_table(n, causal=causal, block_q=128 if gluon_k2_operands(q, k) else backend.K2_BLOCK[0],
                             block_kv=128, device=DEV)
            t2_triton = dense_table(n, causal=causal, block_q=backend.K2_BLOCK[0], block_kv=backend.K2_BLOCK[1],
                                    device=DEV)
            tb = dense_table(n, causal=causal, block_q=128, block_kv=128, device=DEV)
            mask = LazyMask(b, n, n, device=DEV, causal=causal)
            want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
            tm_fn = {
                "cudnn": lambda: sdpa(q, k, v, causal, SDPBackend.CUDNN_ATTENTION),
                "sdpa": lambda: sdpa(q, k, v, causal),
                "k1": lambda: flash_forward(q, k, v, t, scaling=d**-0.5),
                "triton": lambda: _triton_only(lambda: flash_forward(q, k, v, t, scaling=d**-0.5)),
                "gluon1": lambda: _single_partition(lambda: flash_forward(q, k, v, t, scaling=d**-0.5)),
                "k1s": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, entropy=True, distance=True),
                "k2": lambda: column_stats(q, k, lse, t2, scaling=d**-0.5),
                "k2b": lambda: column_stats(q, k, lse, tb, scaling=d**-0.5, block_stats=True),
                "k2_triton": lambda: _triton_k2(lambda: column_stats(q, k, lse, t2_triton, scaling=d**-0.5)),
                "k2b_triton": lambda: _triton_k2(lambda: column_stats(q, k, lse, tb, scaling=d**-0.5, block_stats=True)),
                "all": lambda: triton_attention(q, k, v, mask, want=want),
            }
            tm = interleaved(tm_fn)
            t_cudnn, t_sdpa, t_k1, t_triton = (median(tm[x]) for x in ("cudnn", "sdpa", "k1", "triton"))
            record("dense", n=n, b=b, causal=causal, cudnn_ms=t_cudnn, sdpa_ms=t_sdpa, k1_ms=t_k1,
                   k1_tflops=f / t_k1 / 1e9, cudnn_tflops=f / t_cudnn / 1e9,
                   k1_over_cudnn_throughput=1 / ratio(tm, "k1", "cudnn"), triton_k1_ms=t_triton,
                   triton_k1_over_cudnn_throughput=1 / ratio(tm, "triton", "cudnn"),
                   gluon_single_over_cudnn_throughput=1 / ratio(tm, "gluon1", "cudnn"))
            record("stats", n=n, causal=causal, k1_ent_dist_over_k1=ratio(tm, "k1s", "k1"),
                   k2_over_k1=ratio(tm, "k2", "k1"), k2_blocks_over_k1=ratio(tm, "k2b", "k1"),
                   triton_k2_over_k1=ratio(tm, "k2_triton", "k1"), triton_k2_blocks_over_k1=ratio(tm, "k2b_triton", "k1"),
                   all_stats_backend_ms=median(tm["all"]), all_stats_over_sdpa=ratio(tm, "all", "sdpa"),
                   k1s_plus_k2b_over_sdpa=median([(a + c) / s_ for a, c, s_ in zip(tm["k1s"], tm["k2b"], tm["sdpa"])]))
            # The same ratios in pairs, both orders (see paired_both_orders): per-round do_bench
            # ratios of one session spread by ~0.1-0.2 at 16k-32k, the paired ones by ~0.01.
            record("paired", n=n, causal=causal,
                   k1_over_cudnn_throughput=1 / paired_both_orders(tm_fn["cudnn"], tm_fn["k1"]),
                   all_stats_over_sdpa=paired_both_orders(tm_fn["sdpa"], tm_fn["all"]),
                   k1s_over_sdpa=paired_both_orders(tm_fn["sdpa"], tm_fn["k1s"]),
                   k2b_over_sdpa=paired_both_orders(tm_fn["sdpa"], tm_fn["k2b"]),
                   k1s_over_k1=paired_both_orders(tm_fn["k1"], tm_fn["k1s"]),
                   k2_over_k1=paired_both_orders(tm_fn["k1"], tm_fn["k2"]),
                   k2b_over_k1=paired_both_orders(tm_fn["k1"], tm_fn["k2b"]))
        del q, k, v
        torch.cuda.empty_cache()


def with_env(var: str, value: str, fn):
    """``fn()`` with the environment variable ``var`` set to ``value`` for the call only."""
    os.environ[var] = value
    try:
        return fn()
    finally:
        os.environ.pop(var)


def timed(var: str, value: str, fn) -> str:
    """Median time of ``fn`` (ms, 3 decimals) with ``var=value`` set around it, or the error's
    name: a config that does not fit (shared memory, registers) is a result of a sweep."""
    try:
        return f"{with_env(var, value, lambda: bench(fn)):.3f}"
    except Exception as err:  # noqa: BLE001
        return f"error:{type(err).__name__}"


def _single_partition(fn):
    """Run ``fn`` with the single-partition Gluon K1 (the warp-specialised one turned off)."""
    return with_env("HEADSCOPE_GLUON_WS", "0", fn)


def _triton_k2(fn):
    """Run ``fn`` with the Gluon K2 turned off (to time the Triton K2 it replaced)."""
    return with_env("HEADSCOPE_GLUON_K2", "0", fn)


def _triton_only(fn):
    """Run ``fn`` with the Gluon K1 turned off (to time the Triton K1 it replaced)."""
    return with_env("HEADSCOPE_GLUON", "0", fn)


# -------------------------------------------------------------------------------------- sparse
def section_sparse():
    b, h, n, d = 1, 16, 32768, 128
    q, k, v = rand(b, h, n, d), rand(b, h, n, d), rand(b, h, n, d)
    dense = dense_table(n, causal=True, device=DEV)
    t_dense = bench(lambda: flash_forward(q, k, v, dense, scaling=d**-0.5))
    t_cudnn = bench(lambda: sdpa(q, k, v, True, SDPBackend.CUDNN_ATTENTION))
    tables = {f"random_{p}": random_block_table(p, n, h, device=DEV) for p in (0.5, 0.2, 0.1)}
    tables["window_2048"] = sliding_window_table(n, 2048, device=DEV)
    for name, t in tables.items():
        sparse_k1 = lambda: flash_forward(q, k, v, t, scaling=d**-0.5)  # noqa: E731
        ms = bench(sparse_k1)
        kept = t.visited_fraction(dense)
        ideal = 1 / kept
        speedup_paired = paired_both_orders(sparse_k1, lambda: flash_forward(q, k, v, dense, scaling=d**-0.5))
        record("sparse", pattern=name, kept_of_causal=kept, ms=ms, dense_k1_ms=t_dense, speedup=t_dense / ms,
               ideal=ideal, pct_of_ideal=100 * (t_dense / ms) / ideal, vs_cudnn_causal=t_cudnn / ms,
               speedup_paired=speedup_paired, pct_of_ideal_paired=100 * speedup_paired / ideal)


# --------------------------------------------------------------------------------------- edits
def section_edits():
    b, h, n, d = 1, 16, 16384, 128
    q, k, v = rand(b, h, n, d), rand(b, h, n, d), rand(b, h, n, d)
    for causal in (True, False):
        t = dense_table(n, causal=causal, device=DEV)
        bias = torch.randn(b, h, n, device=DEV)
        hs = torch.rand(h, device=DEV)
        sel = torch.zeros(b, h, n, dtype=torch.bool, device=DEV)
        sel[..., [0, 1, 2, 3, 700]] = True
        act = ActScale(sel, torch.full((h,), 0.5, device=DEV))  # built once, reused (its key lists are cached)
        tm_fns = {
            "base": lambda: flash_forward(q, k, v, t, scaling=d**-0.5),
            "bias_hs": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, key_bias=bias, head_scale=hs),
            "act": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, act=act),
            "triton_base": lambda: _triton_only(lambda: flash_forward(q, k, v, t, scaling=d**-0.5)),
            "triton_act": lambda: _triton_only(lambda: flash_forward(q, k, v, t, scaling=d**-0.5, act=act)),
        }
        tm = interleaved(tm_fns)
        record("edits", n=n, causal=causal, base_ms=median(tm["base"]),
               bias_headscale_over_base=ratio(tm, "bias_hs", "base"), act_over_base=ratio(tm, "act", "base"),
               bias_headscale_over_base_paired=paired(tm_fns["base"], tm_fns["bias_hs"]),
               act_over_base_paired=paired(tm_fns["base"], tm_fns["act"]),
               triton_base_ms=median(tm["triton_base"]), triton_act_over_triton_base=ratio(tm, "triton_act", "triton_base"))


# ----------------------------------------------------------------------------------------- e2e
def section_e2e_layers(n: int, layers: int = 32):
    """Llama-3-8B attention shapes, every layer, statistics kept; random q/k/v (two sets reused)."""
    h, kvh, d = 32, 8, 128
    sets = [(rand(1, h, n, d), rand(1, kvh, n, d), rand(1, kvh, n, d)) for _ in range(2)]
    mask = LazyMask(1, n, n, device=DEV, causal=True)
    want = StatRequest(received=True, entropy=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated()
    kept = []
    start = time.perf_counter()
    for layer in range(layers):
        q, k, v = sets[layer % 2]
        r = triton_attention(q, k, v, mask, want=want)
        kept.append({key: r.stats[key] for key in ("entropy", "received_sum", "received_mean")})
    torch.cuda.synchronize()
    secs = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**30
    stats_gib = sum(t.numel() * 4 for s in kept for t in s.values()) / 2**30
    record("e2e-attention-layers", n=n, layers=layers, seconds=secs, peak_extra_gib=peak, stats_gib=stats_gib,
           eager_pattern_gib_per_layer=h * n * n * 4 / 2**30)


def section_e2e_model(n: int):
    """A random-weight Llama-3-8B-shaped LlamaModel (bf16) with our backend in every layer."""
    from transformers import AttentionInterface, LlamaConfig, LlamaModel
    from transformers.masking_utils import AttentionMaskInterface

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0)
    stats: dict[int, dict] = {}

    def attn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        mask = LazyMask(query.shape[0], query.shape[2], key.shape[2], device=query.device, causal=True)
        r = triton_attention(query, key, value, mask, scaling=scaling, want=StatRequest(received=True, entropy=True))
        stats[module.layer_idx] = {k: r.stats[k] for k in ("entropy", "received_mean")}
        return r.output, None

    AttentionInterface.register("hs_triton", attn)
    AttentionMaskInterface.register("hs_triton", lambda *a, **k: None)
    torch.set_default_dtype(BF16)
    with torch.device(DEV):
        model = LlamaModel(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 4 * n), device=DEV)
    weights_gib = torch.cuda.memory_allocated() / 2**30
    for impl in ("hs_triton", "eager"):
        model.config._attn_implementation = impl
        for length in ((n, 4 * n) if impl == "hs_triton" else (4096, 8192, n)):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            try:
                with torch.no_grad():
                    model(ids[:, :length], output_attentions=impl == "eager")
                torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.no_grad():
                    model(ids[:, :length], output_attentions=impl == "eager")
                torch.cuda.synchronize()
                secs = time.perf_counter() - start
                record("e2e-model", impl=impl, n=length, seconds=secs, weights_gib=weights_gib,
                       peak_gib=torch.cuda.max_memory_allocated() / 2**30, layers_with_stats=len(stats))
            except torch.OutOfMemoryError:
                record("e2e-model", impl=impl, n=length, result="OOM",
                       peak_gib=torch.cuda.max_memory_allocated() / 2**30)
            torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()


SECTIONS = {
    "env": section_env,
    "check": section_check,
    "tune": section_tune,
    "dense": section_dense_and_stats,
    "sparse": section_sparse,
    "edits": section_edits,
    "e2e": lambda: (section_e2e_model(32768), section_e2e_layers(32768), section_e2e_layers(131072)),
}
DEFAULT_SECTIONS = "env,tune,check,dense,sparse,edits"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--sections", default=DEFAULT_SECTIONS)
    parser.add_argument("--notes", default=str(Path(__file__).resolve().parents[2] / "notes" / "kernels.md"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.sections.split(","):
        start = time.perf_counter()
        try:
            SECTIONS[name]()
        except Exception:
            record("error", part=name, trace=traceback.format_exc()[-1500:])
        record("time", part=name, seconds=time.perf_counter() - start)
        (out / "results.jsonl").write_text("\n".join(json.dumps(r) for r in RESULTS) + "\n")
        (out / "log.txt").write_text("\n".join(LINES) + "\n")
    from report import render  # benchmarks/kernels/report.py

    out_dir = os.environ.get("OUT")
    argv = ["$OUT" if out_dir and a == out_dir else a for a in sys.argv[1:]]  # no machine paths in notes
    text = render(RESULTS, command=" ".join(["python3", "benchmarks/kernels/bench_kernels.py", *argv]))
    (out / "kernels.md").write_text(text)
    Path(args.notes).write_text(text)


if __name__ == "__main__":
    main()
