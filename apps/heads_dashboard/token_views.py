"""Views for long inputs: hide the first token, guard summaries against few-query averages, windows.

Context:
    - **Hide the first token**: most heads park most of their attention on the first token (the
      attention sink), which flattens every other colour. :func:`hide_first_token` drops the
      first key column (and the first query row, whose only key it is) from what is drawn; the
      values are left as they are (not renormalised), so a cell still reads as the probability
      the model gave it. :func:`hide_first_key` does the same for per-key summaries.
    - **Few-query guard**: ``received_mean[k]`` is a mean over the ``visible_count[k]`` queries
      that can see key ``k``, ``n - k`` of them under a causal mask: the last keys' means rest on
      one or two rows and look like sinks. :func:`guard_few_queries` blanks keys seen by fewer than
      ``min_queries`` queries and keeps the counts, which :func:`guarded_summary_figure` shows
      on hover and as a line, so the guard is visible, not silent.
    - **Windowed pattern**: :func:`window_figure` draws the rows of a
      :class:`probe.capture.window.QueryWindow` (queries ``start..stop-1`` against every key).
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from apps.heads_dashboard.figures import BEFORE, PATTERN_COLORSCALE, display_token, token_axis
from apps.heads_dashboard.figures_grid import causal_blank, scaled
from probe.errors import InputError

MIN_QUERIES = 4  # as metrics.MIN_VISIBLE and probe.summary.top_sinks


def hide_first_token(pattern: Float[Tensor, "*head q k"], tokens: list[str]) -> tuple[Tensor, list[str]]:
    """The pattern without its first query row and first key column, and the tokens without the first."""
    if len(tokens) < 2:
        raise InputError("hiding the first token leaves nothing to show: the prompt has one token")
    if pattern.shape[-2:] != (len(tokens), len(tokens)):
        raise ValueError(f"pattern of shape {tuple(pattern.shape)} does not match {len(tokens)} tokens")
    return pattern[..., 1:, 1:], tokens[1:]


def hide_first_key(values: Float[Tensor, "*head k"], tokens: list[str]) -> tuple[Tensor, list[str]]:
    """A per-key summary without its first key, and the tokens without the first."""
    if len(tokens) < 2:
        raise InputError("hiding the first token leaves nothing to show: the prompt has one token")
    return values[..., 1:], tokens[1:]


@dataclass(frozen=True)
class GuardedSummary:
    """A per-key mean with the keys seen by too few queries blanked.

    Attributes:
        values: ``[..., key]``, NaN where ``counts < min_queries``.
        counts: ``[key]`` queries that saw each key.
        min_queries: the guard.
    """

    values: Float[Tensor, "*head k"]
    counts: Float[Tensor, " k"]
    min_queries: int

    @property
    def hidden(self) -> int:
        """How many keys the guard blanked."""
        return int((self.counts < self.min_queries).sum())


def guard_few_queries(values: Float[Tensor, "*head k"], counts: Float[Tensor, " k"],
                      min_queries: int = MIN_QUERIES) -> GuardedSummary:
    """Blank ``values`` at keys seen by fewer than ``min_queries`` queries (module docstring)."""
    if isinstance(min_queries, bool) or not isinstance(min_queries, int) or min_queries < 1:
        raise InputError(f"the minimum number of queries must be a positive integer, got {min_queries!r}")
    if values.shape[-1] != counts.shape[-1]:
        raise ValueError(f"values over {values.shape[-1]} keys and counts over {counts.shape[-1]} keys differ")
    few = counts < min_queries
    return GuardedSummary(values.float().masked_fill(few, float("nan")), counts.float(), min_queries)


def guarded_summary_figure(received: Float[Tensor, " k"], counts: Float[Tensor, " k"], entropy: Float[Tensor, " q"],
                           tokens: list[str], title: str, *, min_queries: int = MIN_QUERIES,
                           hide_first: bool = False) -> go.Figure:
    """The long-input summary of one head with the few-query guard: bars of mean attention
    received (blank where fewer than ``min_queries`` queries saw the key), the count of queries
    per key as a line on a second axis, entropy per query below."""
    guarded = guard_few_queries(received, counts, min_queries)
    values, shown_counts, shown_entropy, shown_tokens = guarded.values, guarded.counts, entropy.float(), tokens
    offset = 0
    if hide_first:
        values, shown_tokens = hide_first_key(values, tokens)
        shown_counts, shown_entropy, offset = shown_counts[1:], shown_entropy[1:], 1
    positions = list(range(offset, offset + len(shown_tokens)))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        specs=[[{"secondary_y": True}], [{}]],
                        subplot_titles=(f"mean attention received per key (keys seen by < {min_queries} queries "
                                        f"blank: {guarded.hidden})", "entropy per query (nats)"))
    hover = [f"{display_token(t)}<br>seen by {int(c)} queries" for t, c in zip(shown_tokens, shown_counts.tolist())]
    fig.add_trace(go.Bar(x=positions, y=values.tolist(), marker_color=BEFORE, name="received", hovertext=hover,
                         hovertemplate="key %{x}: %{y:.3f}<br>%{hovertext}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=positions, y=shown_counts.tolist(), mode="lines", name="queries seeing the key",
                             line=dict(color="grey", dash="dot")), row=1, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=positions, y=shown_entropy.tolist(), mode="lines", name="entropy",
                             line=dict(color=BEFORE), showlegend=False), row=2, col=1)
    axis = token_axis(shown_tokens)
    axis["tickvals"] = [v + offset for v in axis["tickvals"]]
    fig.update_xaxes(**axis, tickangle=-60, row=2, col=1)
    fig.update_yaxes(title_text="queries", secondary_y=True, row=1, col=1)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=540, margin=dict(l=60, r=60, t=70, b=90),
                      legend=dict(orientation="h", y=1.14, x=1, xanchor="right"))
    return fig


def window_figure(rows: Float[Tensor, "w k"], tokens: list[str], start: int, title: str, *, scale: str = "linear",
                  hide_first: bool = False) -> go.Figure:
    """One head's rows of a query window: queries ``start..start+w-1`` down, every key across;
    keys after each query blank; optionally log scale and without the first key."""
    w, k = rows.shape
    if k != len(tokens) or start + w > len(tokens) or start < 0:
        raise ValueError(f"rows of shape {tuple(rows.shape)} from query {start} do not fit {len(tokens)} tokens")
    padded = torch.full((len(tokens), k), float("nan"))
    padded[start:start + w] = rows.float()
    values = scaled(causal_blank(padded)[start:start + w], scale)
    keys = list(range(k))
    key_tokens = tokens
    if hide_first:
        values, keys, key_tokens = values[:, 1:], keys[1:], tokens[1:]
    queries = list(range(start, start + w))
    fig = go.Figure(go.Heatmap(
        z=values.tolist(), x=keys, y=queries, colorscale=PATTERN_COLORSCALE,
        zmin=None if scale == "log" else 0.0, zmax=None if scale == "log" else 1.0,
        colorbar=dict(title="log10 attention" if scale == "log" else "attention"),
        hovertemplate="query %{y} → key %{x}<br>%{z:.3g}<extra></extra>",
    ))
    key_axis = token_axis(key_tokens)
    key_axis["tickvals"] = [keys[i] for i in key_axis["tickvals"]]
    query_axis = token_axis(tokens[start:start + w])
    query_axis["tickvals"] = [v + start for v in query_axis["tickvals"]]
    fig.update_layout(title=dict(text=f"{title}: queries {start}..{start + w - 1}", font=dict(size=14)),
                      height=min(760, max(320, 14 * w + 200)), margin=dict(l=90, r=20, t=40, b=90),
                      xaxis=dict(title="key", tickangle=-60, **key_axis),
                      yaxis=dict(title="query", autorange="reversed", **query_axis))
    return fig
