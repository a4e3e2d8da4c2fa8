"""Peaks of WAAD and FAI, and the three couplings of the rhythm paper against shuffled peaks.

Context:
    Li et al. (arXiv 2510.13554, Table 2; methods dossier section d) report on 70 GSM8K traces
    that (a) token entropy is higher at WAAD peaks than at shuffled positions, (b) FAI peaks of
    receiver heads co-occur with FAI peaks of the global heads, and (c) FAI peaks follow or
    coincide with a WAAD peak; each against a "random" value with the peak positions shuffled,
    and as a lift ``observed / random - 1``.

Peak rule (the paper does not give one; this is a named, documented choice):
    A peak is a *strict local maximum* (greater than both neighbours; plateaus and the first
    and last values are never peaks) whose *topographic prominence* (scipy's definition: its
    height above the higher of the two lowest points between it and the nearest higher value,
    or the end of the run, on each side) reaches a threshold. WAAD peaks need a prominence of
    at least ``waad_prominence`` tokens (0.5); FAI peaks at least ``fai_relative_prominence``
    (10%) of the trace's FAI range (max - min). These are the thresholds of a third-party
    reimplementation the dossier cites. NaN values (FAI's empty bands) split a sequence into
    runs: a NaN is neither a peak nor a neighbour, and prominences stop at it.

Couplings (:func:`rhythm_couplings`):
    (a) ``entropy_at_waad_peaks``: mean token entropy over all WAAD peaks of all traces.
    (b) ``receiver_fai_cooccurrence``: share of receiver-head FAI peaks with a global FAI peak
        within ``cooccur_window`` tokens (0: the same token).
    (c) ``fai_follows_waad``: share of FAI peaks ``s`` with a WAAD peak ``u`` in
        ``s - follow_window <= u <= s`` (default 3, the paper's largest k).

    Each pools all peaks of all traces (every peak weighs the same). The random value moves
    each trace's peaks (of the first signal named; the other stays) to as many positions drawn
    uniformly without replacement from the positions where the signal is finite, averaged over
    ``n_shuffles`` seeded shuffles. The lift's interval is a percentile bootstrap over traces:
    traces are resampled with replacement and the pooled ratio recomputed. (The bootstrap of
    :mod:`circuits.evaluation.bootstrap` resamples a mean of per-item values; the lift is a ratio
    of pooled sums, so it is resampled here, and reported as its
    :class:`~circuits.evaluation.bootstrap.Interval`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Sequence

import numpy as np
from jaxtyping import Bool, Float, Int
from scipy.signal import peak_prominences
from torch import Tensor

from circuits.evaluation.bootstrap import Interval, bootstrap_pooled
from circuits.rhythm.metrics import TokenRhythm

Signal = Float[np.ndarray, " n"] | Float[Tensor, " n"]


@dataclass(frozen=True)
class PeakRule:
    """Strict local maxima with a minimum topographic prominence.

    Attributes:
        waad_prominence: least prominence of a WAAD peak, in WAAD's unit (tokens); 0.5.
        fai_relative_prominence: least prominence of an FAI peak as a share of the trace's FAI
            range (max - min over its finite values); 0.1.
    """

    waad_prominence: float = 0.5
    fai_relative_prominence: float = 0.1

    def __post_init__(self) -> None:
        for name in ("waad_prominence", "fai_relative_prominence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class CouplingConfig:
    """How the couplings are measured.

    Attributes:
        rule: the peak rule.
        follow_window: k of coupling (c): a WAAD peak up to k tokens before the FAI peak, or at
            it, counts (paper: k in {1, 2, 3}).
        cooccur_window: tolerance of coupling (b), in tokens (0: the same token).
        n_shuffles: shuffles of the peak positions per trace for the random value.
        n_boot: bootstrap resamples of the traces for the lift's interval.
        level: the interval's coverage.
        seed: seeds the shuffles and the bootstrap.
    """

    rule: PeakRule = PeakRule()
    follow_window: int = 3
    cooccur_window: int = 0
    n_shuffles: int = 1000
    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("follow_window", "cooccur_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("n_shuffles", "n_boot"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {self.level}")


@dataclass(frozen=True)
class Coupling:
    """One coupling measured on a set of traces.

    Attributes:
        name: which coupling (see the module docstring).
        observed: the pooled value at the real peaks (mean entropy, or share of peaks).
        random: the same with the peaks shuffled (mean over shuffles).
        lift: ``observed / random - 1`` with its bootstrap interval over traces (NaN when the
            random value is 0).
        n_traces: traces measured.
        n_peaks: peaks pooled (of the signal whose peaks are shuffled).
    """

    name: str
    observed: float
    random: float
    lift: Interval
    n_traces: int
    n_peaks: int


class NoPeaksError(ValueError):
    """No trace has a peak of the signal a coupling shuffles, so the coupling cannot be measured."""


@dataclass(frozen=True)
class PublishedCoupling:
    """One row of Li et al.'s Table 2 (Qwen3-4B-Base, 70 GSM8K problems; methods dossier section d).

    Attributes:
        label: the paper's wording of the coupling.
        random: the value with the peaks shuffled.
        observed: the value at the real peaks.
        lift: the published lift (a fraction: 0.5197 is +51.97%). For the entropy row it does not
            follow from the rounded values (0.3608 / 0.2386 - 1 = 51.2%); the published figure is
            quoted as printed.
    """

    label: str
    random: float
    observed: float
    lift: float


PAPER_COUPLINGS: dict[str, PublishedCoupling] = {
    "entropy_at_waad_peaks": PublishedCoupling("Entropy at WAAD peaks", 0.2386, 0.3608, 0.5197),
    "receiver_fai_cooccurrence": PublishedCoupling("Receiver-head FAI peaks co-occur with global FAI peaks",
                                                   0.2241, 0.6084, 1.7149),
    "fai_follows_waad": PublishedCoupling("FAI peak follows or coincides with a WAAD peak", 0.3687, 0.5253, 0.4247),
}
"""The paper's Table 2, by coupling name (the keys of :func:`rhythm_couplings`' result)."""


# --- peaks -----------------------------------------------------------------------------------


def as_array(values: Signal) -> Float[np.ndarray, " n"]:
    """A 1-d float64 NumPy copy of ``values`` (tensor or array)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-d sequence of values, got shape {array.shape}")
    return array


def finite_mask(values: Signal) -> Bool[np.ndarray, " n"]:
    """Where ``values`` is finite (where a shuffled peak may land)."""
    return np.isfinite(as_array(values))


def strict_local_maxima(values: Signal) -> Int[np.ndarray, " peak"]:
    """Indices ``i`` with ``v[i-1] < v[i] > v[i+1]``, all three finite (ends and plateaus excluded)."""
    v = as_array(values)
    if v.size < 3:
        return np.zeros(0, dtype=np.int64)
    left, mid, right = v[:-2], v[1:-1], v[2:]
    with np.errstate(invalid="ignore"):
        hit = (mid > left) & (mid > right)  # False wherever a NaN is involved
    return np.flatnonzero(hit) + 1


def prominences(values: Signal, peaks: Int[np.ndarray, " peak"]) -> Float[np.ndarray, " peak"]:
    """Topographic prominence of each peak (``scipy.signal.peak_prominences``), within the run of
    finite values that holds it: a NaN ends a run like the sequence's ends do."""
    v = as_array(values)
    peaks = np.asarray(peaks, dtype=np.int64)
    out = np.empty(len(peaks))
    for start, stop in finite_runs(v):
        inside = (peaks >= start) & (peaks < stop)
        if inside.any():
            out[inside] = peak_prominences(v[start:stop], peaks[inside] - start)[0]
    return out


def finite_runs(v: Float[np.ndarray, " n"]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each maximal run of finite values."""
    finite = np.concatenate([[False], np.isfinite(v), [False]])
    edges = np.flatnonzero(np.diff(finite.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def prominent_peaks(values: Signal, min_prominence: float) -> Int[np.ndarray, " peak"]:
    """Strict local maxima whose prominence is at least ``min_prominence``."""
    peaks = strict_local_maxima(values)
    return peaks[prominences(values, peaks) >= min_prominence]


def waad_peaks(waad: Signal, rule: PeakRule = PeakRule()) -> Int[np.ndarray, " peak"]:
    """WAAD peaks: prominence >= ``rule.waad_prominence``."""
    return prominent_peaks(waad, rule.waad_prominence)


def fai_peaks(fai: Signal, rule: PeakRule = PeakRule()) -> Int[np.ndarray, " peak"]:
    """FAI peaks: prominence >= ``rule.fai_relative_prominence`` x the finite values' range."""
    v = as_array(fai)
    finite = v[np.isfinite(v)]
    if finite.size < 3:
        return np.zeros(0, dtype=np.int64)
    return prominent_peaks(v, rule.fai_relative_prominence * float(finite.max() - finite.min()))


# --- couplings -------------------------------------------------------------------------------


def shuffled_positions(eligible: Int[np.ndarray, " m"], count: int, n_shuffles: int,
                       rng: np.random.Generator) -> Int[np.ndarray, "shuffle count"]:
    """``n_shuffles`` draws of ``count`` distinct positions from ``eligible``."""
    if count > eligible.size:
        raise ValueError(f"cannot place {count} peaks on {eligible.size} eligible positions")
    order = rng.random((n_shuffles, eligible.size)).argsort(axis=1)[:, :count]
    return eligible[order]


def near_mask(targets: Int[np.ndarray, " t"], length: int, before: int, after: int) -> Bool[np.ndarray, " n"]:
    """Positions ``s`` that have a target ``u`` with ``s - before <= u <= s + after``."""
    mask = np.zeros(length, dtype=bool)
    for u in np.asarray(targets, dtype=np.int64):
        mask[max(0, u - after) : min(length, u + before + 1)] = True
    return mask


def value_coupling(name: str, values: Sequence[Signal], peaks: Sequence[Int[np.ndarray, " peak"]],
                   eligible: Sequence[Bool[np.ndarray, " n"]], config: CouplingConfig) -> Coupling:
    """Mean of ``values`` at the peaks against the mean at shuffled positions.

    Args:
        name: the coupling's name.
        values: per trace, the value at each position (e.g. token entropy).
        peaks: per trace, the peak positions (all eligible).
        eligible: per trace, where a shuffled peak may land.
        config: shuffles, bootstrap and seed.
    """
    rng = np.random.default_rng(config.seed)
    observed, random, counts = [], [], []
    for v, p, ok in zip(values, peaks, eligible, strict=True):
        v, p = as_array(v), _checked_peaks(p, ok)
        draws = shuffled_positions(np.flatnonzero(ok), p.size, config.n_shuffles, rng)
        observed.append(v[p].sum())
        random.append(v[draws].sum(axis=1).mean())
        counts.append(p.size)
    return _coupling(name, observed, random, counts, config)


def hit_coupling(name: str, peaks: Sequence[Int[np.ndarray, " peak"]], targets: Sequence[Int[np.ndarray, " t"]],
                 eligible: Sequence[Bool[np.ndarray, " n"]], before: int, after: int,
                 config: CouplingConfig) -> Coupling:
    """Share of peaks with a target peak ``u`` in ``s - before <= u <= s + after``, against shuffled peaks.

    Args:
        name: the coupling's name.
        peaks: per trace, the peaks that are shuffled.
        targets: per trace, the peaks that stay.
        eligible: per trace, where a shuffled peak may land (its length is the trace's length).
        before, after: the window around each peak.
        config: shuffles, bootstrap and seed.
    """
    rng = np.random.default_rng(config.seed)
    observed, random, counts = [], [], []
    for p, t, ok in zip(peaks, targets, eligible, strict=True):
        p, near = _checked_peaks(p, ok), near_mask(t, len(ok), before, after)
        draws = shuffled_positions(np.flatnonzero(ok), p.size, config.n_shuffles, rng)
        observed.append(float(near[p].sum()))
        random.append(near[draws].sum(axis=1).mean())
        counts.append(p.size)
    return _coupling(name, observed, random, counts, config)


def _checked_peaks(peaks: Int[np.ndarray, " peak"], eligible: Bool[np.ndarray, " n"]) -> Int[np.ndarray, " peak"]:
    peaks = np.asarray(peaks, dtype=np.int64)
    if peaks.size and (peaks.min() < 0 or peaks.max() >= len(eligible) or not eligible[peaks].all()):
        raise ValueError("every peak must be an eligible position of its trace (0 <= peak < length, finite signal)")
    return peaks


def _coupling(name: str, observed: list[float], random: list[float], counts: list[int],
              config: CouplingConfig) -> Coupling:
    """Pooled observed and random values, and the lift with its bootstrap interval over traces."""
    obs, rnd, cnt = (np.asarray(x, dtype=np.float64) for x in (observed, random, counts))
    if cnt.sum() == 0:
        raise NoPeaksError(f"{name}: no peaks in any of the {len(cnt)} traces; lower the peak rule's prominences "
                           "or use longer responses")
    lift = bootstrap_pooled(np.stack([obs, rnd], axis=1), lambda sums: sums[..., 0] / sums[..., 1] - 1.0,
                            n_boot=config.n_boot, level=config.level, seed=config.seed + 1)
    if not rnd.sum() > 0:
        lift = Interval(math.nan, lift.low, lift.high)
    return Coupling(name=name, observed=float(obs.sum() / cnt.sum()), random=float(rnd.sum() / cnt.sum()),
                    lift=lift, n_traces=len(obs), n_peaks=int(cnt.sum()))


def entropy_at_waad_peaks(rhythms: Sequence[TokenRhythm], config: CouplingConfig) -> Coupling:
    """Coupling (a): mean token entropy at WAAD peaks against shuffled WAAD peaks."""
    waad = [waad_peaks(r.waad, config.rule) for r in rhythms]
    eligible = [finite_mask(r.waad) & finite_mask(r.entropy) for r in rhythms]
    return value_coupling("entropy_at_waad_peaks", [r.entropy for r in rhythms], waad, eligible, config)


def receiver_fai_cooccurrence(rhythms: Sequence[TokenRhythm], config: CouplingConfig) -> Coupling:
    """Coupling (b): share of receiver-head FAI peaks within ``cooccur_window`` of a global FAI peak."""
    receiver = [fai_peaks(r.receiver_fai, config.rule) for r in rhythms]
    fai = [fai_peaks(r.fai, config.rule) for r in rhythms]
    return hit_coupling("receiver_fai_cooccurrence", receiver, fai, [finite_mask(r.receiver_fai) for r in rhythms],
                        config.cooccur_window, config.cooccur_window, config)


def fai_follows_waad(rhythms: Sequence[TokenRhythm], config: CouplingConfig) -> Coupling:
    """Coupling (c): share of FAI peaks with a WAAD peak at most ``follow_window`` tokens before."""
    fai = [fai_peaks(r.fai, config.rule) for r in rhythms]
    waad = [waad_peaks(r.waad, config.rule) for r in rhythms]
    return hit_coupling("fai_follows_waad", fai, waad, [finite_mask(r.fai) for r in rhythms],
                        config.follow_window, 0, config)


COUPLINGS: dict[str, Callable[[Sequence[TokenRhythm], CouplingConfig], Coupling]] = {
    "entropy_at_waad_peaks": entropy_at_waad_peaks,
    "receiver_fai_cooccurrence": receiver_fai_cooccurrence,
    "fai_follows_waad": fai_follows_waad,
}
"""The couplings of Table 2, by name, in the paper's order."""


def rhythm_couplings(rhythms: Sequence[TokenRhythm], config: CouplingConfig = CouplingConfig(), *,
                     allow_missing: bool = False) -> dict[str, Coupling]:
    """The three couplings of Li et al.'s Table 2 on a set of traces.

    Args:
        rhythms: per trace, the metrics of :func:`circuits.rhythm.metrics.rhythm_metrics`
            (computed with ``model=`` so that token entropy is there).
        config: peak rule, windows, shuffles, bootstrap.
        allow_missing: leave a coupling whose shuffled signal has no peak in any trace out of
            the result, instead of raising (a report of a few short traces shows the others).

    Returns:
        ``{"entropy_at_waad_peaks", "receiver_fai_cooccurrence", "fai_follows_waad"}`` ->
        :class:`Coupling` (see the module docstring), in that order; with ``allow_missing``, the
        ones that could be measured.

    Raises:
        NoPeaksError: a coupling has no peaks (unless ``allow_missing``).
        ValueError: no traces, or token entropy missing.
    """
    if not rhythms:
        raise ValueError("no traces given")
    if any(r.entropy is None for r in rhythms):
        raise ValueError("token entropy is missing; compute the metrics with rhythm_metrics(..., model=model)")
    couplings = {}
    for name, measure in COUPLINGS.items():
        try:
            couplings[name] = measure(rhythms, config)
        except NoPeaksError:
            if not allow_missing:
                raise
    return couplings
