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
    ============== ===================== ==========================================================

Per-query statistics are NaN at padding queries; per-key sums count only valid queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

from jaxtyping import Bool, Float
from torch import Tensor


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
    """

    pattern: bool = False
    received: bool = False
    entropy: bool = False
    distance: bool = False
    first_token: bool = False
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {self.block_size}")

    @property
    def any_stats(self) -> bool:
        """True when some reduced statistic (not the pattern) is wanted."""
        return (
            self.received
            or self.entropy
            or self.distance
            or self.first_token
            or self.block_size is not None
        )

    @classmethod
    def all_stats(cls, block_size: int | None = None) -> "StatRequest":
        """Every reduced statistic, no pattern."""
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
    """

    key_bias: Float[Tensor, "batch head key"] | None = None
    key_scales: tuple[KeyScale, ...] = ()
    head_scale: Float[Tensor, "*batch head"] | None = None

    @property
    def is_empty(self) -> bool:
        return self.key_bias is None and not self.key_scales and self.head_scale is None

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

