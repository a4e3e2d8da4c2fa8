"""The evaluation item and where its image comes from.

Context:
    An :class:`EvalItem` is one question put to a vision-language model: a POPE yes/no question
    with its label, or a CHAIR captioning request with the objects truly in the image. Its image
    is a *reference*, resolved only when the item runs, so a list of items is cheap to build,
    compare and store, and a missing or corrupt image fails that item alone (see
    :mod:`circuits.hallucination.runner`).

    A reference is a file path (relative ones are taken below the run's image folder) or
    ``SCHEME:...`` for a scheme in the image-source registry: the synthetic world registers
    ``world`` (``world:heldout:17`` is re-drawn on demand). Sources are registered by name, as a
    callable or as ``"module:function"`` so that registering imports nothing heavy.

    This module imports neither torch nor PIL at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import InputError

KINDS = ("pope", "chair")
"""``pope``: a yes/no question with a label; ``chair``: a caption request with true objects."""


@dataclass(frozen=True)
class EvalItem:
    """One question to a vision-language model.

    Attributes:
        item_id: unique within a run (``pope/random/17``, ``chair/COCO_val2014_000000000042``);
            results are keyed by it, so a resumed run never answers an item twice.
        image: the image reference (a path, or ``SCHEME:...`` of a registered source).
        prompt: the text put to the model with the image.
        kind: ``"pope"`` or ``"chair"``.
        split: the set it belongs to (the POPE split, ``captions``, a world split ...); the
            summary reports metrics per split.
        label: POPE's expected answer, ``"yes"`` or ``"no"`` (None for CHAIR items).
        truth: CHAIR's objects truly in the image, sorted (None for POPE items).
    """

    item_id: str
    image: str
    prompt: str
    kind: str
    split: str
    label: str | None = None
    truth: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"item {self.item_id!r}: unknown kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.kind == "pope" and self.label not in ("yes", "no"):
            raise InputError(f"item {self.item_id!r}: a POPE item needs the label 'yes' or 'no', got {self.label!r}")
        if self.kind == "chair" and self.truth is None:
            raise InputError(f"item {self.item_id!r}: a CHAIR item needs its ground-truth objects")

    def to_dict(self) -> dict[str, Any]:
        """The item's fields as a result record carries them (``label`` or ``truth``, not both)."""
        record = {"item_id": self.item_id, "kind": self.kind, "split": self.split, "image": self.image,
                  "prompt": self.prompt}
        if self.kind == "pope":
            record["label"] = self.label
        else:
            record["truth"] = list(self.truth)
        return record


def check_unique_ids(items: list[EvalItem]) -> list[EvalItem]:
    """``items`` unchanged; raises :class:`InputError` naming the first repeated id."""
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise InputError(f"item id {item.item_id!r} occurs twice; results are keyed by id, so ids must be unique "
                             "(two question files of the same split name?)")
        seen.add(item.item_id)
    return items


class ImageError(OSError):
    """An item's image is missing, unreadable or not an image; the item fails, the run goes on."""


ImageLoader = Callable[[str, "Path | None"], Any]
"""``loader(reference, images_dir) -> PIL.Image.Image`` (RGB)."""

_SOURCES: dict[str, ImageLoader | str] = {}


def register_image_source(scheme: str, loader: ImageLoader | str, *, overwrite: bool = False) -> None:
    """Make ``SCHEME:...`` references load through ``loader``.

    Args:
        scheme: the prefix before the first colon (``"world"``); at least two characters, so a
            Windows drive letter is never taken for one.
        loader: ``loader(reference, images_dir)`` returning an RGB ``PIL.Image``; it receives the
            whole reference (``world:heldout:17``). A string ``"module:function"`` is imported on
            first use.
        overwrite: replace an existing registration instead of refusing it.
    """
    if len(scheme) < 2 or not scheme.isidentifier():
        raise ValueError(f"image source scheme {scheme!r} must be an identifier of two or more characters")
    if scheme in _SOURCES and not overwrite:
        raise ValueError(f"image source {scheme!r} is already registered")
    _SOURCES[scheme] = loader


def image_sources() -> tuple[str, ...]:
    return tuple(sorted(_SOURCES))


def source_of(reference: str) -> str | None:
    """The registered scheme a reference names, or None for a file path."""
    scheme, colon, _ = reference.partition(":")
    return scheme if colon and scheme in _SOURCES else None


def load_image(reference: str, images_dir: Path | None = None):
    """The RGB image a reference names, fully decoded.

    Raises:
        ImageError: the file is missing or not a readable image, or the source refused the
            reference; the message names the reference.
    """
    scheme = source_of(reference)
    loader = load_file_image if scheme is None else resolve_loader(scheme)
    try:
        return loader(reference, images_dir)
    except ImageError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise ImageError(f"cannot load image {reference!r}: {type(err).__name__}: {err}") from err


def resolve_loader(scheme: str) -> ImageLoader:
    loader = _SOURCES[scheme]
    if isinstance(loader, str):
        module, _, function = loader.partition(":")
        loader = getattr(importlib.import_module(module), function)
        _SOURCES[scheme] = loader
    return loader


def image_path(reference: str, images_dir: Path | None) -> Path:
    """The file a path reference names: relative ones below ``images_dir`` when given."""
    path = Path(reference).expanduser()
    return path if path.is_absolute() or images_dir is None else images_dir / path


def unknown_scheme_hint(reference: str) -> str:
    """For ``name:rest`` with an unregistered ``name``: the sources that are registered."""
    scheme, colon, _ = reference.partition(":")
    if not (colon and len(scheme) > 1 and scheme.isidentifier()):
        return ""
    return f"; {scheme!r} is no registered image source either (sources: {', '.join(image_sources())})"


def load_file_image(reference: str, images_dir: Path | None):
    """Open and decode an image file (``load()`` now, so a truncated file fails here, not later)."""
    from PIL import Image, UnidentifiedImageError

    path = image_path(reference, images_dir)
    if not path.is_file():
        what = "a folder, not a file" if path.exists() else "no such file"
        below = " below the image folder" if path != Path(reference).expanduser() else ""
        raise ImageError(f"image {reference!r} not found: {what}{below}{unknown_scheme_hint(reference)}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = str(err).replace(str(path), reference)  # results name the reference, not this machine's path
        raise ImageError(f"image {reference!r} is corrupt or not an image ({type(err).__name__}: {reason})") from err


register_image_source("file", lambda reference, images_dir: load_file_image(reference[len("file:"):], images_dir))
register_image_source("world", "circuits.vision.render:load_reference")  # scenes of circuits.vision.world
