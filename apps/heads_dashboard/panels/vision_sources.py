"""The vision panel's inputs: an image (a synthetic-world scene, or an uploaded file) and a
prompt, read from the widgets and checked before any model work.

Uploads arrive from ``dcc.Upload`` as a ``data:`` URL (base64). They are decoded with PIL,
refused past :data:`MAX_UPLOAD_BYTES` or :data:`MAX_UPLOAD_PIXELS`, and every way a file can fail
to be an image becomes one :class:`~probe.errors.InputError` naming the file and the fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from jaxtyping import UInt8
from PIL import Image, UnidentifiedImageError

from circuits.vision.language import CAPTION_PROMPT, question
from circuits.vision.render import render
from circuits.vision.world import PARTNER, SPLITS, Scene, scene_at
from probe.errors import InputError

from apps.heads_dashboard.panels.rhythm import Box, whole_number

MAX_UPLOAD_BYTES = 5 * 2**20
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_SCENE_INDEX = 1_000_000
MAX_PROMPT_CHARS = 500
WORLD, UPLOAD = "world", "upload"
SOURCE_KINDS = (WORLD, UPLOAD)
DEFAULT_PROMPT = CAPTION_PROMPT


@dataclass(frozen=True)
class ImageSource:
    """Where the image comes from: ``key`` names it in caches (a world reference, or the
    upload's SHA-1); ``scene`` is the world scene (None for uploads)."""

    key: str
    label: str
    image: Image.Image
    scene: Scene | None = None

    @property
    def truth(self) -> frozenset[str] | None:
        """The categories in the image (world scenes), or None when unknown (uploads)."""
        return self.scene.names if self.scene is not None else None

    def hint(self) -> str:
        """What is in a world scene, and for a scene missing a planted partner, the question to ask."""
        if self.scene is None:
            return f"uploaded image {self.label}: no ground truth"
        names = ", ".join(obj.name for obj in self.scene.objects)
        absent = sorted({PARTNER[n] for n in self.scene.names if n in PARTNER} - self.scene.names)
        line = f"{self.scene.reference}: {names} (clutter {self.scene.clutter})"
        if absent:
            line += f"; planted partner absent: {', '.join(absent)} (try \"{question(absent[0])}\")"
        return line


def world_source(split: str | None, index: Box) -> ImageSource:
    """Scene ``index`` of a world split, drawn."""
    if split not in SPLITS:
        raise InputError(f"unknown world split {split!r}; choose one of {', '.join(SPLITS)}")
    scene = scene_at(split, whole_number(index, "scene index", 0, MAX_SCENE_INDEX))
    return ImageSource(scene.reference, scene.reference, render(scene), scene)


def decode_upload(contents: str | None, filename: str | None = None) -> ImageSource:
    """An uploaded file (``dcc.Upload``'s ``contents``) as an RGB image, or one InputError."""
    name = repr(filename) if filename else "the upload"
    if not contents:
        raise InputError("no image uploaded yet: drop a PNG or JPEG on the upload box, or choose a world scene")
    header, comma, data = contents.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise InputError(f"{name} did not arrive as a file upload; upload it again")
    mime = header[len("data:"):-len(";base64")] or "an unknown type"
    if not mime.startswith("image/"):
        raise InputError(f"{name} is {mime}, not an image; upload a PNG or JPEG")
    if len(data) * 3 // 4 > MAX_UPLOAD_BYTES:
        raise InputError(f"{name} is about {len(data) * 3 / 4 / 2**20:.1f} MB; the limit is "
                         f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB, upload a smaller image")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{name} is not valid base64 data; upload it again") from None
    return ImageSource(hashlib.sha1(raw).hexdigest(), filename or "upload", _open_image(raw, name))


def _open_image(raw: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise InputError(f"{name} is {width} x {height} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels, "
                                 "upload a smaller image")
            image.load()
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError) as err:
        raise InputError(f"{name} is not an image PIL can read ({type(err).__name__}); upload a PNG or JPEG") from None
    if width < 1 or height < 1:
        raise InputError(f"{name} has no pixels; upload a PNG or JPEG")
    return image.convert("RGB")


def image_source(kind: str | None, split: str | None, index: Box, contents: str | None,
                 filename: str | None) -> ImageSource:
    """The image the widgets name: a world scene or the upload."""
    if kind == WORLD:
        return world_source(split, index)
    if kind == UPLOAD:
        return decode_upload(contents, filename)
    raise InputError(f"unknown image source {kind!r}; choose one of {', '.join(SOURCE_KINDS)}")


def check_prompt(prompt: str | None) -> str:
    """The prompt, stripped; empty or over :data:`MAX_PROMPT_CHARS` characters is an error."""
    text = (prompt or "").strip()
    if not text:
        raise InputError(f"the prompt is empty; type one, such as {DEFAULT_PROMPT!r}")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"the prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}, shorten it")
    return text


def as_seen(image: Image.Image, image_processor: object) -> UInt8[np.ndarray, "height width 3"]:
    """The image as the model's processor crops it (shortest edge resized, then centre-cropped, as
    CLIP's processor does), so the patch grid lies over what the model read; processors without a
    centre crop leave it as it is."""
    size = getattr(image_processor, "size", None) or {}
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and "shortest_edge" in size and crop:
        scale = size["shortest_edge"] / min(image.size)
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - crop["width"]) // 2, (height - crop["height"]) // 2
        image = image.crop((left, top, left + crop["width"], top + crop["height"]))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
