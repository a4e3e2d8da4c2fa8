"""What every kernel benchmark section shares: the run's records, the timers, the error measure.

A section reports through :func:`record` (one named record per measurement, kept in
:data:`RESULTS` for ``results.jsonl`` and the notes' renderer) or :func:`note` (a free-form line,
for the experiments whose output is read, not rendered); both print at once and go to the run's
``log.txt``. Times are medians of ``triton.testing.do_bench``; ratios near 1 are taken in pairs
(:func:`paired`), since the lent GPU's clocks drift by up to ~10 % within a run.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import sdpa_kernel

from probe.attention.mask import LazyMask
from probe.kernels.backend import triton_attention
from probe.kernels.materialised import causal_allowed, materialised_attention

DEV = "cuda"
BF16 = torch.bfloat16
RESULTS: list[dict] = []
LINES: list[str] = []


def record(section: str, **fields) -> None:
    """One measurement: printed, logged and kept for the report."""
    RESULTS.append({"section": section, **fields})
    note(f"[{section}] " + " ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))


def note(text: str) -> None:
    """One line of an experiment's output: printed at once and kept for the run's log."""
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


def sdpa(q, k, v, causal, backend=None):
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def with_env(var: str, value: str, fn):
    """``fn()`` with the environment variable ``var`` set to ``value`` for the call only."""
    os.environ[var] = value
    try:
        return fn()
    finally:
        os.environ.pop(var)


def envs(pairs: dict[str, str], fn):
    """``fn`` as a call with the environment variables in ``pairs`` set for the call only."""
    def call():
        inner = fn
        for var, value in pairs.items():
            inner = (lambda f, v, x: (lambda: with_env(v, x, f)))(inner, var, value)
        return inner()
    return call


def timed(var: str, value: str, fn) -> str:
    """Median time of ``fn`` (ms, 3 decimals) with ``var=value`` set around it, or the error's
    name: a config that does not fit (shared memory, registers) is a result of a sweep."""
    try:
        return f"{with_env(var, value, lambda: bench(fn)):.3f}"
    except Exception as err:  # noqa: BLE001
        return f"error:{type(err).__name__}"
