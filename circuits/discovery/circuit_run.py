"""A circuit found by one method, ready to draw: behaviour, scores, the top-k heads and their SAE edges.

Context:
    The dashboard's circuits panel and notebooks ask one question: on the first ``n`` items of a
    task, which ``k`` heads does a method pick, how do they connect, and does the model do the
    task at all? :func:`circuit_run` answers it for any
    :class:`~circuits.discovery.contrast.ContrastSet`, :func:`run_circuit_panel` for a task by
    name; both return a :class:`CircuitRun`.

    - the circuit is the ``k`` heads of largest ``|score|`` (ties cut at exactly ``k``, in
      (layer, head) order);
    - edges join circuit heads by their SAE code co-occurrence
      (:func:`~circuits.discovery.sae_codes.pair_scores`: code pairs seen together on some clean
      prompt and on no corrupted one). The ``sae`` and ``sae-edge`` methods have those codes; for
      the others an SAE is trained only when ``sae_edges`` is asked for, and
      :attr:`CircuitRun.edge_source` says which source the edges come from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.discovery.behaviour import TaskBehaviour, task_behaviour
from circuits.discovery.contrast import ContrastSet
from circuits.discovery.methods import DiscoveryOptions, discover, method
from circuits.discovery.patching import HeadScores
from circuits.discovery.sae_codes import pair_scores
from circuits.discovery.sae_method import SAE_METHODS, sae_discovery
from circuits.discovery.tasks import load_task
from probe.errors import InputError
from probe.models import LoadedModel

Head = tuple[int, int]


@dataclass(frozen=True)
class CircuitEdge:
    """Two circuit heads and how many SAE code pairs they show together on clean prompts only."""

    source: Head
    target: Head
    weight: int


@dataclass(frozen=True)
class CircuitRun:
    """What the panel shows for one (task, method, items, k).

    Attributes:
        task: the task's name.
        method: the discovery method's name.
        model: the model's name.
        contrast: the items the method ran on.
        task_summary: the task's items kept and dropped for this tokenizer.
        behaviour: the model's accuracy and logit differences on ``contrast``.
        scores: the method's ``[layer, head]`` scores.
        circuit: the ``k`` heads of largest ``|score|``, largest first.
        edges: circuit head pairs with a positive SAE co-occurrence count (empty without SAE codes).
        edge_source: ``"method"`` (the sae methods' own SAE), ``"extra"`` (an SAE trained for the
            edges) or ``"none"``.
    """

    task: str
    method: str
    model: str
    contrast: ContrastSet
    task_summary: str
    behaviour: TaskBehaviour
    scores: HeadScores
    circuit: tuple[Head, ...]
    edges: tuple[CircuitEdge, ...]
    edge_source: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.scores.scores.shape)

    def score(self, head: Head) -> float:
        return float(self.scores.scores[head])


def top_heads(scores: Float[Tensor, "layer head"], k: int) -> tuple[Head, ...]:
    """The ``k`` heads of largest ``|score|``, largest first; ties keep (layer, head) order, so
    exactly ``k`` come back (unlike :func:`~circuits.discovery.ground_truth.circuit_from_scores`,
    which lets ties at the cut in)."""
    n_heads = scores.shape[1]
    order = torch.sort(scores.abs().flatten(), descending=True, stable=True).indices[:k]
    return tuple((int(i) // n_heads, int(i) % n_heads) for i in order)


def circuit_edges(circuit: tuple[Head, ...], pairs: Int[Tensor, "head head"], n_heads: int) -> tuple[CircuitEdge, ...]:
    """Each unordered pair of circuit heads whose co-occurrence count (``pairs``, indexed by
    ``layer * n_heads + head``; symmetric) is positive."""
    edges = []
    for i, first in enumerate(circuit):
        for second in circuit[i + 1 :]:
            weight = int(pairs[first[0] * n_heads + first[1], second[0] * n_heads + second[1]])
            if weight > 0:
                edges.append(CircuitEdge(first, second, weight))
    return tuple(edges)


def scores_and_codes(model, contrast: ContrastSet, method_name: str, options: DiscoveryOptions,
                     sae_edges: bool) -> tuple[HeadScores, Int[Tensor, "head head"] | None, str]:
    """The method's scores, the SAE co-occurrence counts where there are codes, and their source.

    The sae methods are run through :func:`sae_discovery` directly (the codes come with the
    scores); another method runs as registered, and the SAE is trained besides when ``sae_edges``.
    """
    if method_name in SAE_METHODS:
        found = sae_discovery(model, contrast, options.sae, score=SAE_METHODS[method_name], batch_size=options.batch_size)
        return found.scores, _pairs(found), "method"
    scores = discover(model, contrast, method_name, options)
    if not sae_edges:
        return scores, None, "none"
    found = sae_discovery(model, contrast, options.sae, batch_size=options.batch_size)
    return scores, _pairs(found), "extra"


def _pairs(found) -> Int[Tensor, "head head"]:
    return pair_scores(found.positive_codes, found.negative_codes, int(found.sae.cfg.d_sae))


def circuit_run(model: LoadedModel, contrast: ContrastSet, method_name: str, k: int, *, sae_edges: bool = False,
                options: DiscoveryOptions | None = None, task_summary: str = "") -> CircuitRun:
    """Behaviour, scores, circuit and edges of ``method_name`` on ``contrast`` (module docstring).

    Raises:
        InputError: an unknown method, ``k`` outside 1..heads, or what the method refuses.
    """
    options = options or DiscoveryOptions()
    method(method_name)  # an unknown name fails here, before any forward
    n_layers, n_heads = model.geometry.n_layers, model.geometry.n_heads
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_layers * n_heads:
        raise InputError(f"the circuit size k must be a whole number from 1 to {n_layers * n_heads} (the model's "
                         f"heads); got {k!r}")
    behaviour = task_behaviour(model, contrast, batch_size=options.batch_size)
    scores, pairs, source = scores_and_codes(model, contrast, method_name, options, sae_edges)
    circuit = top_heads(scores.scores, k)
    edges = circuit_edges(circuit, pairs, n_heads) if pairs is not None else ()
    return CircuitRun(task=contrast.task, method=method_name, model=model.name, contrast=contrast,
                      task_summary=task_summary, behaviour=behaviour, scores=scores, circuit=circuit, edges=edges,
                      edge_source=source)


def task_items(model: LoadedModel, task: str, n_items: int) -> tuple[ContrastSet, str]:
    """The first ``n_items`` items of ``task`` tokenized for ``model``, and the kept/dropped summary."""
    loaded = load_task(task, model.tokenizer)
    contrast = loaded.contrast.first(n_items)
    summary = loaded.summary()
    if len(contrast) < n_items:
        summary += f"; all {len(contrast)} used (fewer than the {n_items} asked for)"
    return contrast, summary


def run_circuit_panel(model: LoadedModel, task: str, method_name: str, n_items: int, k: int, *,
                      sae_edges: bool = False, options: DiscoveryOptions | None = None) -> CircuitRun:
    """:func:`circuit_run` on the first ``n_items`` items of the registered task ``task``.

    Raises:
        InputError: an unknown task or method, a task no item of which fits the tokenizer, a bad ``k``.
    """
    method(method_name)
    contrast, summary = task_items(model, task, n_items)
    return circuit_run(model, contrast, method_name, k, sae_edges=sae_edges, options=options, task_summary=summary)
