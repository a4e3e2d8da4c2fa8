"""Where the time of one call goes: its GPU kernels, their durations and the idle gaps between them.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --section profile-k2 --section profile-act --out $OUT

For the calls whose overhead over the plain K1 is not explained by their kernels' arithmetic
(ACT's pass, the K2's block statistics, the whole statistics package at 4k), it records a few
warm calls with ``torch.profiler`` (CUPTI) and prints, per call, every GPU kernel with its time
and the gap before it, plus the call's wall time from CUDA events. A diagnostic: nothing is
asserted and no ratio here is a benchmark figure. One section per part: ``profile-k2`` (the K1, K2
and all-statistics calls at 4k), ``profile-act`` (ACT's pass and its tiles), ``profile-host`` (cProfile
of the host side), ``profile-edits`` and ``profile-timing`` (the edit ratios under four timing
methods), ``profile-allstats`` (the all-statistics call against SDPA, every method and paired).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time

import torch
import triton
from torch.profiler import ProfilerActivity, profile

from benchmarks.kernels.common import BF16, DEV, note, paired
from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention
from probe.kernels.blocks import dense_table
from probe.kernels.launch import ActScale, column_stats, flash_forward


def event_ms(fn, reps: int = 20) -> float:
    """Median wall time of ``fn`` between CUDA events, after two warm calls."""
    fn(), fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def host_ms(fn, reps: int = 20) -> float:
    """Median time the host spends enqueueing one call (the GPU idle before it): if it exceeds
    the call's GPU time, back-to-back calls are bound by the host."""
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    torch.cuda.synchronize()
    return sorted(times)[len(times) // 2]


def kernel_timeline(name: str, fn) -> None:
    """Print the GPU kernels of one warm call of ``fn`` with durations and gaps (microseconds)."""
    fn(), fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = sorted((e for e in prof.events() if e.device_type.name == "CUDA"), key=lambda e: e.time_range.start)
    note(f"== {name}: wall {event_ms(fn):.3f} ms (CUDA events, median of 20), host {host_ms(fn):.3f} ms")
    prev_end = None
    busy = 0.0
    for e in kernels:
        start, end = e.time_range.start, e.time_range.end
        gap = 0.0 if prev_end is None else start - prev_end
        busy += end - start
        note(f"   {end - start:9.1f} us  gap {gap:7.1f} us  {e.name[:110]}")
        prev_end = end
    if kernels:
        span = kernels[-1].time_range.end - kernels[0].time_range.start
        note(f"   kernels {len(kernels)}, busy {busy:.1f} us, first-to-last {span:.1f} us")


def kernel_us(fn, name: str) -> float:
    """GPU time of the kernels of one warm call of ``fn`` whose name contains ``name``."""
    fn(), fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.time_range.end - e.time_range.start for e in prof.events()
               if e.device_type.name == "CUDA" and name in e.name)


def host_profile(name: str, fn, calls: int = 20) -> None:
    """cProfile of ``calls`` warm calls (each followed by a synchronize): where the host's time goes."""
    fn(), fn(), fn()
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
        torch.cuda.synchronize()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
    note(f"== host profile of {calls} calls: {name}")
    note("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))


def host_calls() -> None:
    b, h, n, d = 4, 16, 4096, 128
    q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
    t = dense_table(n, causal=True, device=DEV)
    lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
    host_profile("K1 4k causal", lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
    host_profile("K2 + blocks 4k causal", lambda: column_stats(q, k, lse, t, scaling=d**-0.5, block_stats=True))
    mask = LazyMask(b, n, n, device=DEV, causal=True)
    want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
    host_profile("all statistics (backend) 4k causal", lambda: triton_attention(q, k, v, mask, want=want))


def loop_ms(fn, calls: int = 30) -> float:
    """Per-call time of ``calls`` back-to-back calls between two CUDA events (no cache flush)."""
    fn(), fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def busy_us(fn) -> float:
    """GPU time of all kernels and copies of one warm call."""
    fn(), fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.time_range.end - e.time_range.start for e in prof.events() if e.device_type.name == "CUDA")


def edit_calls() -> None:
    """The edits section's calls four ways: GPU busy time, host time, back-to-back, do_bench."""
    b, h, n, d = 1, 16, 16384, 128
    q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
    bias = torch.randn(b, h, n, device=DEV)
    hs = torch.rand(h, device=DEV)
    sel = torch.zeros(b, h, n, dtype=torch.bool, device=DEV)
    sel[..., [0, 1, 2, 3, 700]] = True
    act = ActScale(sel, torch.full((h,), 0.5, device=DEV))
    for causal in (True, False):
        t = dense_table(n, causal=causal, device=DEV)
        calls = {"base": lambda: flash_forward(q, k, v, t, scaling=d**-0.5),
                 "bias+hs": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, key_bias=bias, head_scale=hs),
                 "act": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, act=act)}
        for rnd in range(2):
            for name, fn in calls.items():
                note(f"causal={causal} round {rnd} {name:8s} busy {busy_us(fn) / 1e3:.3f} ms, host {host_ms(fn):.3f} ms, "
                      f"back-to-back {loop_ms(fn):.3f} ms, do_bench {triton.testing.do_bench(fn, rep=40, return_mode='median'):.3f} ms")
        kernel_timeline(f"bias+hs causal={causal}", calls["bias+hs"])


def flushed_ms(fn, calls: int = 20, sync_each: bool = False) -> float:
    """Median per-call time between CUDA events with do_bench's 256 MB cache clear before each call."""
    cache = torch.empty(256 * 2**20, dtype=torch.int8, device=DEV)
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(calls):
        if sync_each:
            torch.cuda.synchronize()
        cache.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        times.append((start, end))
    torch.cuda.synchronize()
    return sorted(s.elapsed_time(e) for s, e in times)[calls // 2]


def timing_methods() -> None:
    """The edits' ratio under each timing method, interleaved: which one makes do_bench differ?"""
    b, h, n, d = 1, 16, 16384, 128
    q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
    bias = torch.randn(b, h, n, device=DEV)
    hs = torch.rand(h, device=DEV)
    for causal in (True, False):
        t = dense_table(n, causal=causal, device=DEV)
        calls = {"base": lambda: flash_forward(q, k, v, t, scaling=d**-0.5),
                 "bias+hs": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, key_bias=bias, head_scale=hs)}
        methods = {"do_bench": lambda f: triton.testing.do_bench(f, rep=40, return_mode="median"),
                   "flushed": flushed_ms, "flushed+sync": lambda f: flushed_ms(f, sync_each=True),
                   "back-to-back": loop_ms}
        for rnd in range(3):
            row = {m: {c: fn_m(f) for c, f in calls.items()} for m, fn_m in methods.items()}
            note(f"causal={causal} round {rnd}: " + "; ".join(
                f"{m} {r['base']:.3f} / {r['bias+hs']:.3f} ms = {r['bias+hs'] / r['base']:.3f}" for m, r in row.items()))


def all_stats_methods() -> None:
    """The all-statistics call against SDPA under each timing method (do_bench, flushed, back to
    back, paired), with the GPU busy time of its kernels: why did the paired ratio come out above
    the interleaved do_bench one?"""
    for n, causal in ((16384, False), (16384, True), (32768, False), (32768, True)):
        b, h, d = 1, 16, 128
        q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
        t = dense_table(n, causal=causal, device=DEV)
        lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
        mask = LazyMask(b, n, n, device=DEV, causal=causal)
        want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
        calls = {"sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal),
                 "k1s": lambda: flash_forward(q, k, v, t, scaling=d**-0.5, entropy=True, distance=True),
                 "k2b": lambda: column_stats(q, k, lse, t, scaling=d**-0.5, block_stats=True),
                 "all": lambda: triton_attention(q, k, v, mask, want=want)}
        methods = {"busy": lambda f: busy_us(f) / 1e3,
                   "do_bench": lambda f: triton.testing.do_bench(f, rep=40, return_mode="median"),
                   "flushed": flushed_ms, "back-to-back": loop_ms}
        for rnd in range(2):
            row = {m: {c: fn_m(f) for c, f in calls.items()} for m, fn_m in methods.items()}
            note(f"{n // 1024}k causal={causal} round {rnd}: " + "; ".join(
                f"{m} " + " ".join(f"{c} {x:.3f}" for c, x in r.items()) + f" all/sdpa {r['all'] / r['sdpa']:.3f}"
                for m, r in row.items())
                + f"; paired all/sdpa {paired(calls['sdpa'], calls['all']):.3f}"
                + f", k1s/sdpa {paired(calls['sdpa'], calls['k1s']):.3f}, k2b/sdpa {paired(calls['sdpa'], calls['k2b']):.3f}",
                flush=True)
        if n == 16384 and not causal:
            kernel_timeline("all statistics (backend) 16k causal=False", calls["all"])
        del q, k, v


def act_calls() -> None:
    b, h, n, d = 1, 16, 16384, 128
    q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
    sel = torch.zeros(b, h, n, dtype=torch.bool, device=DEV)
    sel[..., [0, 1, 2, 3, 700]] = True
    act = ActScale(sel, torch.full((h,), 0.5, device=DEV))
    for causal in (True, False):
        t = dense_table(n, causal=causal, device=DEV)
        kernel_timeline(f"K1 16k causal={causal}", lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
        kernel_timeline(f"K1 + ACT 16k causal={causal}", lambda: flash_forward(q, k, v, t, scaling=d**-0.5, act=act))
        for tile in ("64,8", "32,4", "128,8", "64,4", "32,8"):
            os.environ["HEADSCOPE_ACT_TILE"] = tile
            us = kernel_us(lambda: flash_forward(q, k, v, t, scaling=d**-0.5, act=act), "_act_pass_kernel")
            note(f"   ACT pass, tile {tile} (rows, warps): {us:.1f} us")
        os.environ.pop("HEADSCOPE_ACT_TILE")


def k2_calls() -> None:
    b, h, n, d = 4, 16, 4096, 128
    q, k, v = (torch.randn(b, h, n, d, device=DEV, dtype=BF16) for _ in range(3))
    for causal in (False, True):
        t = dense_table(n, causal=causal, device=DEV)
        tb = dense_table(n, causal=causal, block_q=128, block_kv=128, device=DEV)
        lse = flash_forward(q, k, v, t, scaling=d**-0.5).lse
        kernel_timeline(f"K1 4k b4 causal={causal}", lambda: flash_forward(q, k, v, t, scaling=d**-0.5))
        kernel_timeline(f"K2 4k b4 causal={causal}", lambda: column_stats(q, k, lse, tb, scaling=d**-0.5))
        kernel_timeline(f"K2 + blocks 4k b4 causal={causal}",
                        lambda: column_stats(q, k, lse, tb, scaling=d**-0.5, block_stats=True))
        mask = LazyMask(b, n, n, device=DEV, causal=causal)
        want = StatRequest(received=True, entropy=True, distance=True, block_size=128)
        kernel_timeline(f"all statistics (backend) 4k b4 causal={causal}",
                        lambda: triton_attention(q, k, v, mask, want=want))


def _with_versions(part):
    """``part`` as a section: the device and torch version first, as the script printed them."""
    def section() -> None:
        note(f"{torch.cuda.get_device_name()} {torch.__version__}")
        part()
    return section


section_profile_k2 = _with_versions(k2_calls)
section_profile_act = _with_versions(act_calls)
section_profile_host = _with_versions(host_calls)
section_profile_edits = _with_versions(edit_calls)
section_profile_timing = _with_versions(timing_methods)
section_profile_allstats = _with_versions(all_stats_methods)
