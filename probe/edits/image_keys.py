"""Where a VLM's image tokens are in each attention call, for edits that select :class:`ImageKeys`.

Context:
    An attention call sees queries, keys and a mask, not token ids. :class:`ImageTokenTracker`
    is a forward pre-hook on the whole model that reads each forward's ``input_ids``: a forward
    without a filled cache (a plain forward, ``generate()``'s prefill) starts a new image mask;
    a decode step appends its new tokens' columns (never image tokens in practice). Each call
    then reads the columns of its own keys (:meth:`ImageTokenTracker.columns`), so the prefill's
    image keys stay selected at every decode step.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from jaxtyping import Bool
from torch import Tensor, nn

from probe.attention.mask import LazyMask
from probe.attention.spec import KeySpan
from probe.edits.spec import EditError


CACHE_ARGUMENTS = ("past_key_values", "cache")
"""Names the KV cache goes by in a forward's keyword arguments (transformers 5 renamed it)."""


def _cached_length(kwargs: dict) -> int:
    """Tokens already in the forward's KV cache (0: a prefill or a plain forward)."""
    for name in CACHE_ARGUMENTS:
        cache = kwargs.get(name)
        if cache is not None and hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length())
    return 0


class ImageTokenTracker:
    """The image-token mask of the forwards of one model, kept up to date by a pre-hook.

    Args:
        image_token_id: the model's image placeholder id.
    """

    def __init__(self, image_token_id: int):
        self.image_token_id = image_token_id
        self.image_mask: Bool[Tensor, "batch pos"] | None = None

    def before_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: start (prefill) or extend (decode step) the image mask."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            self.image_mask = None  # embeddings given: the image tokens are unknown here
            return
        new = ids == self.image_token_id
        if _cached_length(kwargs) == 0 or self.image_mask is None or self.image_mask.shape[0] != new.shape[0]:
            self.image_mask = new
        else:
            self.image_mask = torch.cat([self.image_mask, new.to(self.image_mask.device)], dim=1)

    def columns(self, mask: LazyMask) -> Bool[Tensor, "batch kv"]:
        """The image keys among one call's keys (columns ``kv_offset ..`` of the sequence)."""
        if self.image_mask is None:
            raise EditError("ImageKeys() needs the token ids of the forward (input_ids); the model was called "
                            "with inputs_embeds only: pass input_ids")
        if self.image_mask.shape[0] != mask.batch_size:
            raise EditError(f"ImageKeys(): the forward's input_ids have {self.image_mask.shape[0]} rows but the "
                            f"attention call has {mask.batch_size}; run one batch per forward")
        return KeySpan(self.image_mask).columns(mask.kv_offset, mask.kv_length, mask.device)


@contextlib.contextmanager
def tracking_image_tokens(model: nn.Module, image_token_id: int | None) -> Iterator[ImageTokenTracker]:
    """A tracker hooked to ``model``'s forward inside the block (removed on exit, also on errors)."""
    if image_token_id is None:
        raise EditError("ImageKeys() edits need the model's image-token id; apply them to a vision-language "
                        "LoadedModel (load_model on a VLM folder) or set model.image_token_id")
    tracker = ImageTokenTracker(image_token_id)
    handle = model.register_forward_pre_hook(tracker.before_forward, with_kwargs=True)
    try:
        yield tracker
    finally:
        handle.remove()
