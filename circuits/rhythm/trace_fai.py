"""FAI per trace for the perturbation test: computed, or read from ``headscope rhythm analyse``.

Context:
    :mod:`circuits.rhythm.perturb` chooses its positions by FAI (Li et al., arXiv 2510.13554,
    Def. 4.2). :func:`compute_fai` runs the statistics capture of ``headscope rhythm analyse``
    (:func:`circuits.rhythm.analysis.analyse_batch`) without token entropy; :func:`read_analysis`
    and :func:`analysis_fai` reuse the per-token FAI that command wrote, matched to the traces by
    file and index and checked against their lengths, so a run does not capture twice.

Example:
    >>> fais = compute_fai(model, traces, RhythmConfig(band_hi=None))       # section 4: to the end
    >>> fais = analysis_fai(read_analysis("rhythm.jsonl"), traces, ["traces.jsonl"] * len(traces))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from jaxtyping import Float
from tqdm.auto import tqdm

from circuits.rhythm.analysis import analyse_batch, check_traces
from circuits.rhythm.metrics import RhythmConfig
from circuits.rhythm.problems import TraceInputError, json_lines
from circuits.rhythm.traces import Trace
from probe.models import LoadedModel


def compute_fai(model: LoadedModel, traces: Sequence[Trace], config: RhythmConfig, batch_size: int = 4,
                progress: bool = True) -> list[Float[np.ndarray, " response"]]:
    """FAI of every trace (NaN where its band is empty), as ``headscope rhythm analyse`` computes
    it but without token entropy (one forward per trace less).

    Raises:
        ValueError: see :func:`circuits.rhythm.analysis.check_traces`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    check_traces(traces, model.geometry.context_length, config)
    fais = []
    with tqdm(total=len(traces), desc="FAI", disable=not progress) as bar:
        for first in range(0, len(traces), batch_size):
            batch = traces[first:first + batch_size]
            fais += [r.fai.double().cpu().numpy() for r in analyse_batch(model, batch, config, entropy=False)]
            bar.update(len(batch))
    return fais


ANALYSIS_EXAMPLE = "the output of `headscope rhythm analyse --out FILE`"


@dataclass(frozen=True)
class Analysis:
    """The trace lines of a ``headscope rhythm analyse`` file and the settings on its last line."""

    path: Path
    records: tuple[dict, ...]
    settings: dict | None


def read_analysis(path: str | Path) -> Analysis:
    """The trace lines (and settings) of an analysis file; no model needed.

    Raises:
        TraceInputError: a missing file, a line that is not a JSON object, no trace line, or a
            trace line without ``index``, ``source``, ``response_start`` and a ``fai`` list.
    """
    path = Path(path)
    records, settings = [], None
    for number, record in json_lines(path, ANALYSIS_EXAMPLE):
        if record.get("kind") == "couplings":
            settings = record.get("settings")
        elif record.get("kind") == "trace":
            if not isinstance(record.get("fai"), list) or not {"index", "source", "response_start"} <= set(record):
                raise TraceInputError(f"{path} line {number}: a trace line without per-token \"fai\", \"index\", "
                                      f"\"source\" and \"response_start\"; pass {ANALYSIS_EXAMPLE}")
            records.append(record)
    if not records:
        raise TraceInputError(f"{path} holds no trace lines; pass {ANALYSIS_EXAMPLE}, or leave out --analysis to "
                              "compute FAI here")
    return Analysis(path, tuple(records), settings)


def analysis_fai(analysis: Analysis, traces: Sequence[Trace], sources: Sequence[str]) -> list[np.ndarray]:
    """Per trace, the FAI its analysis line holds (None as NaN).

    A trace's line has the trace's ``index`` and a ``source`` naming the same file (the same
    resolved path, else the same file name: the analysis may have run from another folder); its
    response start and length must be the trace's, else it was made from other traces.

    Raises:
        ValueError: a trace with no line, or a line that does not fit its trace.
    """
    fais = []
    for trace, source in zip(traces, sources):
        found = [r for r in analysis.records if r["index"] == trace.index and _same_file(r["source"], source)]
        fix = "run `headscope rhythm analyse` on the same traces, or leave out --analysis to compute FAI here"
        if not found:
            raise ValueError(f"{analysis.path} has no line for trace {trace.index} of {source}; {fix}")
        record = found[-1]
        if record["response_start"] != len(trace.prompt_ids) or len(record["fai"]) != len(trace.response_ids):
            raise ValueError(f"{analysis.path}: trace {trace.index} of {source} has {len(record['fai'])} FAI values "
                             f"from position {record['response_start']}, but the trace has {len(trace.response_ids)} "
                             f"response tokens from position {len(trace.prompt_ids)} (other traces, or another "
                             f"tokenizer); {fix}")
        fais.append(np.array([math.nan if v is None else float(v) for v in record["fai"]], dtype=float))
    return fais


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve() or Path(a).name == Path(b).name
