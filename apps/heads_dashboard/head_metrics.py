"""Token-conditioned head metrics: the attention between a chosen query and key, per head.

Context:
    The heatmap's built-in metrics (:mod:`.metrics`) summarise a whole pattern. A researcher
    hunting for, say, name movers asks a narrower question: *how much does the last token
    attend to " Mary"?*, for every head at once. :func:`attention_between` answers it for one
    layer (the registry's ``(record, layer, prompt) -> [head]`` shape once the two positions are
    fixed), :func:`conditioned_metric` wraps it as a :class:`~.metrics.Metric` for the heatmap,
    and :func:`conditioned_grid` gives the layers x heads matrix directly.

    For the selected head, :func:`attention_from` (the query's row: where the token looks) and
    :func:`attention_to` (the key's column: who looks at the token) give one value per token for
    shading the prompt's text on hover; positions the causal mask hides are NaN (drawn blank),
    not 0.

Positions:
    0 is the prompt's first token; negative positions count from the end (-1: the last token,
    the default query). A key after the query is refused: a causal model's query sees keys
    ``0..query`` only. These views need full patterns (records captured in pattern mode, or the
    rows of a windowed capture, :mod:`probe.capture.window`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from apps.heads_dashboard.figures import token_colours
from apps.heads_dashboard.metrics import Metric
from probe.capture.record import AttentionRecord
from probe.errors import InputError


def resolve_position(position: int, n_tokens: int, what: str) -> int:
    """``position`` as an index ``0..n_tokens-1`` (negative counts from the end), or one InputError."""
    if isinstance(position, bool) or not isinstance(position, int):
        raise InputError(f"the {what} position must be an integer, got {position!r}")
    if not -n_tokens <= position < n_tokens:
        raise InputError(f"the {what} position {position} does not exist: the prompt has {n_tokens} tokens "
                         f"(0..{n_tokens - 1}, or -1..-{n_tokens} from the end)")
    return position % n_tokens


def query_key(record: AttentionRecord, prompt: int, query: int, key: int) -> tuple[int, int]:
    """Both positions resolved against prompt ``prompt``; a key after the query is refused."""
    n = len(record.tokens[prompt])
    q, k = resolve_position(query, n, "query"), resolve_position(key, n, "key")
    if k > q:
        raise InputError(f"key {k} comes after query {q}: a causal model's query {q} sees keys 0..{q}; "
                         "pick an earlier key or a later query")
    return q, k


def _pattern(record: AttentionRecord, layer: int, prompt: int) -> Float[Tensor, "head q k"]:
    if layer not in record.patterns:
        raise InputError("token-conditioned views need full patterns, and this record holds statistics only "
                         "(a long input): use a windowed pattern over the queries you want")
    return record.pattern(layer, prompt)


def attention_between(record: AttentionRecord, layer: int, prompt: int, query: int, key: int) -> Float[Tensor, " head"]:
    """Per head of ``layer``, the attention query ``query`` pays to key ``key``."""
    q, k = query_key(record, prompt, query, key)
    return _pattern(record, layer, prompt)[:, q, k]


def conditioned_grid(record: AttentionRecord, prompt: int, query: int, key: int) -> Float[Tensor, "layer head"]:
    """:func:`attention_between` for every recorded layer (rows follow ``record.layers``)."""
    return torch.stack([attention_between(record, layer, prompt, query, key).float() for layer in record.layers])


def conditioned_metric(query: int, key: int, tokens: list[str] | None = None) -> Metric:
    """A heatmap metric for one (query, key) pair; ``tokens`` (the prompt's) only name it.

    Its name encodes the pair (``attention_q-1_k3``), so two pairs never share a cache entry
    or a URL; it is built per selection, not registered.
    """

    def compute(record: AttentionRecord, layer: int, prompt: int = 0) -> Float[Tensor, " head"]:
        return attention_between(record, layer, prompt, query, key)

    if tokens:
        n = len(tokens)
        q, k = resolve_position(query, n, "query"), resolve_position(key, n, "key")
        label = f"attention {tokens[q]!r} ({q}) → {tokens[k]!r} ({k})"
    else:
        label = f"attention query {query} → key {key}"
    return Metric(name=f"attention_q{query}_k{key}", label=label, compute=compute, colorscale="Viridis")


def attention_from(record: AttentionRecord, prompt: int, layer: int, head: int, query: int) -> Float[Tensor, " k"]:
    """Where token ``query`` looks with head (``layer``, ``head``): its row; keys after it are NaN."""
    pattern = _pattern(record, layer, prompt)
    q = resolve_position(query, pattern.shape[-1], "query")
    row = pattern[head, q].clone().float()
    row[q + 1:] = float("nan")
    return row


def attention_to(record: AttentionRecord, prompt: int, layer: int, head: int, key: int) -> Float[Tensor, " q"]:
    """Who looks at token ``key`` with head (``layer``, ``head``): its column; queries before it are NaN."""
    pattern = _pattern(record, layer, prompt)
    k = resolve_position(key, pattern.shape[-1], "key")
    column = pattern[head, :, k].clone().float()
    column[:k] = float("nan")
    return column


SHADINGS = {"from": attention_from, "to": attention_to}


def hover_shading(record: AttentionRecord, prompt: int, layer: int, head: int, token: int,
                  direction: str = "from") -> list[tuple[str, str, float]]:
    """The prompt's tokens shaded by attention from (``"from"``) or to (``"to"``) token ``token``:
    ``(shown token, css colour, value)`` triples as :func:`.figures.token_colours` makes them
    (hidden positions have value NaN and no colour)."""
    if direction not in SHADINGS:
        raise InputError(f"shading direction must be 'from' or 'to', got {direction!r}")
    values = SHADINGS[direction](record, prompt, layer, head, token)
    shaded = token_colours(record.tokens[prompt], values)
    return [(text, colour if raw == raw else "transparent", float(raw))
            for (text, colour, _), raw in zip(shaded, values.tolist())]
