"""What one attention call is asked to produce, and the edits it applies.

Context:
    Every attention backend (the plain-torch reference here, the Triton kernels in
    ``probe.kernels``) receives the same three things: the query/key/value tensors, a
    :class:`~probe.attention.mask.LazyMask`, a :class:`StatRequest` saying which statistics to
    return, and an optional :class:`LayerEdit`. It returns an :class:`AttentionOutput`.

Statistic names (keys of ``AttentionOutput.stats``), all float32:

    ============== ===================== ==========================================================
    name           shape                 meaning
    ============== ===================== ==========================================================
    lse            batch head query      log-sum-exp of the (masked, edited) logits of each query
    received_sum   batch head key        sum over valid queries of the attention paid to the key
    received_mean  batch head key        received_sum / visible_count (ACT's sink score s_j)
    received_max   batch head key        largest attention any valid query pays to the key
    visible_count  batch key             number of valid queries that can see the key
    entropy        batch head query      -sum_j p_ij log p_ij (nats)
    distance       batch head query      sum_j p_ij (i - j), in token positions
    first_token    batch head query      attention paid to the first non-padding key
    block_sum      batch head qb kb      sum of p over each block_size x block_size tile
    block_max      batch head qb kb      max of p over each tile
    lookback       batch head query      sum_j p_ij min(i - j, W), W = ``lookback_window``
    band_sum       batch head key        sum of p_ij over the band's queries i of key j (:class:`Band`)
    band_count     batch key             number of the band's queries of key j (head-independent)
    band_mean      batch head key        band_sum / band_count; NaN where band_count is 0
    span_mass      batch head query      sum_j p_ij over the keys j of a :class:`KeySpan` (e.g. image tokens)
    ============== ===================== ==========================================================

Per-query statistics are NaN at padding queries; per-key sums count only valid queries.

``span_mass`` is the attention mass each query puts on a span of keys given per batch row as a
boolean key mask (a VLM's image tokens: VHD and PAINT read its mean over queries per head). It is
reduced block by block like the other per-query statistics, so no seq x seq matrix is held.

Positions are token positions: query row ``i`` sits at ``q_offset + i`` and key column ``j`` at
``kv_offset + j``, so ``i - j`` above is the difference of those (independent of left padding,
which only shifts both). Band rows (``Band.first_rows``) count from each prompt's first real key.

Reasoning rhythm (Li et al. 2025, "Attention Illuminates LLM Reasoning: the Preplan-and-Anchor
Rhythm"): both metrics are linear in the pattern, so averages over a group of heads are averages
of these per-head statistics.

* ``WAAD_t = mean over local heads of lookback[:, h, t]`` with ``lookback_window=10``.
* ``FAI_s = mean over global heads of band_mean[:, h, s]`` with ``Band(lo=10, hi=100)`` (the RL
  default) or ``Band(lo, hi=None)`` (the paper's section 4: to the end of the response), and
  ``first_rows`` at each prompt's response start so that only response rows count.

``band_mean`` is NaN, not 0, where no query lies in a key's band (the last ``lo`` keys, padding
keys, keys whose whole band precedes ``first_rows``): there the mean is undefined, and a 0 would
read as "no attention received" to a top-q selection. ``band_count`` counts every valid query in
the band, including queries a sliding window or another mask hides from the key (they pay it 0),
as the paper's ``|T(s)|`` does.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def _is_integer(value: object) -> bool:
    """Python, NumPy and torch integers; not booleans, floats or strings."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class Band:
    """The queries whose attention to a key counts as "received from later on" (FAI's band).

    Key ``s`` collects ``p(t, s)`` from every valid (non-padding) query ``t`` with
    ``s + lo <= t <= s + hi`` in token positions, and, when ``first_rows`` is given, with ``t``
    at or after its prompt's first band row. Padding keys collect nothing.

    Attributes:
        lo: smallest look-ahead ``t - s``, an integer >= 0 (the paper's RL default is 10).
        hi: largest look-ahead, an integer >= ``lo``, or None: to the end of the input (the
            paper's section 4 analysis).
        first_rows: per batch row, the first query position that counts, relative to that
            prompt's first real token (e.g. the response start: the prompt's length); None:
            every query counts. Must have one entry per batch row of the attention call.
            Positions count from the call's first real key, as for ``distance``: a decode step
            whose cache has dropped a prompt's first keys (``kv_offset > 0``) counts from the
            first key it kept.
    """

    lo: int = 10
    hi: int | None = 100
    first_rows: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not _is_integer(self.lo) or self.lo < 0:
            raise ValueError(f"Band.lo must be an integer >= 0 (the paper uses 10), got {self.lo!r}")
        if self.hi is not None and (not _is_integer(self.hi) or self.hi < self.lo):
            raise ValueError(f"Band.hi must be an integer >= lo={self.lo}, or None for no upper bound; got {self.hi!r}")
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "hi", None if self.hi is None else int(self.hi))
        if self.first_rows is not None:
            object.__setattr__(self, "first_rows", _first_rows(self.first_rows))


def _first_rows(values: object) -> tuple[int, ...]:
    """``Band.first_rows`` as a tuple of integers >= 0, or a ValueError naming the fix."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"Band.first_rows must be a sequence of integers, one per batch row, got {values!r}")
    if not values or not all(_is_integer(v) and v >= 0 for v in values):
        raise ValueError("Band.first_rows must hold one integer >= 0 per batch row (positions from each prompt's "
                         f"first real token), got {values!r}; pass None to count every query")
    return tuple(int(v) for v in values)


@dataclass(frozen=True, eq=False)
class KeySpan:
    """A span of keys per batch row, for ``span_mass`` (compared by identity: it holds a tensor).

    Attributes:
        keys: ``Bool[batch, pos]``, True at the span's key columns (a VLM's image tokens), in
            the columns of the whole sequence: a call whose keys start at ``kv_offset`` reads
            columns ``kv_offset..``; keys past the mask's width (tokens generated since) are
            outside the span.
    """

    keys: Bool[Tensor, "batch pos"]

    def __post_init__(self) -> None:
        if not isinstance(self.keys, Tensor) or self.keys.dim() != 2 or self.keys.dtype != torch.bool:
            raise ValueError(f"KeySpan.keys must be a boolean tensor [batch, pos], got {self.keys!r:.80}")

    def columns(self, kv_offset: int, kv_length: int, device) -> Bool[Tensor, "batch kv"]:
        """The span over one call's keys ``kv_offset .. kv_offset + kv_length - 1``."""
        keys = self.keys.to(device)
        missing = kv_offset + kv_length - keys.shape[1]
        if missing > 0:
            keys = torch.cat([keys, keys.new_zeros(keys.shape[0], missing)], dim=1)
        return keys[:, kv_offset:kv_offset + kv_length]


@dataclass(frozen=True)
class StatRequest:
    """Which outputs an attention call must produce besides the attention output itself.

    Attributes:
        pattern: return the full post-softmax pattern ``[batch, head, query, key]``. Memory is
            quadratic in length: use it for short inputs only.
        received: attention received per key (``received_sum``, ``received_mean``,
            ``received_max``, ``visible_count``).
        entropy: per-query entropy.
        distance: per-query mean attention distance.
        first_token: per-query attention to the first non-padding token.
        block_size: when set, ``block_sum`` and ``block_max`` over tiles of this size.
        lookback_window: when set (an integer W >= 1), ``lookback``: the per-query attention
            distance clipped at W (WAAD's per-head term; the paper uses W = 10).
        band: when set, ``band_sum``, ``band_count`` and ``band_mean`` over this
            :class:`Band` (FAI's per-head term).
        span: when set, ``span_mass`` over this :class:`KeySpan` (attention to image tokens).
    """

    pattern: bool = False
    received: bool = False
    entropy: bool = False
    distance: bool = False
    first_token: bool = False
    block_size: int | None = None
    lookback_window: int | None = None
    band: Band | None = None
    span: KeySpan | None = None

    def __post_init__(self) -> None:
        if self.span is not None and not isinstance(self.span, KeySpan):
            raise ValueError(f"span must be a KeySpan(keys) or None, got {self.span!r:.80}")
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {self.block_size}")
        if self.lookback_window is not None:
            if not _is_integer(self.lookback_window) or self.lookback_window < 1:
                raise ValueError(f"lookback_window must be an integer >= 1 (the paper's W is 10), "
                                 f"got {self.lookback_window!r}; pass None for no lookback statistic")
            object.__setattr__(self, "lookback_window", int(self.lookback_window))
        if self.band is not None and not isinstance(self.band, Band):
            raise ValueError(f"band must be a Band(lo, hi, first_rows) or None, got {self.band!r}")

    @property
    def any_stats(self) -> bool:
        """True when some reduced statistic (not the pattern) is wanted."""
        return (
            self.received
            or self.entropy
            or self.distance
            or self.first_token
            or self.block_size is not None
            or self.lookback_window is not None
            or self.band is not None
            or self.span is not None
        )

    @classmethod
    def all_stats(cls, block_size: int | None = None) -> "StatRequest":
        """Every reduced statistic that takes no parameter (not ``lookback`` nor the band), no pattern."""
        return cls(received=True, entropy=True, distance=True, first_token=True, block_size=block_size)


@dataclass(frozen=True)
class SinkRule:
    """ACT's input-adaptive sink criterion (Yu et al. 2024, ``atten_process_*`` in GATECH-EIC/ACT).

    A key ``j`` is a sink of a head when the mean attention it receives from the queries that can
    see it, ``s_j = sum_i A[i, j] / visible(j)``, exceeds ``tau``. As in ACT's code the first sink
    found (normally the first token) is kept out of the set, so the canonical first-token sink
    is never scaled.

    Attributes:
        tau: threshold on ``s_j`` (ACT: 0.1).
        keep_first: drop the first detected sink from the set (ACT's ``indices[1:]``).
        min_visible: keys seen by fewer valid queries than this are never sinks. ACT has no
            such guard (it is 1 here by default, i.e. off); at the last positions the score is a
            mean over very few queries, so analyses may raise it.
    """

    tau: float = 0.1
    keep_first: bool = True
    min_visible: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.tau, bool) or not isinstance(self.tau, Real) or not 0.0 < self.tau < 1.0:
            raise ValueError(f"tau must be a number in (0, 1), got {self.tau!r}; ACT's default is 0.1")
        if isinstance(self.min_visible, bool) or not isinstance(self.min_visible, int) or self.min_visible < 1:
            raise ValueError(f"min_visible must be an integer >= 1, got {self.min_visible!r}")


@dataclass(frozen=True)
class KeyScale:
    """Scale the attention some heads pay to some keys and redistribute the freed mass (ACT).

    For each query row with selected-key mass ``P_S``: selected keys get ``factor * p``, every
    other key gets ``p * (1 - factor * P_S) / (1 - P_S)``, so rows still sum to one. A row whose
    mass lies entirely on selected keys is left unchanged (nothing to redistribute to).

    Attributes:
        factor: ``Float[Tensor, "head"]``, or ``Float[Tensor, "batch head"]`` for an edit limited to
            some prompts; 1.0 leaves a head untouched.
        keys: either a fixed selection ``Bool[Tensor, "batch head key"]`` or a :class:`SinkRule`
            evaluated on this call's unedited attention.
    """

    factor: Float[Tensor, "*batch head"]
    keys: Bool[Tensor, "batch head key"] | SinkRule


@dataclass(frozen=True)
class LayerEdit:
    """The edits of one layer, resolved to tensors for one attention call.

    Attributes:
        key_bias: additive bias on the logits of each (batch, head, key), before the softmax.
        key_scales: post-softmax scalings with redistribution (ACT), applied in order.
        head_scale: ``Float[Tensor, "head"]`` (or ``"batch head"``) multiplying each head's output
            (VHR).
        last_row_boost: PAINT's (and PAI's) boost of the logits of chosen keys at each batch row's
            **last query only**: ``z <- z + c * |z|`` with ``c = last_row_boost[b, h, k]`` (0: key
            untouched). ``z`` is the logit after scaling, soft-capping and ``key_bias``; masked
            keys stay masked. The last query of a row is its last real (non-padding) query: at a
            prefill the prompt's last token, at a decode step the one new token. Not a constant
            bias (it scales with ``|z|``), so it is its own field.
    """

    key_bias: Float[Tensor, "batch head key"] | None = None
    key_scales: tuple[KeyScale, ...] = ()
    head_scale: Float[Tensor, "*batch head"] | None = None
    last_row_boost: Float[Tensor, "batch head key"] | None = None

    @property
    def is_empty(self) -> bool:
        return (self.key_bias is None and not self.key_scales and self.head_scale is None
                and self.last_row_boost is None)

    @property
    def per_prompt(self) -> bool:
        """True when some factor differs between the rows of the batch (``[batch, head]``)."""
        scales = [s.factor for s in self.key_scales] + ([self.head_scale] if self.head_scale is not None else [])
        return any(t.dim() == 2 for t in scales)


def head_view(scale: Float[Tensor, "*batch head"]) -> Float[Tensor, "_ 1 head 1"]:
    """A ``[head]`` or ``[batch, head]`` factor shaped to multiply ``[batch, q, head, d]`` outputs."""
    return scale[None, None, :, None] if scale.dim() == 1 else scale[:, None, :, None]


@dataclass(frozen=True)
class AttentionOutput:
    """What an attention backend returns.

    Attributes:
        output: ``[batch, query, head, head_dim]``, the per-head outputs before the output
            projection (HF's layout for ``attn_output``).
        pattern: the post-softmax pattern when asked, else None.
        stats: reduced statistics, named as in this module's docstring.
        sinks: the ``Bool[batch, head, key]`` sink set each :class:`SinkRule` key scaling of the
            edit used, in the edit's order (empty when the edit has none).
    """

    output: Float[Tensor, "batch query head head_dim"]
    pattern: Float[Tensor, "batch head query key"] | None
    stats: dict[str, Tensor]
    sinks: tuple[Bool[Tensor, "batch head key"], ...] = ()

