"""ACT's offline head search: calibrate one head at a time, keep the heads that help.

Context:
    ACT (Yu et al. 2024, ``scripts/calibration.sh`` in GATECH-EIC/ACT) calibrates each
    (layer, head) alone, scores a calibration set, and keeps the heads whose accuracy beats the
    uncalibrated model; the kept heads are then calibrated together. This module does the same
    on any task items, with three savings that leave the result unchanged:

    - every head is scored on the same batches, all options of an item in one row when they are
      single tokens (:mod:`circuits.evaluation.scoring`);
    - layers before the calibrated one are run once per batch and their output reused
      (:mod:`circuits.sinks.partial`);
    - a head with no sink under the rule on any calibration row is not run: calibration is the
      identity there, so its score is the baseline's (``"skipped": true`` in the cache).

    Each finished head is appended to a JSON-lines cache (:mod:`circuits.sinks.cache`); a killed
    search continues where it stopped.

Deviation: ACT's selection is by hand from a log of accuracies; here it is the rule
``accuracy > baseline + min_gain``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from circuits.evaluation.scoring import RowBatch, batch_rows, build_rows, collect, correct, row_scores
from circuits.evaluation.tasks import Item
from circuits.sinks.cache import append_record, start_cache
from circuits.sinks.partial import hidden_inputs, logits_from_layer
from probe.attention.reference import select_sinks
from probe.attention.spec import SinkRule
from probe.capture.config import CaptureConfig
from probe.capture.hf import recording
from probe.capture.inputs import check_heads, check_layers
from probe.models.families import HeadGeometry
from probe.edits import act_calibration, apply_edits


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a head search.

    Attributes:
        tau: ACT's sink threshold on the mean received attention (ACT: 0.1), in (0, 1).
        beta: factor applied to sink attention (ACT: 0.4), in [0, 1].
        min_visible: keys seen by fewer queries are never sinks (1 = ACT's raw criterion).
        layers: layers to search (None: all).
        heads: heads to search in each layer (None: all).
        batch_size: rows per forward.
        min_gain: a head is kept when its calibration accuracy exceeds the baseline's by more
            than this (0: any gain, as in ACT).
    """

    tau: float = 0.1
    beta: float = 0.4
    min_visible: int = 1
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    batch_size: int = 8
    min_gain: float = 0.0

    def __post_init__(self) -> None:
        SinkRule(tau=self.tau, min_visible=self.min_visible)  # validates tau and min_visible
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}; ACT uses 0.4")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @property
    def rule(self) -> SinkRule:
        return SinkRule(tau=self.tau, min_visible=self.min_visible)

    def edit(self, heads: Sequence[tuple[int, int]]) -> list:
        """ACT edits calibrating exactly ``heads`` (one edit per layer)."""
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        return [act_calibration(self.tau, self.beta, layers=[l], heads=h, min_visible=self.min_visible)
                for l, h in sorted(by_layer.items())]


@dataclass(frozen=True)
class SearchResult:
    """Per-head calibration scores and the heads kept.

    Attributes:
        baseline: accuracy and mean option log-probability of the answer without calibration.
        heads: one record per searched head (``layer, head, accuracy, logprob, skipped``).
        selected: heads whose accuracy beats the baseline by more than ``min_gain``.
        seconds: time spent scoring heads in this run (cached heads cost nothing).
        resumed: heads read from the cache rather than scored in this run.
    """

    baseline: dict
    heads: tuple[dict, ...]
    selected: tuple[tuple[int, int], ...]
    seconds: float
    resumed: int


def search_space(config: SearchConfig, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """All (layer, head) pairs the search covers, in order.

    Layers are checked before negative ones are counted from the end, so an index past the
    model is an error, never another layer."""
    geometry = HeadGeometry(n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_heads, head_dim=1, context_length=None)
    layers = check_layers(config.layers, geometry)
    heads = check_heads(config.heads, geometry)
    return [(layer, head) for layer in layers for head in heads]


def random_heads(space: Sequence[tuple[int, int]], k: int, seed: int) -> list[tuple[int, int]]:
    """``k`` heads drawn uniformly without replacement: the control for a searched set."""
    return sorted(random.Random(seed).sample(list(space), min(k, len(space))))


def summarise(table: list[list[float]], items: Sequence[Item]) -> dict:
    """Accuracy and mean log-probability of the answer among the options."""
    hits = correct(table, items)
    logps = [torch.log_softmax(torch.tensor(s), 0)[item.answer].item() for s, item in zip(table, items)]
    return {"accuracy": sum(hits) / len(hits), "logprob": sum(logps) / len(logps), "n": len(hits)}


def search_heads(model, items: Sequence[Item], config: SearchConfig = SearchConfig(),
                 cache: str | Path | None = None, progress: bool = True) -> SearchResult:
    """Score ACT calibration of each head alone on ``items``; resumable through ``cache``."""
    if not items:
        raise ValueError("head search needs at least one calibration item")
    geometry = model.geometry
    space = search_space(config, geometry.n_layers, geometry.n_heads)
    header = _header(model, items, config)
    done = {(r["layer"], r["head"]): r for r in start_cache(Path(cache), header)} if cache else {}
    todo = [h for h in space if h not in done]
    baseline, hidden, has_sink = _baseline(model, items, config, sorted({l for l, _ in todo}))
    records, start = [done[h] for h in space if h in done], time.perf_counter()  # cached heads elsewhere are ignored
    for layer, head in tqdm(todo, desc="head search", disable=not progress):
        record = _score_head(model, items, config, hidden, layer, head, baseline, has_sink)
        if cache:
            append_record(Path(cache), record)
        records.append(record)
    records.sort(key=lambda r: (r["layer"], r["head"]))
    selected = tuple((r["layer"], r["head"]) for r in records
                     if r["accuracy"] > baseline["accuracy"] + config.min_gain)
    return SearchResult(baseline, tuple(records), selected, time.perf_counter() - start, len(space) - len(todo))


def _baseline(model, items, config, layers):
    """Baseline scores, cached layer inputs, and which heads have a sink on some row."""
    rows = build_rows(model.tokenizer, items, model.geometry.context_length)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    batches = batch_rows(rows, config.batch_size, pad)
    stats = CaptureConfig(received=True, entropy=False, distance=False, first_token=False)
    scores, hidden, has_sink = [], [], {}
    for batch in batches:
        with recording(model.hf, stats, tuple(layers), batch.attention_mask) as recorder:
            logits, inputs = hidden_inputs(model, batch)
        scores += list(row_scores(batch, logits))
        hidden.append((batch, {l: inputs[l] for l in layers}))
        for layer in layers:
            got = recorder.prefill(layer)["stats"]
            sinks = select_sinks(got["received_mean"], got["visible_count"], config.rule)  # [batch, head, key]
            has_sink[layer] = has_sink.get(layer, False) | sinks.any(dim=-1).any(dim=0)
    return summarise(collect(iter(scores), items), items), hidden, has_sink


def _score_head(model, items, config, hidden, layer, head, baseline, has_sink) -> dict:
    start = time.perf_counter()
    if not bool(has_sink[layer][head]):
        return {"layer": layer, "head": head, **baseline, "skipped": True, "seconds": 0.0}
    scores = []
    with apply_edits(model, config.edit([(layer, head)])):
        for batch, inputs in hidden:
            scores += list(row_scores(batch, logits_from_layer(model, batch, layer, inputs[layer])))
    summary = summarise(collect(iter(scores), items), items)
    return {"layer": layer, "head": head, **summary, "skipped": False,
            "seconds": round(time.perf_counter() - start, 3)}


def _header(model, items, config) -> dict:
    digest = hashlib.sha256(json.dumps([[i.prompt, i.options, i.answer] for i in items]).encode()).hexdigest()
    settings = asdict(config)
    settings.pop("batch_size")  # does not change results
    settings.pop("min_gain")  # applied after scoring
    settings.pop("layers")  # per-head results do not depend on which other heads are searched
    settings.pop("heads")
    return {"model": model.name, "items": digest, "n_items": len(items), **settings}
