"""The rhythm metrics of many traces: each batch captured once, from the traces' own token ids.

Context:
    :func:`circuits.rhythm.metrics.rhythm_metrics` reduces one statistics capture to WAAD, FAI,
    receiver-head FAI, head roles and token entropy. This module feeds it traces: each batch of
    ``batch_size`` traces is teacher-forced (prompt ids then response ids,
    :func:`circuits.rhythm.traces.teacher_forcing`), left-padded, and captured once through
    :func:`probe.capture.capture_ids`, so the ids are read exactly as generated (text would be
    re-tokenized, and a tokenizer may merge tokens across the prompt/response boundary).
    :func:`check_traces` refuses what would fail part-way (a trace longer than the context, a
    response too short for the band) before the first capture, naming the traces.

Example:
    >>> from circuits.rhythm.analysis import analyse_traces
    >>> from circuits.rhythm.metrics import RhythmConfig
    >>> from circuits.rhythm.traces import read_traces
    >>> rhythms = analyse_traces(model, read_traces("traces.jsonl"), RhythmConfig(band_hi=None))
    >>> rhythms[0].waad, rhythms[0].fai
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from tqdm.auto import tqdm

from circuits.rhythm.metrics import (RhythmConfig, TokenRhythm, entropy_from_hidden, keep_final_hidden,
                                     rhythm_config_capture, rhythm_metrics)
from circuits.rhythm.traces import Trace, left_pad, teacher_forcing
from probe.capture import capture_ids
from probe.models import LoadedModel

SHOWN = 5
"""How many offending traces a message names."""


def check_traces(traces: Sequence[Trace], context_length: int | None, config: RhythmConfig) -> None:
    """Raise a ValueError naming the traces that cannot be analysed, before any capture.

    Args:
        traces: the traces.
        context_length: the model's context window (None: unbounded).
        config: the rhythm parameters (a response needs more than ``band_lo`` tokens: FAI's band
            of the response's first token starts ``band_lo`` tokens later).

    Raises:
        ValueError: no traces, traces longer than the context, or responses not longer than
            ``band_lo``.
    """
    if not traces:
        raise ValueError("no traces to analyse; generate some with `headscope rhythm traces` or pass --text-traces")
    if context_length is not None:
        long = [t for t in traces if len(t.prompt_ids) + len(t.response_ids) > context_length]
        if long:
            raise ValueError(f"{len(long)} trace(s) are longer than the model's context window of {context_length} "
                             f"tokens ({_named(long, lambda t: len(t.prompt_ids) + len(t.response_ids))} tokens of "
                             "prompt + response); the model cannot read them whole: generate shorter responses "
                             "(--max-new-tokens) or analyse with a model of a longer context")
    short = [t for t in traces if len(t.response_ids) <= config.band_lo]
    if short:
        raise ValueError(f"{len(short)} response(s) are not longer than the band's first look-ahead band_lo="
                         f"{config.band_lo} ({_named(short, lambda t: len(t.response_ids))} response tokens), so "
                         "FAI is undefined on every one of their tokens; pass a smaller band (--band LO,HI) or "
                         "longer responses")


def _named(traces: Sequence[Trace], size) -> str:
    """``trace 3: 171, trace 8: 204`` for the first :data:`SHOWN` traces (``...`` after)."""
    named = ", ".join(f"trace {t.index}: {size(t)}" for t in traces[:SHOWN])
    return named + (", ..." if len(traces) > SHOWN else "")


def analyse_batch(model: LoadedModel, traces: Sequence[Trace], config: RhythmConfig,
                  entropy: bool = True) -> list[TokenRhythm]:
    """The metrics of ``traces`` from one statistics capture of their left-padded token ids.

    ``TokenRhythm.prompt`` is a trace's row in this batch. Token entropy comes from the capture's
    own last hidden states (no second forward); ``entropy=False`` skips it
    (``TokenRhythm.entropy`` is then None).
    """
    forced = [teacher_forcing(trace) for trace in traces]
    ids, mask = left_pad([f.input_ids.tolist() for f in forced], model.tokenizer.pad_token_id or 0)
    starts = [f.response_rows.start for f in forced]
    with keep_final_hidden(model.hf) as hidden:
        record = capture_ids(model, ids, mask, rhythm_config_capture(config, starts))
    if len(hidden) != 1:  # no final norm to read: token entropy takes one more forward per trace
        return rhythm_metrics(record, starts, config, model=model if entropy else None)
    rhythms = rhythm_metrics(record, starts, config)
    if not entropy:
        return rhythms
    return [replace(r, entropy=entropy_from_hidden(model.hf, hidden[0][row, record.offset(row):], start))
            for row, (r, start) in enumerate(zip(rhythms, starts))]


def analyse_traces(model: LoadedModel, traces: Sequence[Trace], config: RhythmConfig = RhythmConfig(),
                   batch_size: int = 4, progress: bool = True) -> list[TokenRhythm]:
    """WAAD, FAI, receiver-head FAI, head roles and token entropy of every trace, in order.

    Args:
        model: the model whose tokenizer made the traces' ids (the model that generated them, or
            the one :func:`circuits.rhythm.traces.read_text_traces` tokenized them for).
        traces: the traces.
        config: window, band, head fractions and layers.
        batch_size: traces per capture (left padding; memory grows with batch x longest trace).
        progress: show a ``tqdm`` bar over traces.

    Returns:
        One :class:`~circuits.rhythm.metrics.TokenRhythm` per trace, in the order of ``traces``.

    Raises:
        ValueError: see :func:`check_traces`; ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    check_traces(traces, model.geometry.context_length, config)
    rhythms: list[TokenRhythm] = []
    with tqdm(total=len(traces), desc="rhythm", disable=not progress) as bar:
        for first in range(0, len(traces), batch_size):
            batch = traces[first:first + batch_size]
            rhythms += analyse_batch(model, batch, config)
            bar.update(len(batch))
    return rhythms
