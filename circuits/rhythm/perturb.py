"""The perturbation test of the rhythm paper: a forced token at a high-FAI position changes the
continuation more than one at a low-FAI position.

Context:
    Li et al. (arXiv 2510.13554, Table 1; methods dossier section d) force one of the top-k
    alternative tokens at a response position, roll out greedily, and compare the new
    continuation with the original by content-word Jaccard: 0.534 at high-FAI positions against
    0.631 at low-FAI positions, and the high-FAI perturbation changes the continuation more in
    87.14% of trials (61 of 70, one trial per GSM8K problem). Tokens that later tokens attend to
    (anchors) should steer the reasoning; this test checks it causally.

Rules (the paper gives none of these; each is a named choice, :class:`PerturbConfig`):
    Positions. Response index ``i`` is a candidate when ``skip_first <= i`` (5), at least
    ``min_after`` response tokens follow it (default: ``rollout_tokens``, so the original
    continuation is as long as a full rollout), and its FAI is finite (FAI is NaN where its band
    is empty). Candidates are sorted by FAI (ties by position); the last ``pairs`` are the high
    positions (highest first), the first ``pairs`` the low ones (lowest first), paired in that
    order. A trace with fewer than ``2 x pairs`` candidates is refused. Skipping the opening
    tokens is a guard of ours (they sit next to the prompt; the paper says nothing of them).
    Alternative. The model's logits at the prefix ``prompt + response[:i]`` are ranked; the
    original token ``response[i]`` and special tokens (EOS, padding, chat markers: forcing one
    ends or reformats the response) are skipped; ``rank`` k takes place k of what is left,
    counting the original as place 1. So k = 2 is the most probable token other than the
    original: the runner-up on a greedy trace, and the argmax itself on a sampled trace whose
    token was not the argmax. Its place in the full ranking is recorded.
    Rollout. ``prompt + response[:i] + [alternative]`` is continued greedily (HF ``generate``,
    no sampling, left-padded batches) for at most ``rollout_tokens`` tokens, up to EOS.
    Original continuation. ``response[i + 1:]``; both sides are cut to the same number of
    tokens, ``min(rollout length, original tokens left)``, so length does not decide the score.
    The token at ``i`` (original or forced) is on neither side: it always differs, so it would
    lower every score by construction, and more where it is a content word.
    Content words and Jaccard. Each side is decoded (special tokens dropped) and compared by
    the Jaccard similarity of its content words (:mod:`circuits.rhythm.content_words`: NLTK's
    English stop words removed, numbers kept; 1 when both sides have none).
    Ties and intervals. :mod:`circuits.rhythm.perturb_summary`: a tie counts half of a trial
    where the high-FAI perturbation changes more (and is counted); percentile-bootstrap
    intervals over traces.

FAI comes from :mod:`circuits.rhythm.trace_fai`: computed by the statistics capture of
``headscope rhythm analyse`` (the paper's section-4 band runs to the end of the response), or
read from the file that command wrote.

Example:
    >>> from circuits.rhythm.perturb import PerturbConfig, perturb_traces
    >>> from circuits.rhythm.trace_fai import compute_fai
    >>> from circuits.rhythm.perturb_summary import format_summary, summarise
    >>> fais = compute_fai(model, traces, RhythmConfig(band_hi=None))
    >>> trials = perturb_traces(model, traces, fais, PerturbConfig(rollout_tokens=64))
    >>> print(format_summary(summarise(trials)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from circuits.rhythm.content_words import STOP_WORD_SOURCES, content_words, jaccard, stop_words
from circuits.rhythm.traces import Trace, TraceConfig, generate_responses, left_pad
from probe.capture.hf import run_forward
from probe.models import LoadedModel

SHOWN = 5
"""How many offending traces a message names."""


@dataclass(frozen=True)
class PerturbConfig:
    """The rules of the perturbation test (see the module docstring).

    Attributes:
        pairs: high/low position pairs per trace (the paper: one trial per problem).
        skip_first: response tokens at the start that are never chosen.
        min_after: least number of response tokens after a chosen position; None (default):
            ``rollout_tokens``, so the original continuation is as long as a full rollout and
            every trial compares the same number of tokens (unless the rollout ends early at
            EOS). Positions near
            the end would otherwise be compared over a few tokens only, and with FAI's band
            running to the end of the response their FAI is a mean over few rows.
        rank: place of the forced token in the model's ranking, the original counted as place 1
            and skipped (2: the most probable other token). At least 2.
        rollout_tokens: most tokens rolled out greedily after the forced one (64).
        stop_words: ``builtin`` (NLTK's English list, copied in ``data/``: the same on every
            machine), ``nltk`` (from installed NLTK data) or ``sklearn`` (scikit-learn's
            ``ENGLISH_STOP_WORDS``, which also drops number words such as "two").
        n_boot: bootstrap draws of the intervals.
        seed: the bootstrap's seed.
    """

    pairs: int = 1
    skip_first: int = 5
    min_after: int | None = None
    rank: int = 2
    rollout_tokens: int = 64
    stop_words: str = "builtin"
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_after is None and isinstance(self.rollout_tokens, int):
            object.__setattr__(self, "min_after", self.rollout_tokens)
        least = {"pairs": 1, "skip_first": 0, "rollout_tokens": 1, "min_after": 1, "rank": 2, "n_boot": 1}
        for name, low in least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}"
                                 + ("; rank 2 is the most probable token other than the original" if name == "rank"
                                    else ""))
        if self.stop_words not in STOP_WORD_SOURCES:
            raise ValueError(f"stop_words must be one of {', '.join(STOP_WORD_SOURCES)}, got {self.stop_words!r}")

    @property
    def min_response(self) -> int:
        """Fewest response tokens with room for the pairs (their FAI must also be finite)."""
        return self.skip_first + 2 * self.pairs + self.min_after


# --- positions -------------------------------------------------------------------------------


class TooShortError(ValueError):
    """A trace without ``2 x pairs`` candidate positions."""


def choose_positions(fai: Float[np.ndarray, " response"], config: PerturbConfig) -> tuple[list[int], list[int]]:
    """The high-FAI positions (highest first) and low-FAI positions (lowest first) of one trace.

    Args:
        fai: FAI per response token, NaN where undefined.
        config: ``skip_first``, ``min_after`` and ``pairs``.

    Raises:
        TooShortError: fewer than ``2 x pairs`` candidates.

    Example:
        >>> choose_positions(np.array([9, 0, 5, 1, 7, 3, np.nan]), PerturbConfig(skip_first=1, min_after=1))
        ([4], [1])
    """
    fai = np.asarray(fai, dtype=float)
    last = len(fai) - 1 - config.min_after
    candidates = [i for i in range(config.skip_first, last + 1) if math.isfinite(fai[i])]
    if len(candidates) < 2 * config.pairs:
        raise TooShortError(f"{len(candidates)} candidate positions, {2 * config.pairs} needed")
    ranked = sorted(candidates, key=lambda i: (fai[i], i))
    return ranked[::-1][:config.pairs], ranked[:config.pairs]


def check_long_enough(traces: Sequence[Trace], config: PerturbConfig) -> None:
    """Refuse, naming them, traces whose response cannot hold a high and a low position."""
    short = [t for t in traces if len(t.response_ids) < config.min_response]
    if short:
        raise TooShortError(f"{len(short)} trace(s) are too short to have a high- and a low-FAI position: "
                            f"{_named(short, lambda t: len(t.response_ids))} response tokens, "
                            f"{config.min_response} needed (skip_first {config.skip_first} + 2 x pairs "
                            f"{config.pairs} + min_after {config.min_after}); pass smaller --skip-first / "
                            "--min-after, or longer responses")


def _named(traces: Sequence[Trace], size) -> str:
    named = ", ".join(f"trace {t.index}: {size(t)}" for t in traces[:SHOWN])
    return named + (", ..." if len(traces) > SHOWN else "")


# --- forcing and rolling out -----------------------------------------------------------------


def alternative_token(logits: Float[Tensor, " vocab"], original: int, rank: int,
                      skipped: frozenset[int] = frozenset()) -> tuple[int, int]:
    """The token in place ``rank`` of ``logits``' ranking once ``original`` (place 1) and
    ``skipped`` are left out, and its place in the full ranking (1-based).

    Example:
        >>> alternative_token(torch.tensor([0.1, 3.0, 2.0, 5.0]), original=3, rank=2)
        (1, 2)
    """
    order = torch.argsort(logits.float(), descending=True, stable=True)
    leave_out = skipped | {original}
    head = order[: rank + len(leave_out)].tolist()  # enough places to skip every left-out token
    kept = [(token, place) for place, token in enumerate(head, start=1) if token not in leave_out]
    return kept[rank - 2]


@dataclass(frozen=True)
class Side:
    """One perturbation: the forced token at a position and what followed.

    Attributes:
        position: response index ``i`` of the forced token.
        fai: FAI there.
        original: the trace's token id at ``i``.
        forced: the token id forced in its place.
        forced_place: ``forced``'s place in the model's full ranking at that prefix (1-based).
        original_token, forced_token: the two tokens as text.
        rollout: greedy token ids after the forced one (up to EOS, without it).
        ended: the rollout stopped at EOS before ``rollout_tokens``.
        compared: tokens compared on each side (the shorter of rollout and original rest).
        original_text: the trace's continuation after ``i``, ``compared`` tokens, decoded.
        rollout_text: the rollout's first ``compared`` tokens, decoded.
        jaccard: content-word Jaccard of the two texts.
    """

    position: int
    fai: float
    original: int
    forced: int
    forced_place: int
    original_token: str
    forced_token: str
    rollout: tuple[int, ...]
    ended: bool
    compared: int
    original_text: str
    rollout_text: str
    jaccard: float


@dataclass(frozen=True)
class Trial:
    """A high-FAI and a low-FAI perturbation of one trace.

    Attributes:
        trace: the trace's place in the list given to :func:`perturb_traces`.
        pair: the pair's number in the trace (0: the highest and the lowest FAI).
    """

    trace: int
    pair: int
    high: Side
    low: Side

    @property
    def score(self) -> float:
        """1 when the high-FAI perturbation changed the continuation more (lower Jaccard), 0.5
        on a tie, 0 otherwise."""
        return 0.5 if self.high.jaccard == self.low.jaccard else float(self.high.jaccard < self.low.jaccard)


@dataclass(frozen=True)
class _Request:
    trace: int
    pair: int
    high: bool
    position: int
    fai: float


def perturb_traces(model: LoadedModel, traces: Sequence[Trace], fais: Sequence[Float[np.ndarray, " response"]],
                   config: PerturbConfig = PerturbConfig(), batch_size: int = 4,
                   progress: bool = True) -> list[Trial]:
    """Force the rank-k alternative at each trace's high- and low-FAI positions and roll out.

    Args:
        model: the model whose tokenizer made the traces' ids, in eval mode.
        traces: the traces.
        fais: per trace, FAI per response token (NaN where undefined).
        config: the test's rules.
        batch_size: prefixes per forward and per ``generate`` call (left padding).
        progress: show a ``tqdm`` bar over rollouts.

    Returns:
        ``pairs`` trials per trace, in trace order.

    Raises:
        ValueError: traces and FAI vectors that do not match, traces too short (naming them), a
            prefix plus rollout longer than the context, a model in training mode.
    """
    if model.hf.training:
        raise ValueError("the model is in training mode (dropout on); call model.hf.eval() first")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    requests = _requests(traces, fais, config)
    _check_context(model, traces, requests, config)
    stop = stop_words(config.stop_words)
    sides: dict[tuple[int, int, bool], Side] = {}
    with tqdm(total=len(requests), desc="perturb", disable=not progress) as bar:
        for first in range(0, len(requests), batch_size):
            batch = requests[first:first + batch_size]
            for request, side in zip(batch, _perturb_batch(model, traces, batch, config, stop)):
                sides[request.trace, request.pair, request.high] = side
            bar.update(len(batch))
    return [Trial(r.trace, r.pair, sides[r.trace, r.pair, True], sides[r.trace, r.pair, False])
            for r in requests if r.high]


def _requests(traces: Sequence[Trace], fais: Sequence, config: PerturbConfig) -> list[_Request]:
    """Every (trace, pair, high/low) position to perturb; too-short traces refused together."""
    if len(traces) != len(fais):
        raise ValueError(f"{len(traces)} traces but {len(fais)} FAI vectors")
    if not traces:
        raise ValueError("no traces to perturb")
    requests, short = [], []
    for number, (trace, fai) in enumerate(zip(traces, fais)):
        fai = np.asarray(fai, dtype=float)
        if len(fai) != len(trace.response_ids):
            raise ValueError(f"trace {trace.index}: {len(fai)} FAI values for {len(trace.response_ids)} "
                             "response tokens")
        try:
            high, low = choose_positions(fai, config)
        except TooShortError as err:
            short.append((trace, str(err)))
            continue
        for pair, (h, l) in enumerate(zip(high, low)):
            requests += [_Request(number, pair, True, h, float(fai[h])),
                         _Request(number, pair, False, l, float(fai[l]))]
    if short:
        named = ", ".join(f"trace {t.index} ({why})" for t, why in short[:SHOWN]) + (", ..." if len(short) > SHOWN
                                                                                     else "")
        raise TooShortError(f"{len(short)} trace(s) are too short to have a high- and a low-FAI position: {named}; "
                            f"a candidate is at least skip_first={config.skip_first} tokens in, has min_after="
                            f"{config.min_after} tokens after it and a finite FAI")
    return requests


def _check_context(model: LoadedModel, traces: Sequence[Trace], requests: Sequence[_Request],
                   config: PerturbConfig) -> None:
    context = model.geometry.context_length
    if context is None:
        return
    need: dict[int, int] = {}  # per trace, its longest prefix + forced token + rollout
    for r in requests:
        length = len(traces[r.trace].prompt_ids) + r.position + 1 + config.rollout_tokens
        need[r.trace] = max(need.get(r.trace, 0), length)
    long = [(traces[i], n) for i, n in need.items() if n > context]
    if long:
        named = ", ".join(f"trace {t.index}: {n}" for t, n in long[:SHOWN])
        raise ValueError(f"{len(long)} trace(s) need more than the model's context of {context} tokens for prefix, "
                         f"forced token and {config.rollout_tokens} rollout tokens ({named}); pass a smaller "
                         "--rollout-tokens")


def _perturb_batch(model: LoadedModel, traces: Sequence[Trace], batch: Sequence[_Request], config: PerturbConfig,
                   stop: frozenset[str]) -> list[Side]:
    """One forward over the prefixes (the alternatives), one ``generate`` call (the rollouts)."""
    tokenizer = model.tokenizer
    prefixes = [[*traces[r.trace].prompt_ids, *traces[r.trace].response_ids[:r.position]] for r in batch]
    ids, mask = left_pad(prefixes, tokenizer.pad_token_id)
    logits = run_forward(model.hf, ids, mask)[:, :len(tokenizer)]  # [batch, vocab]; no padded-vocab ids
    skipped = frozenset(tokenizer.all_special_ids)
    originals = [traces[r.trace].response_ids[r.position] for r in batch]
    forced = [alternative_token(row, original, config.rank, skipped) for row, original in zip(logits, originals)]
    rollouts = generate_responses(model, [p + [token] for p, (token, _) in zip(prefixes, forced)],
                                  TraceConfig(max_new_tokens=config.rollout_tokens), seed=0)
    sides = []
    for r, original, (token, place), (rollout, _) in zip(batch, originals, forced, rollouts):
        rest = traces[r.trace].response_ids[r.position + 1:]
        n = min(len(rollout), len(rest))
        original_text = tokenizer.decode(rest[:n], skip_special_tokens=True)
        rollout_text = tokenizer.decode(rollout[:n], skip_special_tokens=True)
        sides.append(Side(r.position, r.fai, original, token, place, tokenizer.decode([original]),
                          tokenizer.decode([token]), tuple(rollout),
                          len(rollout) < config.rollout_tokens, n, original_text, rollout_text,
                          jaccard(content_words(original_text, stop), content_words(rollout_text, stop))))
    return sides
