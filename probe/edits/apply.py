"""Apply edits to a model for the duration of a ``with`` block: HF or TransformerLens.

Context:
    On HF models the edits ride the registered ``"headscope"`` attention function: edited layers
    run the chosen backend with the layer's resolved :class:`~probe.attention.spec.LayerEdit`,
    other layers run SDPA. This holds for plain forwards and for every step of ``generate()``.
    On TransformerLens models they are hooks: key biases and last-row boosts on
    ``hook_attn_scores`` (TransformerLens's masked scores), key scalings on
    ``hook_pattern``, head scales on ``hook_z``. Either way everything is removed on exit, also
    when the block raises.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from probe.attention.hf import AttentionSession, LayerPlan, active_session, attention_modules, use_headscope_attention
from probe.attention.mask import LazyMask
from probe.attention.reference import apply_key_scale, boost_last_rows, extend_selection, select_sinks
from probe.attention.spec import SinkRule, StatRequest, head_view
from probe.attention.stats import StatAccumulator
from probe.edits.image_keys import ImageTokenTracker, tracking_image_tokens
from probe.edits.resolve import KeyLayout, layer_edit
from probe.edits.spec import Edit, EditError, check_edits, uses_image_keys
from probe.models.families import family_of
from probe.models.vision import image_token_id_of


@contextlib.contextmanager
def apply_edits(model, edits: Sequence[Edit], *, backend: str = "reference") -> Iterator[None]:
    """Edit attention inside the block.

    Args:
        model: a :class:`~probe.models.LoadedModel`, an HF causal LM (or vision-language model), or
            a ``HookedTransformer``.
        edits: :mod:`probe.edits.spec` edits; they compose. Edits with
            :class:`~probe.edits.spec.ImageKeys` need a vision-language model (its image-token
            id; :mod:`probe.edits.image_keys`).
        backend: attention backend for edited layers.
    """
    edits = check_edits(edits)
    target = getattr(model, "hf", model)
    if _is_lens(target):
        if uses_image_keys(edits):
            raise EditError("ImageKeys() edits run on the HF vision-language model, not on a TransformerLens model")
        _check_targets(edits, target.cfg.n_layers, target.cfg.n_heads)
        with target.hooks(fwd_hooks=lens_edit_hooks(edits, target.cfg.n_layers)):
            yield
        return
    geometry = family_of(target).geometry(target)
    _check_targets(edits, geometry.n_layers, geometry.n_heads)
    with contextlib.ExitStack() as stack:
        tracker = None
        if uses_image_keys(edits):
            loaded = model is not target  # a LoadedModel knows its id; a bare HF model's config may
            image_id = getattr(model, "image_token_id", None) if loaded else image_token_id_of(target, None)
            tracker = stack.enter_context(tracking_image_tokens(target, image_id))
        plans = {layer: _hf_plan(edits, layer, backend, tracker) for layer in _edited_layers(edits, geometry.n_layers)}
        session = AttentionSession(layer_of=attention_modules(target), plans=plans)
        stack.enter_context(use_headscope_attention(target))
        stack.enter_context(active_session(session))
        yield


def _hf_plan(edits: Sequence[Edit], layer: int, backend: str, tracker: ImageTokenTracker | None = None) -> LayerPlan:
    def resolve(mask: LazyMask, n_heads: int):
        layout = KeyLayout(first_key=mask.first_key(), kv_length=mask.kv_length, device=torch.device(mask.device),
                           image_keys=tracker.columns(mask) if tracker is not None else None)
        return layer_edit(edits, layer, n_heads, layout)

    return LayerPlan(want=StatRequest(), edit=resolve, backend=backend)


def _edited_layers(edits: Sequence[Edit], n_layers: int) -> list[int]:
    return sorted({layer % n_layers for e in edits for layer in (e.layers or range(n_layers))})


def _check_targets(edits: Sequence[Edit], n_layers: int, n_heads: int) -> None:
    for edit in edits:
        for layer in edit.layers or ():
            if not -n_layers <= layer < n_layers:
                raise EditError(f"edit {type(edit).__name__} names layer {layer}; the model has {n_layers} layers "
                                f"(0..{n_layers - 1})")
        for head in edit.heads or ():
            if not 0 <= head < n_heads:
                raise EditError(f"edit {type(edit).__name__} names head {head}; layers have {n_heads} heads "
                                f"(0..{n_heads - 1})")


def _is_lens(model: nn.Module) -> bool:
    return hasattr(model, "hooks") and hasattr(model, "cfg") and hasattr(model, "blocks")


def lens_edit_hooks(edits: Sequence[Edit], n_layers: int) -> list:
    """TransformerLens forward hooks implementing ``edits``."""
    hooks = []
    for layer in _edited_layers(edits, n_layers):
        state: dict[str, Tensor] = {}
        hooks += [
            (f"blocks.{layer}.attn.hook_attn_scores", _scores_hook(edits, layer, state)),
            (f"blocks.{layer}.attn.hook_pattern", _pattern_hook(edits, layer, state)),
            (f"blocks.{layer}.attn.hook_z", _z_hook(edits, layer, state)),
        ]
    return hooks


def _scores_hook(edits, layer, state):
    def hook(scores: Tensor, hook) -> Tensor:
        # The last query sees every real key under a causal mask: finite there = a real key.
        valid = torch.isfinite(scores[:, 0, -1, :]) & (scores[:, 0, -1, :] > torch.finfo(scores.dtype).min / 2)
        layout = KeyLayout(first_key=valid.int().argmax(1), kv_length=scores.shape[-1], device=scores.device)
        edit = layer_edit(edits, layer, scores.shape[1], layout)
        state.update(valid=valid, edit=edit)
        if edit is not None and edit.key_bias is not None:
            scores = scores + edit.key_bias[:, :, None, :].to(scores)
        if edit is not None and edit.last_row_boost is not None:
            scores = boost_last_rows(scores, edit.last_row_boost, _lens_last_rows(valid, scores.shape[2]))
        return scores

    return hook


def _lens_last_rows(valid: Tensor, n_q: int) -> Tensor:
    """``Bool[batch, q]``: each row's last real query. At a prefill (queries = keys) the last valid
    key's row; at a decode step of cached generation, the last query."""
    batch, n_k = valid.shape
    last = n_k - 1 - valid.flip(-1).int().argmax(-1) if n_q == n_k else torch.full((batch,), n_q - 1)
    return torch.arange(n_q, device=valid.device)[None, :] == last.to(valid.device)[:, None]


def _pattern_hook(edits, layer, state):
    """ACT-style key scalings on ``hook_pattern``. A :class:`SinkRule` is evaluated when the
    pattern covers the whole input (the prefill) and its sinks are reused at the decode steps
    of TransformerLens' cached generation, as on the HF path."""

    def hook(pattern: Tensor, hook) -> Tensor:
        edit = state.get("edit")
        if edit is None or not edit.key_scales:
            return pattern
        batch, _, n_q, n_k = pattern.shape
        prefill = n_q == n_k
        mask = LazyMask(batch, n_q, n_k, q_offset=n_k - n_q, padding=state["valid"], device=pattern.device)
        probs = pattern.float()
        found = []
        for scale in edit.key_scales:
            keys = scale.keys
            if isinstance(keys, SinkRule):
                stored = state.get("sinks", ())
                keys = _lens_sinks(probs, mask, keys) if prefill or len(stored) <= len(found) else \
                    extend_selection(stored[len(found)], n_k)
                found.append(keys)
            probs = apply_key_scale(probs, keys, scale.factor)
        if prefill:
            state["sinks"] = tuple(found)
        return probs.to(pattern.dtype)

    return hook


def _lens_sinks(probs: Tensor, mask: LazyMask, rule: SinkRule) -> Tensor:
    """ACT's sink set of one layer from its full post-softmax pattern."""
    acc = StatAccumulator(StatRequest(received=True), probs, probs[:, :1], mask)
    acc.update(probs, mask.rows(0, probs.shape[2]), 0, probs.shape[2])
    stats = acc.finish()
    return select_sinks(stats["received_mean"], stats["visible_count"], rule)


def _z_hook(edits, layer, state):
    def hook(z: Tensor, hook) -> Tensor:
        edit = state.get("edit")
        if edit is None or edit.head_scale is None:
            return z
        return z * head_view(edit.head_scale.to(z))

    return hook
