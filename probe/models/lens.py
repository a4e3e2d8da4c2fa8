"""The same weights as a TransformerLens ``HookedTransformer``.

Context:
    TransformerLens converts HF weights itself, given the HF model object (``hf_model=``), so no
    hub is needed. It looks names up in ``OFFICIAL_MODEL_NAMES``: built-in names (Gemma-3-270M is
    ``google/gemma-3-270m``) are used as they are; for other local folders we add the folder path
    to that list, which makes TransformerLens read the architecture from the folder's config.
    Weights are loaded without TransformerLens' processing (no LayerNorm folding, no centring),
    so activations match the HF model's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from probe.models.cache import cache_root

LENS_NAMES = {"gemma-3-270m": "google/gemma-3-270m"}


def neutral_path(folder: Path) -> Path:
    """A symlink to ``folder`` whose path names no architecture.

    TransformerLens 3.9 picks the architecture from substrings of the name ("llama", "gemma"...)
    before reading a local folder's config, so ``/models/tiny-llama`` would skip the config.
    """
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    link = cache_root() / "lens-links" / f"model-{digest}"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder.resolve(), target_is_directory=True)
    return link


def to_hooked_transformer(loaded) -> nn.Module:
    """Build a ``HookedTransformer`` from a :class:`~probe.models.loading.LoadedModel`."""
    from transformer_lens import HookedTransformer, loading_from_pretrained

    name = LENS_NAMES.get(loaded.name)
    if name is None:
        if loaded.source is None:
            name = loaded.name  # a hub id TransformerLens may know
        else:
            name = str(neutral_path(loaded.source))
            if name not in loading_from_pretrained.OFFICIAL_MODEL_NAMES:
                loading_from_pretrained.OFFICIAL_MODEL_NAMES.append(name)
    device = next(loaded.hf.parameters()).device
    lens = HookedTransformer.from_pretrained_no_processing(
        name,
        hf_model=loaded.hf,
        tokenizer=loaded.tokenizer,
        device=str(device),
        dtype=next(loaded.hf.parameters()).dtype,
        default_padding_side="left",
    )
    return lens.eval()
