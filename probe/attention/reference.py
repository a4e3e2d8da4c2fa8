"""The plain-torch attention backend: exact, chunked over queries, never holding seq x seq.

Context:
    This is the reference every fast path is tested against, and the path CPU users run. It
    computes softmax attention one block of ``chunk_size`` query rows at a time, so memory is
    ``O(chunk_size x keys)`` per head, and reduces each block into the statistics listed in
    :mod:`probe.attention.spec` before moving on. The pattern is kept only when asked.

    The arithmetic follows transformers' ``eager_attention_forward`` (scores times ``scaling``,
    optional soft-capping, masked positions set to the dtype's minimum, softmax in float32, cast
    back before the value product), so logits agree with HF's eager forward to float rounding.

Edits:
    ``key_bias`` is added to the logits; ``last_row_boost`` then raises chosen logits of each
    row's last query by ``c * |z|`` (PAINT, :func:`boost_last_rows`); ``key_scale`` rescales the
    post-softmax pattern as ACT does; ``head_scale`` multiplies each head's output. A :class:`~probe.attention.spec.SinkRule`
    needs the column statistics of the whole input first, so it costs one extra pass.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from probe.attention.mask import LazyMask
from probe.attention.spec import AttentionOutput, KeyScale, LayerEdit, SinkRule, StatRequest, head_view
from probe.attention.stats import StatAccumulator

DEFAULT_CHUNK = 256


def reference_attention(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    value: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    *,
    scaling: float | None = None,
    softcap: float | None = None,
    want: StatRequest = StatRequest(),
    edit: LayerEdit | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> AttentionOutput:
    """Attention with statistics and edits, exact, one query block at a time.

    Args:
        query, key, value: HF layout; ``head`` must be a multiple of ``kv_head`` (GQA).
        mask: which (query, key) pairs may attend; see :class:`LazyMask`.
        scaling: logit scale (default ``1/sqrt(d)``).
        softcap: Gemma-2-style logit soft-capping, ``tanh(s / c) * c``.
        want: statistics to return.
        edit: edits to apply to this layer.
        chunk_size: query rows per block (memory is ``chunk_size x keys`` per head).

    Returns:
        An :class:`AttentionOutput` with ``output`` in ``[batch, q, head, d]``.
    """
    _check_shapes(query, key, value, mask)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    edit = edit if edit is not None and not edit.is_empty else None
    _check_chunk(chunk_size)
    key_scales, sinks = _resolve_key_scales(query, key, mask, edit, scaling, softcap, chunk_size)
    return _attend(query, key, value, mask, scaling, softcap, want, edit, key_scales, chunk_size, sinks)


def _resolve_key_scales(query, key, mask, edit, scaling, softcap, chunk_size):
    """Turn each :class:`SinkRule` selection into a fixed key set (one detection pass each).

    Returns the resolved scalings and the sets the rules selected, in order."""
    if edit is None or not edit.key_scales:
        return (), ()
    resolved, sinks = [], []
    for scale in edit.key_scales:
        keys = scale.keys
        if isinstance(keys, SinkRule):
            keys = detect_sinks(query, key, mask, keys, scaling, softcap, edit.key_bias, chunk_size,
                                last_row_boost=edit.last_row_boost)
            sinks.append(keys)
        resolved.append(KeyScale(factor=scale.factor, keys=keys))
    return tuple(resolved), tuple(sinks)


def detect_sinks(
    query: Float[Tensor, "batch head q d"],
    key: Float[Tensor, "batch kv_head k d"],
    mask: LazyMask,
    rule: SinkRule,
    scaling: float,
    softcap: float | None = None,
    key_bias: Float[Tensor, "batch head k"] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    last_row_boost: Float[Tensor, "batch head k"] | None = None,
) -> Bool[Tensor, "batch head k"]:
    """ACT's sink set for each (batch, head): keys whose mean received attention exceeds tau
    (in the attention the logit edits, ``key_bias`` and ``last_row_boost``, give)."""
    acc = StatAccumulator(StatRequest(received=True), query, key, mask)
    last = last_query_rows(mask) if last_row_boost is not None else None
    for start, stop in _blocks(query.shape[2], chunk_size):
        rows = mask.rows(start, stop)
        boost = _block_boost(last_row_boost, last, start, stop)
        probs, _ = _block_probs(query[:, :, start:stop], key, rows, scaling, softcap, key_bias, boost=boost)
        acc.update(probs, rows, start, stop)
    stats = acc.finish()
    return select_sinks(stats["received_mean"], stats["visible_count"], rule)


def select_sinks(
    received_mean: Float[Tensor, "batch head k"],
    visible_count: Float[Tensor, "batch k"],
    rule: SinkRule,
) -> Bool[Tensor, "batch head k"]:
    """Apply a :class:`SinkRule` to ACT scores: threshold, then drop the first sink if asked."""
    sinks = (received_mean > rule.tau) & (visible_count[:, None, :] >= rule.min_visible)
    if rule.keep_first:
        first = sinks.int().argmax(dim=-1, keepdim=True)
        has_any = sinks.any(dim=-1, keepdim=True)
        drop = torch.zeros_like(sinks).scatter(-1, first, has_any)
        sinks = sinks & ~drop
    return sinks


def last_query_rows(mask: LazyMask) -> Int[Tensor, " batch"]:
    """Index (into the call's queries) of each batch row's last real query; a row with no real
    query (all padding) gets the call's last row."""
    valid = mask.query_padding()
    flipped = valid.flip(-1).int().argmax(-1)
    return (mask.q_length - 1 - flipped).to(valid.device)


def boost_last_rows(
    scores: Float[Tensor, "batch head rows k"],
    coeff: Float[Tensor, "batch head k"],
    is_last: Bool[Tensor, "batch rows"],
) -> Float[Tensor, "batch head rows k"]:
    """PAINT's logit boost: ``z + c * |z|`` at the rows marked last (one per batch row), ``z``
    elsewhere. Keys with ``c = 0`` are untouched, also where ``z`` is not finite."""
    at = is_last[:, None, :, None] & (coeff[:, :, None, :] != 0)
    boosted = scores + coeff[:, :, None, :].to(scores) * scores.abs()
    return torch.where(at, boosted, scores)


def _block_boost(coeff, last, start: int, stop: int):
    """The boost of one block of query rows ``start:stop``: ``(coeff, is_last [batch, rows])``, or
    None when no edit boosts or no row of the block is a last row."""
    if coeff is None:
        return None
    is_last = torch.arange(start, stop, device=last.device)[None, :] == last[:, None]
    return (coeff, is_last) if bool(is_last.any()) else None


def extend_selection(selected: Bool[Tensor, "batch head k"], kv_length: int) -> Bool[Tensor, "batch head kv"]:
    """A key selection padded with False (or cut) to ``kv_length`` keys: keys added after it was
    made (generated tokens) are not selected."""
    missing = kv_length - selected.shape[-1]
    if missing <= 0:
        return selected[..., :kv_length]
    return torch.cat([selected, selected.new_zeros(*selected.shape[:-1], missing)], dim=-1)


def apply_key_scale(
    probs: Float[Tensor, "batch head q k"],
    selected: Bool[Tensor, "batch head k"],
    factor: Float[Tensor, "*batch head"],
) -> Float[Tensor, "batch head q k"]:
    """ACT's calibration of one block of rows: scale selected keys, redistribute proportionally.

    Selected keys get ``factor * p``; others ``p * (1 - factor * P_S) / (1 - P_S)`` where ``P_S``
    is the row's selected mass. Rows with no mass outside the selection stay as they were.
    """
    sel = selected[:, :, None, :]
    f = factor.to(probs)
    f = f[None, :, None, None] if f.dim() == 1 else f[:, :, None, None]
    p_sel = (probs * sel).sum(-1, keepdim=True)
    rest = 1.0 - p_sel
    ok = rest > 1e-6
    scale_rest = torch.where(ok, (1.0 - f * p_sel) / rest.clamp_min(1e-6), torch.ones_like(rest))
    scaled = torch.where(sel, f * probs, probs * scale_rest)
    return torch.where(ok, scaled, probs)


def _attend(query, key, value, mask, scaling, softcap, want, edit, key_scales, chunk_size, sinks):
    batch, heads, q_len, d = query.shape
    output = query.new_empty(batch, q_len, heads, value.shape[-1])
    pattern = query.new_zeros(batch, heads, q_len, key.shape[2], dtype=torch.float32) if want.pattern else None
    acc = StatAccumulator(want, query, key, mask) if want.any_stats else None
    key_bias = edit.key_bias if edit is not None else None
    coeff = edit.last_row_boost if edit is not None else None
    last = last_query_rows(mask) if coeff is not None else None
    lse_parts = []
    for start, stop in _blocks(q_len, chunk_size):
        rows = mask.rows(start, stop)
        probs, lse = _block_probs(
            query[:, :, start:stop], key, rows, scaling, softcap, key_bias, trim=not want.pattern,
            boost=_block_boost(coeff, last, start, stop),
        )
        for scale in key_scales:
            probs = apply_key_scale(probs, scale.keys[..., : probs.shape[-1]], scale.factor)
        output[:, start:stop] = _block_output(probs, value, query.dtype)
        if pattern is not None:
            pattern[:, :, start:stop, : probs.shape[-1]] = probs
        if acc is not None:
            acc.update(probs, rows, start, stop)
            lse_parts.append(lse.float())
    if edit is not None and edit.head_scale is not None:
        output = output * head_view(edit.head_scale.to(output))
    stats = acc.finish() if acc is not None else {}
    if lse_parts:
        stats["lse"] = _mask_queries(torch.cat(lse_parts, dim=2), mask)
    return AttentionOutput(output=output, pattern=pattern, stats=stats, sinks=sinks)


def _block_probs(
    q_block: Float[Tensor, "batch head rows d"],
    key: Float[Tensor, "batch kv_head k d"],
    rows: Bool[Tensor, "batch 1 rows k"],
    scaling: float,
    softcap: float | None,
    key_bias: Float[Tensor, "batch head k"] | None,
    trim: bool = True,
    boost: tuple[Float[Tensor, "batch head k"], Bool[Tensor, "batch rows"]] | None = None,
) -> tuple[Float[Tensor, "batch head rows kk"], Float[Tensor, "batch head rows"]]:
    """Softmax probabilities of one block of rows.

    With ``trim`` the keys after the last one any row may see are skipped (half the work under
    a causal mask). Rows that may see nothing (padding queries) then spread their mass over the
    kept keys only, where eager attention spreads it over all keys; without ``trim`` the block
    equals eager attention exactly, padding rows included. ``boost`` is a last-row boost
    (:func:`boost_last_rows`) and which rows of the block are last rows.
    """
    width = _visible_width(rows) if trim else rows.shape[-1]
    scores = _grouped_scores(q_block, key[:, :, :width]) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if key_bias is not None:
        scores = scores + key_bias[:, :, None, :width].to(scores)
    if boost is not None:
        scores = boost_last_rows(scores, boost[0][..., :width], boost[1])
    # Softmax in float32, or float64 for float64 models; masked logits get that dtype's minimum
    # after the cast (float64's minimum would become -inf in float32: NaN rows under padding).
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    scores = scores.masked_fill(~rows[..., :width], torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1), torch.logsumexp(scores, dim=-1)


def _grouped_scores(
    q_block: Float[Tensor, "batch head rows d"], key: Float[Tensor, "batch kv_head k d"]
) -> Float[Tensor, "batch head rows k"]:
    """``q @ k^T`` with each group of query heads sharing one key head (no repeated keys)."""
    batch, heads, rows, d = q_block.shape
    kv_heads = key.shape[1]
    grouped = q_block.reshape(batch, kv_heads, heads // kv_heads, rows, d)
    scores = torch.matmul(grouped, key[:, :, None].transpose(-1, -2))
    return scores.reshape(batch, heads, rows, key.shape[2])


def _block_output(
    probs: Float[Tensor, "batch head rows kk"], value: Float[Tensor, "batch kv_head k d"], dtype: torch.dtype
) -> Float[Tensor, "batch rows head d"]:
    batch, heads, rows, width = probs.shape
    kv_heads = value.shape[1]
    grouped = probs.to(dtype).reshape(batch, kv_heads, heads // kv_heads, rows, width)
    out = torch.matmul(grouped, value[:, :, None, :width])
    return out.reshape(batch, heads, rows, -1).transpose(1, 2)


def _visible_width(rows: Bool[Tensor, "batch 1 rows k"]) -> int:
    """One past the last key any row of the block may see (at least 1)."""
    seen = rows.any(dim=2).any(dim=1).any(dim=0)
    idx = torch.nonzero(seen)
    return int(idx[-1]) + 1 if idx.numel() else rows.shape[-1]


def _mask_queries(values: Float[Tensor, "batch head q"], mask: LazyMask) -> Float[Tensor, "batch head q"]:
    valid = mask.query_padding()[:, None, :]
    return values.masked_fill(~valid, math.nan)


def _blocks(length: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def _check_shapes(query: Tensor, key: Tensor, value: Tensor, mask: LazyMask) -> None:
    if query.shape[1] % key.shape[1]:
        raise ValueError(
            f"query heads ({query.shape[1]}) must be a multiple of key/value heads ({key.shape[1]})"
        )
    if key.shape[2] != value.shape[2] or key.shape[2] != mask.kv_length:
        raise ValueError(f"key ({key.shape[2]}), value ({value.shape[2]}) and mask ({mask.kv_length}) lengths differ")
    if query.shape[2] != mask.q_length:
        raise ValueError(f"query length {query.shape[2]} differs from the mask's {mask.q_length}")
