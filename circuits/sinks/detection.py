"""Sink detection over one input or a data set: ACT's criterion, first-token share, token types.

Definitions:
    ACT score of key ``j`` in a head (Yu et al. 2024): ``s_j = sum_i A[i, j] / visible(j)``, the
    mean attention ``j`` receives from the queries that can see it (probe's ``received_mean``).
    A key is a sink when ``s_j > tau`` (ACT: 0.1).

    first-token sink: ``s_0 > tau``. A head "has a first-token sink" when it does on at least
    half of the prompts; :attr:`SinkReport.first_token_head_share` is the share of such heads.

    F-Attn (gated-attention paper, workbench form): mean over queries ``t >= 1`` of ``A[t, 0]``
    (query 0 is left out: its value is trivially 1), per head, averaged over prompts.

Statistical edge at the last positions (documented choice):
    ``visible(j) = N - j`` under a causal mask, so the score of the last key is the last query's
    self-attention alone, and the last few keys' scores are means over a handful of rows; raw
    ACT flags them as sinks often. Non-initial sinks are therefore counted only for keys seen by
    at least ``min_visible`` queries (default 8, i.e. the last 7 positions are never counted).
    The number of raw sinks this guard removes is reported as ``edge_excluded``. The first
    token is always seen by every query, so the guard never touches it. ACT calibration itself
    keeps ACT's raw rule unless ``min_visible`` is passed to it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuits.sinks.token_types import TOKEN_TYPES, token_type
from probe.capture import CaptureConfig, capture

STATS = CaptureConfig(mode="stats", entropy=False, distance=False, first_token=True)


@dataclass(frozen=True)
class SinkReport:
    """Sink statistics of one model over a set of prompts.

    Attributes:
        model: model name.
        n_prompts: prompts analysed.
        tau, min_visible: the sink rule (see the module docstring).
        first_token_rate: ``[layer][head]`` share of prompts on which token 0 is a sink.
        f_attn: ``[layer][head]`` mean attention to token 0 from queries ``t >= 1``.
        nonfirst_rate: ``[layer][head]`` mean number of non-initial sinks per prompt.
        token_counts: sink token text -> (prompt, layer, head) sink events (non-initial only).
        type_counts: token type -> sink events (``first`` included).
        layer_type_counts: ``[layer]`` token type -> sink events.
        edge_excluded: raw non-initial sinks left out by the ``min_visible`` guard.
    """

    model: str
    n_prompts: int
    tau: float
    min_visible: int
    first_token_rate: list[list[float]]
    f_attn: list[list[float]]
    nonfirst_rate: list[list[float]]
    token_counts: dict[str, int]
    type_counts: dict[str, int]
    layer_type_counts: list[dict[str, int]]
    edge_excluded: int
    massive: list[dict] = field(default_factory=list)

    @property
    def first_token_head_share(self) -> float:
        """Share of heads with a first-token sink on at least half of the prompts."""
        rates = torch.tensor(self.first_token_rate)
        return float((rates >= 0.5).float().mean())

    def top_tokens(self, k: int = 10) -> list[tuple[str, int]]:
        """The most common non-initial sink tokens."""
        return Counter(self.token_counts).most_common(k)

    def to_records(self) -> list[dict]:
        """JSON-lines records: one summary, then one per (layer, head)."""
        summary = {"kind": "summary", "model": self.model, "n_prompts": self.n_prompts, "tau": self.tau,
                   "min_visible": self.min_visible, "first_token_head_share": self.first_token_head_share,
                   "top_tokens": self.top_tokens(20), "type_counts": self.type_counts,
                   "edge_excluded": self.edge_excluded, "massive": self.massive}
        heads = [{"kind": "head", "layer": l, "head": h, "first_token_rate": self.first_token_rate[l][h],
                  "f_attn": self.f_attn[l][h], "nonfirst_rate": self.nonfirst_rate[l][h]}
                 for l in range(len(self.f_attn)) for h in range(len(self.f_attn[l]))]
        return [summary, *heads]


def sink_sets(
    received_mean: Float[Tensor, "head key"], visible_count: Float[Tensor, " key"], tau: float, min_visible: int
) -> tuple[Bool[Tensor, "head key"], Bool[Tensor, "head key"]]:
    """Raw ACT sinks (``s_j > tau``) and the guarded ones (also ``visible(j) >= min_visible``)."""
    raw = received_mean > tau
    return raw, raw & (visible_count[None, :] >= min_visible)


@dataclass
class _Tally:
    n_layers: int
    n_heads: int
    first: Tensor = None
    f_attn: Tensor = None
    nonfirst: Tensor = None
    tokens: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)
    layer_types: list = None
    edge: int = 0
    prompts: int = 0

    def __post_init__(self) -> None:
        shape = (self.n_layers, self.n_heads)
        self.first, self.f_attn, self.nonfirst = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
        self.layer_types = [Counter() for _ in range(self.n_layers)]

    def add(self, layer: int, tokens: list[str], received, visible, first_token, tau, min_visible) -> None:
        raw, guarded = sink_sets(received, visible, tau, min_visible)
        self.first[layer] += raw[:, 0].float()
        self.f_attn[layer] += first_token[:, 1:].nanmean(-1).nan_to_num(0.0) if first_token.shape[-1] > 1 else 0.0
        self.nonfirst[layer] += guarded[:, 1:].sum(-1).float()
        self.edge += int((raw & ~guarded)[:, 1:].sum())
        self.types["first"] += int(raw[:, 0].sum())
        self.layer_types[layer]["first"] += int(raw[:, 0].sum())
        for position in torch.nonzero(guarded[:, 1:].any(0)).flatten().tolist():
            count = int(guarded[:, position + 1].sum())
            kind = token_type(tokens[position + 1], position + 1)
            self.tokens[tokens[position + 1]] += count
            self.types[kind] += count
            self.layer_types[layer][kind] += count


def sink_report(model, prompts: Sequence[str] | str, tau: float = 0.1, min_visible: int = 8,
                batch_size: int = 8, massive: bool = True) -> SinkReport:
    """Detect sinks in every layer and head of ``model`` over ``prompts``."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must lie in (0, 1), got {tau}; ACT uses 0.1")
    if min_visible < 1:
        raise ValueError(f"min_visible must be >= 1, got {min_visible}")
    geometry = model.geometry
    tally = _Tally(geometry.n_layers, geometry.n_heads)
    for start in range(0, len(prompts), batch_size):
        record = capture(model, prompts[start : start + batch_size], STATS)
        for p in range(record.batch_size):
            tally.prompts += 1
            for layer in record.layers:
                tally.add(layer, record.tokens[p], record.stat(layer, "received_mean", p),
                          record.stat(layer, "visible_count", p), record.stat(layer, "first_token", p),
                          tau, min_visible)
    n = max(tally.prompts, 1)
    return SinkReport(
        model=model.name, n_prompts=tally.prompts, tau=tau, min_visible=min_visible,
        first_token_rate=(tally.first / n).tolist(), f_attn=(tally.f_attn / n).tolist(),
        nonfirst_rate=(tally.nonfirst / n).tolist(), token_counts=dict(tally.tokens),
        type_counts={t: tally.types.get(t, 0) for t in TOKEN_TYPES},
        layer_type_counts=[{t: c.get(t, 0) for t in TOKEN_TYPES} for c in tally.layer_types],
        edge_excluded=tally.edge, massive=_massive_summary(model, prompts[:8]) if massive else [],
    )


def _massive_summary(model, prompts: Sequence[str]) -> list[dict]:
    """Per layer: the largest activation over ``prompts`` and the type of token carrying it."""
    from circuits.sinks.massive import massive_activations

    best: dict[int, dict] = {}
    for prompt in prompts:
        for row in massive_activations(model, prompt):
            if row.layer not in best or row.value > best[row.layer]["value"]:
                best[row.layer] = {"layer": row.layer, "value": row.value, "token": row.token,
                                   "position": row.position, "dim": row.dim,
                                   "token_type": token_type(row.token, row.position),
                                   "ratio_to_median": row.ratio_to_median}
    return [best[l] for l in sorted(best)]


def format_report(report: SinkReport, top: int = 10) -> str:
    """A readable summary: first-token share, top non-initial sinks, token types, massive activations."""
    lines = [f"model {report.model}: {report.n_prompts} prompt(s), tau={report.tau}, min_visible={report.min_visible}",
             f"heads with a first-token sink (>= half the prompts): {100 * report.first_token_head_share:.1f}%",
             f"mean F-Attn over heads: {float(torch.tensor(report.f_attn).mean()):.3f}",
             "top non-initial sink tokens: " + ", ".join(f"{t!r} x{c}" for t, c in report.top_tokens(top)),
             "sink events by token type: " + ", ".join(f"{k}={v}" for k, v in report.type_counts.items()),
             f"raw non-initial sinks left out by the last-position guard: {report.edge_excluded}"]
    if report.massive:
        peak = max(report.massive, key=lambda r: r["value"])
        lines.append(f"massive activation: max |h| = {peak['value']:.1f} at layer {peak['layer']}, "
                     f"token {peak['token']!r} (pos {peak['position']}, dim {peak['dim']}, "
                     f"{peak['ratio_to_median']:.0f}x the layer median)")
    return "\n".join(lines)
