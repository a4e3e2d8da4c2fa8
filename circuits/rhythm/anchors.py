"""Where anchors fall: the share of WAAD and FAI peaks at sentence starts, line starts and numbers.

Context:
    Li et al. (arXiv 2510.13554, section 4) read FAI peaks as *anchors* (tokens later reasoning
    keeps returning to: "key intermediate results") and WAAD peaks as *preplan* tokens at chunk
    boundaries. Issue 22 asks where they fall on a small model: at step or sentence starts, at
    numbers. This module answers with a share and a lift over the base rate.

Token classes (a registry, :data:`TOKEN_CLASSES`; each a rule on the readable token strings of
:class:`~circuits.rhythm.metrics.TokenRhythm`, which keep their leading space and newlines):
    - ``number``: the token holds a digit.
    - ``line_start``: the first token with visible text on a line: the response's first such
      token, or one after a token holding a newline (the token itself may start with the
      newline). GSM8K responses put one step per line or paragraph, so this is the "step start".
    - ``sentence_start``: a line start, or a token that begins with a space and follows a token
      ending in ``.``, ``!``, ``?`` or ``:`` (so the ``5`` of ``3.5`` is not a sentence start).
    - ``after_number``: the token right after a number token (an intermediate result is often
      the number just written; this class shows whether peaks sit one token later).
    - ``sentence_end``: a token that ends a sentence or a line (``.``, ``!``, ``?``, ``:`` alone,
      or one holding a newline; the decimal point of ``3.5`` too): the chunk boundaries the
      paper's WAAD sawtooth refers to.
    - ``operator``: ``=``, ``+``, ``-``, ``*``, ``/``, ``×``, ``÷`` alone.

Placement (:func:`anchor_placement`):
    For a signal (``fai`` or ``waad``) and a class: ``share`` = pooled share of the signal's
    peaks (by :mod:`circuits.rhythm.peaks`' rule) that fall on tokens of the class, ``base`` =
    pooled share of the eligible tokens (finite signal) in the class, and ``lift = share / base -
    1`` with a percentile bootstrap interval over traces. A lift interval above 0 says peaks
    prefer the class beyond its frequency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from jaxtyping import Bool

from circuits.evaluation.bootstrap import Interval, bootstrap_pooled
from circuits.rhythm.metrics import TokenRhythm
from circuits.rhythm.peaks import CouplingConfig, PeakRule, fai_peaks, finite_mask, waad_peaks

TokenClass = Callable[[Sequence[str]], Bool[np.ndarray, " n"]]

_SENTENCE_END = re.compile(r"[.!?:][\"')\]]*$")


def number_tokens(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """Tokens holding a digit."""
    return np.array([any(ch.isdigit() for ch in token) for token in tokens], dtype=bool)


def line_starts(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """The first token with visible text on each line (see the module docstring)."""
    starts = np.zeros(len(tokens), dtype=bool)
    pending = True  # no visible text yet on the current line
    for i, token in enumerate(tokens):
        first, *rest = token.split("\n")
        if pending and first.strip():
            starts[i], pending = True, False
        elif first.strip():
            pending = False
        if rest:  # the token ends a line; text after its last newline opens the next
            pending = not rest[-1].strip()
            starts[i] = starts[i] or not pending
    return starts


def sentence_starts(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """Line starts, and tokens opening with a space after a sentence-ending token."""
    starts = line_starts(tokens)
    for i in range(1, len(tokens)):
        if tokens[i][:1] == " " and tokens[i].strip() and _SENTENCE_END.search(tokens[i - 1].rstrip(" ")):
            starts[i] = True
    return starts


def sentence_ends(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """Tokens that end a sentence or a line: ``.``, ``!``, ``?``, ``:`` (alone, spaces aside) or a
    token holding a newline."""
    return np.array(["\n" in token or token.strip() in {".", "!", "?", ":"} for token in tokens], dtype=bool)


def operators(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """Arithmetic operators and the equals sign, alone (spaces aside)."""
    return np.array([token.strip() in {"=", "+", "-", "*", "/", "×", "÷"} for token in tokens], dtype=bool)


def after_numbers(tokens: Sequence[str]) -> Bool[np.ndarray, " n"]:
    """The token right after a number token."""
    numbers = number_tokens(tokens)
    after = np.zeros_like(numbers)
    after[1:] = numbers[:-1]
    return after


TOKEN_CLASSES: Mapping[str, TokenClass] = {
    "number": number_tokens,
    "line_start": line_starts,
    "sentence_start": sentence_starts,
    "after_number": after_numbers,
    "sentence_end": sentence_ends,
    "operator": operators,
}
"""Token classes by name (see the module docstring)."""

PEAK_SIGNALS: Mapping[str, Callable[[TokenRhythm, PeakRule], tuple[np.ndarray, np.ndarray]]] = {
    "fai": lambda rhythm, rule: (fai_peaks(rhythm.fai, rule), finite_mask(rhythm.fai)),
    "waad": lambda rhythm, rule: (waad_peaks(rhythm.waad, rule), finite_mask(rhythm.waad)),
}
"""For each signal: its peaks and the positions where it is defined (the base rate's tokens)."""


@dataclass(frozen=True)
class Placement:
    """Where one signal's peaks fall relative to one token class.

    Attributes:
        signal: ``fai`` or ``waad``.
        token_class: a name of :data:`TOKEN_CLASSES`.
        share: pooled share of the peaks on tokens of the class.
        base: pooled share of the eligible tokens in the class.
        lift: ``share / base - 1`` with its bootstrap interval over traces.
        n_peaks: peaks pooled.
        n_traces: traces measured.
    """

    signal: str
    token_class: str
    share: float
    base: float
    lift: Interval
    n_peaks: int
    n_traces: int

    def as_dict(self) -> dict:
        return {"signal": self.signal, "class": self.token_class, "share": self.share, "base": self.base,
                "lift": self.lift.as_dict(), "n_peaks": self.n_peaks, "n_traces": self.n_traces}


def placement_counts(rhythm: TokenRhythm, signal: str, token_class: str, rule: PeakRule) -> tuple[int, int, int, int]:
    """One trace's ``(peaks in class, peaks, eligible tokens in class, eligible tokens)``."""
    peaks, eligible = PEAK_SIGNALS[signal](rhythm, rule)
    in_class = TOKEN_CLASSES[token_class](rhythm.tokens)
    if len(in_class) != len(eligible):
        raise ValueError(f"trace {rhythm.prompt}: {len(rhythm.tokens)} tokens but {len(eligible)} signal values")
    return int(in_class[peaks].sum()), len(peaks), int((in_class & eligible).sum()), int(eligible.sum())


def anchor_placement(rhythms: Sequence[TokenRhythm], signal: str = "fai", token_class: str = "number",
                     config: CouplingConfig = CouplingConfig()) -> Placement:
    """Share of ``signal``'s peaks on ``token_class`` tokens against the class's base rate."""
    if signal not in PEAK_SIGNALS:
        raise ValueError(f"unknown signal {signal!r}; choose one of {sorted(PEAK_SIGNALS)}")
    if token_class not in TOKEN_CLASSES:
        raise ValueError(f"unknown token class {token_class!r}; choose one of {sorted(TOKEN_CLASSES)}")
    if not rhythms:
        raise ValueError("no traces to measure; give at least one TokenRhythm")
    counts = np.array([placement_counts(r, signal, token_class, config.rule) for r in rhythms], dtype=float)
    lift = bootstrap_pooled(counts, _placement_lift, n_boot=config.n_boot, level=config.level, seed=config.seed)
    total = counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share, base = total[0] / total[1], total[2] / total[3]
    return Placement(signal=signal, token_class=token_class, share=float(share), base=float(base), lift=lift,
                     n_peaks=int(total[1]), n_traces=len(rhythms))


def _placement_lift(sums: np.ndarray) -> np.ndarray:
    return (sums[..., 0] / sums[..., 1]) / (sums[..., 2] / sums[..., 3]) - 1.0


def all_placements(rhythms: Sequence[TokenRhythm], config: CouplingConfig = CouplingConfig()) -> list[Placement]:
    """Every signal against every token class."""
    return [anchor_placement(rhythms, signal, name, config) for signal in PEAK_SIGNALS for name in TOKEN_CLASSES]


def format_placements(placements: Sequence[Placement]) -> str:
    """A plain-text table: signal, class, share of peaks, base rate, lift [interval]."""
    lines = [f"{'signal':6} {'class':15} {'peaks':>6} {'share':>7} {'base':>7}  lift [95% interval]"]
    for p in placements:
        lines.append(f"{p.signal:6} {p.token_class:15} {p.n_peaks:6d} {p.share:7.1%} {p.base:7.1%}  "
                     f"{p.lift.value:+.0%} [{p.lift.low:+.0%}, {p.lift.high:+.0%}]")
    return "\n".join(lines)
