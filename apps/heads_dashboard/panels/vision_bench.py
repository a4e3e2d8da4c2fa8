"""The vision panel's model work: its own vision-language model, loaded on first use, the edits it
offers, and the cached results of one image and prompt.

Context:
    The dashboard's main model is a text LM; the vision panel holds its own VLM
    (:data:`DEFAULT_VISION_MODEL` unless the settings name another) in a
    :class:`VisionModels`, which starts loading it only when the panel first runs, so the page
    starts as fast as before (and with ``--no-model``). Its forwards are serialised by that
    holder's own lock, independent of the main model's.

    One run of the panel computes, for an (image, prompt):

    - every head's attention from the last prompt position to each image token (one pattern
      capture with ``image_span=True``, which also gives ``span_mass``);
    - VHD of every head with Eq. 6's outliers (:func:`circuits.vision.vhd.prompt_set_vhd` on
      the one pair: one lockstep forward of two rows);
    - the greedy caption (:func:`~probe.models.vlm_inputs.generate_answers`) without an edit and
      under the chosen one.

    Each piece is cached by everything that determines it, so selecting another head costs no
    forward and changing the edit regenerates only the second caption. The attention views and VHD
    are the unedited model's: the edit acts on the second caption only.

Edits:
    :data:`EDITS` is a registry: name -> :class:`VisionEdit` (label, the parameters it reads,
    and a builder from the model, the parameters and the (prompt, image) to
    :mod:`probe.edits` edits). VHR and its random control build their heads per input
    (:func:`circuits.vision.vhr.vhr_edits`, :func:`~circuits.vision.vhr.random_edits`), PAINT
    and its random-token control their boosted image tokens per image
    (:class:`circuits.vision.paint.PaintCondition`, the code's alpha 0.7 / beta 0.3, layers 2..end).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from jaxtyping import Bool, Float
from PIL import Image

from circuits.vision.paint import PaintCondition, image_seed, paint_tokens, random_tokens
from circuits.vision.vhd import prompt_set_vhd
from circuits.vision.vhr import VHRConfig, random_edits, vhr_edits
from probe.capture import CaptureConfig, capture
from probe.edits import BiasKeys, ImageKeys, ScaleHeads, apply_edits
from probe.errors import InputError
from probe.models import LoadedModel, load_model
from probe.models.vlm_inputs import generate_answers

from apps.heads_dashboard.panels.vision_sources import ImageSource
from apps.heads_dashboard.settings import parse_heads
from apps.heads_dashboard.state import LRUCache, ModelHolder, ModelNotReady

DEFAULT_VISION_MODEL = "synth-llava"
LOAD_WAIT_S = 120.0
"""How long a run waits for the VLM's first load (synth-llava: about 15 s) before answering "loading"."""
CAPTION_TOKENS = 48
MAX_BIAS, MAX_FACTOR = 50.0, 100.0


class VisionModels:
    """The panel's VLM: loaded on the first :meth:`get` (not at start-up), then kept."""

    def __init__(self, name: str = DEFAULT_VISION_MODEL, loader: Callable[[str], LoadedModel] | None = load_model,
                 wait_s: float = LOAD_WAIT_S):
        self.name, self.wait_s = name, wait_s
        self._loader = loader
        self._holder: ModelHolder | None = None
        self._start = threading.Lock()

    @property
    def holder(self) -> ModelHolder:
        """The holder, loading started on first access."""
        if self._loader is None:
            raise ModelNotReady("the vision panel has no model loader; start the dashboard with one")
        with self._start:
            if self._holder is None:
                self._holder = ModelHolder(self.name, self._loader).start()
            return self._holder

    def get(self) -> LoadedModel:
        """The VLM; the first call waits up to ``wait_s`` for the load."""
        status = self.holder.wait(self.wait_s)
        if status.state != "ready":
            raise ModelNotReady(status.message + ("; press run again in a moment" if status.state == "loading" else ""))
        model = self.holder.get()
        if getattr(model, "processor", None) is None or getattr(model, "image_token_id", None) is None:
            raise ModelNotReady(f"{self.name} is not a vision-language model (it has no image processor); "
                                "start the dashboard with --vision-model naming one, such as synth-llava")
        return model

    @property
    def lock(self) -> threading.Lock:
        return self.holder.lock


# --- edits ---------------------------------------------------------------------------------


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """``"8-15"``, ``"3, 5, 9-11"`` -> layer indices; empty -> None (every layer)."""
    if not text or not text.strip():
        return None
    layers: list[int] = []
    for part in text.split(","):
        match = _RANGE.match(part)
        if not match:
            raise InputError(f"cannot read layers {text!r}: write indices and ranges such as '8-15' or '3, 5, 9-11'")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise InputError(f"layer range {part.strip()!r} runs backwards; write it low-high")
        layers += range(low, high + 1)
    return tuple(sorted(set(layers)))


def _finite(value, name: str, limit: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not abs(number) <= limit:
        raise InputError(f"{name} must be a number from -{limit:g} to {limit:g}; got {'nothing' if value is None else value!r}")
    return number


@dataclass(frozen=True)
class EditParams:
    """The edit widgets, read: bias and layers (image-key bias), heads and factor (head
    scaling), alpha (VHR)."""

    bias: float = 1.0
    layers: tuple[int, ...] | None = None
    heads: tuple[tuple[int, int], ...] = ()
    factor: float = 0.0
    alpha: float = 2.0

    @classmethod
    def from_ui(cls, bias, layers_text, heads_text, factor, alpha) -> "EditParams":
        return cls(bias=_finite(bias, "the image-key bias", MAX_BIAS), layers=parse_layers(layers_text),
                   heads=parse_heads(heads_text or ""), factor=_finite(factor, "the head factor", MAX_FACTOR),
                   alpha=_finite(alpha, "VHR's alpha", MAX_FACTOR))

    def check(self, n_layers: int, n_heads: int) -> None:
        for layer in self.layers or ():
            if layer >= n_layers:
                raise InputError(f"layer {layer} does not exist: the vision model has {n_layers} layers (0..{n_layers - 1})")
        for layer, head in self.heads:
            if layer >= n_layers or head >= n_heads:
                raise InputError(f"head L{layer}.H{head} does not exist: the vision model has {n_layers} layers of "
                                 f"{n_heads} heads")


Builder = Callable[[LoadedModel, EditParams, str, Image.Image], list]
TokenSet = tuple[str, str, tuple[int, ...]]
"""Image tokens an edit acts on, to frame on the overlay: (legend name, colour, patch indices)."""


@dataclass(frozen=True)
class VisionEdit:
    """An edit of the panel's menu: ``reads`` names the :class:`EditParams` fields it uses;
    ``marks`` (for edits that act on chosen image tokens) gives those tokens for an image."""

    name: str
    label: str
    reads: tuple[str, ...]
    build: Builder
    check: Callable[[EditParams], None] = lambda params: None
    marks: Callable[[LoadedModel, Image.Image], tuple[TokenSet, ...]] | None = None

    def key(self, params: EditParams) -> tuple:
        """What of ``params`` changes this edit (for caches)."""
        return (self.name, *(getattr(params, f) for f in self.reads))

    def describe(self, params: EditParams) -> str:
        shown = ", ".join(f"{f} {_shown(getattr(params, f))}" for f in self.reads)
        return f"{self.label} ({shown})" if shown else self.label


def _shown(value) -> str:
    if value is None:
        return "all"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return " ".join(f"L{l}.H{h}" for l, h in value)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


EDITS: dict[str, VisionEdit] = {}


def register_edit(edit: VisionEdit) -> None:
    if edit.name in EDITS:
        raise ValueError(f"edit {edit.name!r} is already registered")
    EDITS[edit.name] = edit


def vision_edit(name: str | None) -> VisionEdit:
    if name not in EDITS:
        raise InputError(f"unknown edit {name!r}; choose one of {', '.join(EDITS)}")
    return EDITS[name]


def _needs_heads(params: EditParams) -> None:
    if not params.heads:
        raise InputError("head scaling needs heads: type them in the heads box, such as 'L20.H3, 25.1'")


register_edit(VisionEdit("none", "no edit", (), lambda model, params, prompt, image: []))
register_edit(VisionEdit("image-bias", "image-key bias", ("bias", "layers"),
                         lambda model, params, prompt, image: [BiasKeys(ImageKeys(), params.bias, layers=params.layers)]))
register_edit(VisionEdit("scale-heads", "head scaling", ("heads", "factor"),
                         lambda model, params, prompt, image: [ScaleHeads(params.factor, layers=[l], heads=[h])
                                                               for l, h in params.heads], check=_needs_heads))
register_edit(VisionEdit("vhr", "VHR", ("alpha",),
                         lambda model, params, prompt, image: vhr_edits(model, [prompt], [image],
                                                                         VHRConfig(alpha=params.alpha))))
register_edit(VisionEdit("vhr-random", "VHR's random-head control", ("alpha",),
                         lambda model, params, prompt, image: random_edits(model, [prompt], [image],
                                                                            VHRConfig(alpha=params.alpha))))
def paint_marks(model: LoadedModel, image: Image.Image, random: bool = False) -> tuple[TokenSet, ...]:
    """PAINT's local and summary tokens of ``image`` (``random``: the control's, as
    :class:`~circuits.vision.paint.PaintCondition` draws them), as patch indices."""
    tokens = paint_tokens(model, [image])
    if random:
        tokens = random_tokens(tokens, [image_seed(image)])
    patches = [tuple(t - tokens.offset for t in chosen[0]) for chosen in (tokens.local, tokens.summary)]
    return ((f"PAINT local ({len(patches[0])})", "#00c8ff", patches[0]),
            (f"PAINT summary ({len(patches[1])})", "#ff00ff", patches[1]))


register_edit(VisionEdit("paint", "PAINT", (),
                         lambda model, params, prompt, image: PaintCondition(model)([prompt], [image]),
                         marks=paint_marks))
register_edit(VisionEdit("paint-random", "PAINT's random-token control", (),
                         lambda model, params, prompt, image: PaintCondition(model, random=True)([prompt], [image]),
                         marks=lambda model, image: paint_marks(model, image, random=True)))


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageAttention:
    """Attention of the last prompt position to the image, every layer and head.

    Attributes:
        to_image: ``[layer, head, image_token]``, the last position's attention to each image token.
        mass: ``[layer, head]``, ``span_mass`` there (the sum over the image tokens).
        n_tokens: the prompt's length in tokens, image tokens included.
    """

    to_image: Float[np.ndarray, "layer head image_token"]
    mass: Float[np.ndarray, "layer head"]
    n_tokens: int


@dataclass(frozen=True)
class HeadDivergence:
    """VHD of every head for the one (image, prompt), and Eq. 6's outliers."""

    vhd: Float[np.ndarray, "layer head"]
    outliers: Bool[np.ndarray, "layer head"]


def image_attention(model: LoadedModel, prompt: str, image: Image.Image) -> ImageAttention:
    """One pattern capture of the (image, prompt), read at the last position."""
    with torch.no_grad():
        record = capture(model, [prompt], CaptureConfig(mode="pattern", image_span=True), images=[image])
    positions = record.image_positions(0)
    if not positions:
        raise InputError(f"{model.name} placed no image tokens in the prompt; it cannot be shown on the image")
    to_image = np.stack([record.pattern(l, 0)[:, -1, positions].float().numpy() for l in record.layers])
    mass = np.stack([record.stat(l, "span_mass", 0)[:, -1].float().numpy() for l in record.layers])
    return ImageAttention(to_image, mass, len(record.tokens[0]))


def head_divergence(model: LoadedModel, prompt: str, image: Image.Image) -> HeadDivergence:
    result = prompt_set_vhd(model, [prompt], [image])
    return HeadDivergence(result.per_prompt[0].float().numpy(), result.outliers[0].numpy())


def edited_caption(model: LoadedModel, edit: VisionEdit, params: EditParams, prompt: str, image: Image.Image,
                   max_new_tokens: int = CAPTION_TOKENS) -> str:
    """The greedy answer to (image, prompt) under ``edit`` (built for this one input)."""
    edits = edit.build(model, params, prompt, image)
    with apply_edits(model, edits):
        return generate_answers(model, [prompt], [image], max_new_tokens=max_new_tokens, batch_size=1)[0]


class VisionBench:
    """The panel's results, computed under the VLM's lock and cached per input."""

    def __init__(self, models: VisionModels, entries: int = 8):
        self.models = models
        self.cache: LRUCache = LRUCache(entries * 4)

    def _cached(self, key: tuple, compute):
        return self.cache.get_or_compute(key, compute, self.models.lock)

    def attention(self, model: LoadedModel, source: ImageSource, prompt: str) -> ImageAttention:
        return self._cached((model.name, "attention", source.key, prompt),
                            lambda: image_attention(model, prompt, source.image))

    def divergence(self, model: LoadedModel, source: ImageSource, prompt: str) -> HeadDivergence:
        return self._cached((model.name, "vhd", source.key, prompt),
                            lambda: head_divergence(model, prompt, source.image))

    def marks(self, model: LoadedModel, source: ImageSource, edit: VisionEdit) -> tuple[TokenSet, ...]:
        """The image tokens ``edit`` acts on (none for edits without ``marks``)."""
        if edit.marks is None:
            return ()
        return self._cached((model.name, "marks", source.key, edit.name), lambda: edit.marks(model, source.image))

    def caption(self, model: LoadedModel, source: ImageSource, prompt: str, edit: VisionEdit,
                params: EditParams) -> str:
        return self._cached((model.name, "caption", source.key, prompt, edit.key(params)),
                            lambda: edited_caption(model, edit, params, prompt, source.image))
