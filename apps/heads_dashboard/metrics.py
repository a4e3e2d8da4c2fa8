"""The per-head metrics the heatmap can show: a registry of ``(record, layer, prompt) -> [head]``.

Context:
    Each metric reduces one layer of a record to one number per head. Adding a metric is one
    :func:`register_metric` call; analysis packages that land later (sinks, WAAD/FAI roles,
    circuit scores) expose ``register_dashboard_metrics(register)`` in a module listed in
    :data:`PLUGIN_MODULES` and show up in the selector without touching the app.

Built-in definitions (documented choices):
    first-token share: mean attention to the first token over queries 1.. (query 0 is left out:
        its value is trivially 1); :func:`probe.summary.first_token_share`.
    ACT sink score: the largest ``received_mean`` (mean attention from the queries that can see
        the key; ACT's criterion) over keys other than the first; keys seen by fewer than
        ``MIN_VISIBLE`` queries are skipped, as in :func:`probe.summary.top_sinks`, because the
        last keys' means rest on one or two rows.
    mean entropy: mean over queries 1.. of the entropy (nats) of each attention row.
    mean distance: mean over queries 1.. of the attention-weighted query-key distance (tokens).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from probe.capture.record import AttentionRecord
from probe.summary import first_token_share

MetricFn = Callable[[AttentionRecord, int, int], Float[Tensor, "head"]]
MIN_VISIBLE = 4
PLUGIN_MODULES = ("circuits.sinks.dashboard", "circuits.roles.dashboard", "circuits.dashboard")


@dataclass(frozen=True)
class Metric:
    """A per-head metric.

    Attributes:
        name: registry key (used in URLs and the session store).
        label: what the selector and the colour bar say.
        compute: ``(record, layer, prompt) -> [head]``.
        colorscale: plotly colour scale suited to the metric's range.
    """

    name: str
    label: str
    compute: MetricFn
    colorscale: str = "Viridis"


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, overwrite: bool = False) -> None:
    """Add ``metric`` to the selector; a second metric of the same name is an error."""
    if metric.name in _METRICS and not overwrite:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _METRICS[metric.name] = metric


def get_metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {sorted(_METRICS)}") from None


def registered_metrics() -> list[Metric]:
    return list(_METRICS.values())


def metric_grid(record: AttentionRecord, name: str, prompt: int = 0) -> Float[Tensor, "layer head"]:
    """One metric for every recorded layer, stacked ``[layer, head]`` (rows follow ``record.layers``)."""
    metric = get_metric(name)
    return torch.stack([metric.compute(record, layer, prompt).float() for layer in record.layers])


def load_plugin_metrics(modules: tuple[str, ...] = PLUGIN_MODULES) -> list[str]:
    """Import analysis modules that offer dashboard metrics; returns those found."""
    found = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that analysis has not landed in this installation
            raise
        module.register_dashboard_metrics(register_metric)
        found.append(name)
    return found


def _query_mean(values: Float[Tensor, "head q"]) -> Float[Tensor, "head"]:
    """Mean over queries 1.. (query 0 attends only to itself); NaN for one-token prompts."""
    rest = values[:, 1:]
    return rest.mean(dim=-1) if rest.shape[-1] else torch.full((values.shape[0],), float("nan"))


def act_sink_score(record: AttentionRecord, layer: int, prompt: int = 0) -> Float[Tensor, "head"]:
    score = record.stat(layer, "received_mean", prompt)  # [head, key]
    visible = record.stat(layer, "visible_count", prompt)  # [key]
    excluded = visible < MIN_VISIBLE
    excluded[0] = True
    best = score.masked_fill(excluded, float("-inf")).max(dim=-1).values
    return best.masked_fill(best == float("-inf"), float("nan"))


def mean_entropy(record: AttentionRecord, layer: int, prompt: int = 0) -> Float[Tensor, "head"]:
    return _query_mean(record.stat(layer, "entropy", prompt))


def mean_distance(record: AttentionRecord, layer: int, prompt: int = 0) -> Float[Tensor, "head"]:
    return _query_mean(record.stat(layer, "distance", prompt))


register_metric(Metric("first_token_share", "first-token share", first_token_share))
register_metric(Metric("act_sink_score", "ACT sink score (max received_mean, keys 1..)", act_sink_score))
register_metric(Metric("mean_entropy", "mean entropy (nats)", mean_entropy, colorscale="Cividis"))
register_metric(Metric("mean_distance", "mean distance (tokens)", mean_distance, colorscale="Cividis"))
