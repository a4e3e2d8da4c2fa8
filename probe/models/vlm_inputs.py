"""(image, prompt) pairs -> a VLM's processor inputs, left-padded, with the image-token positions.

Context:
    :func:`vision_inputs` reads each image (a path or a PIL image; None: a text-only item),
    writes each prompt as the model expects it, and runs the processor once over the batch with
    left padding, so the last column of every row is its last prompt token (where generation
    continues). A prompt is written

    * as given, when it already holds the processor's image token (the caller placed it);
    * through the processor's chat template, when it has one (a user turn holding the image and
      the text, then the generation prompt);
    * else with the family's placeholder (:class:`~probe.models.vision.VisionFormat`) before it.

    :func:`generate_answers` batch-generates answers to (image, question) pairs, greedily.

Example:
    >>> model = load_model("path/to/llava-folder")
    >>> batch = vision_inputs(model, ["What is on the table?"], ["photo.jpg"])
    >>> batch.image_mask.sum()                 # image tokens in the batch
    >>> out = model.hf.generate(**batch.inputs, max_new_tokens=8)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from probe.errors import InputError
from probe.models.vision import vision_format

ImageLike = Union[str, os.PathLike, "PIL.Image.Image", None]  # noqa: F821


@dataclass(frozen=True)
class VisionBatch:
    """A VLM's processor output for a batch, left-padded.

    Attributes:
        inputs: every tensor the model's forward takes (``input_ids``, ``attention_mask``,
            ``pixel_values``, ``image_grid_thw`` ...), on the CPU.
        image_mask: True at image-token positions (``input_ids == image_token_id``).
    """

    inputs: dict[str, Tensor]
    image_mask: Bool[Tensor, "batch pos"]

    @property
    def input_ids(self) -> Int[Tensor, "batch pos"]:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> Int[Tensor, "batch pos"]:
        return self.inputs["attention_mask"]

    def to(self, device) -> dict[str, Tensor]:
        """The model inputs on ``device`` (for ``model.hf(**...)`` and ``generate``)."""
        return {name: value.to(device) for name, value in self.inputs.items()}


def check_vision_model(model) -> int:
    """``model``'s image-token id, or an :class:`InputError` saying why it cannot take images."""
    if getattr(model, "processor", None) is None:
        raise InputError(f"model {model.name!r} is a text-only model (it has no processor for images); load a "
                         "vision-language model folder (llava, qwen2_vl, idefics3, smolvlm ...) or leave images out")
    if model.image_token_id is None:
        raise InputError(f"model {model.name!r} has no image-token id (neither its config's image_token_id nor its "
                         "processor's); set model.image_token_id to the id of its image placeholder token")
    return model.image_token_id


def load_image(image: ImageLike, index: int):
    """Image ``index`` as an RGB PIL image (None stays None); one-line errors for bad files."""
    from PIL import Image, UnidentifiedImageError

    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, (str, os.PathLike)):
        raise InputError(f"image {index} is a {type(image).__name__}; pass a file path, a PIL image, or None")
    path = Path(image)
    if not path.is_file():
        raise InputError(f"image {index}: {path} does not exist or is not a file; pass an existing image file "
                         "(JPEG, PNG ...) or a PIL image")
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"image {index}: {path} is not a readable image ({reason}); it is damaged or not an "
                         "image: pass a JPEG or PNG file, or download it again") from None


def prompt_text(model, prompt: str, has_image: bool, index: int) -> str:
    """``prompt`` written as the processor expects it (see the module docstring)."""
    processor = model.processor
    marker = getattr(processor, "image_token", None) or "<image>"
    placed = prompt.count(marker)
    if placed > 1 or (placed and not has_image):
        raise InputError(f"prompt {index} holds {placed} image placeholders ({marker!r}) but has "
                         f"{'one image' if has_image else 'no image'}; give one image per prompt and at most one "
                         "placeholder (or none: it is inserted)")
    if placed:
        return prompt
    if getattr(processor, "chat_template", None):
        content = ([{"type": "image"}] if has_image else []) + [{"type": "text", "text": prompt}]
        return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
    if not has_image:
        return prompt
    placeholder = vision_format(model.hf).placeholder or marker
    return f"{placeholder}{prompt}"


def vision_inputs(model, prompts: Sequence[str] | str, images: Sequence[ImageLike] | ImageLike) -> VisionBatch:
    """Processor inputs of ``prompts`` with ``images`` (one per prompt, None for none), left-padded.

    Raises:
        InputError: a text-only model, a model without an image-token id, a missing or
            unreadable image, counts that differ, an empty prompt, or misplaced placeholders.
    """
    image_id = check_vision_model(model)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    if not prompts or len(images) != len(prompts):
        raise InputError(f"got {len(prompts)} prompts and {len(images)} images; give one image (or None) per prompt")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"prompt {index} is empty or not text; every prompt needs some text")
    pictures = [load_image(image, index) for index, image in enumerate(images)]
    texts = [prompt_text(model, p, img is not None, i) for i, (p, img) in enumerate(zip(prompts, pictures))]
    encoded = _run_processor(model, texts, pictures)
    inputs = {name: value for name, value in encoded.items() if isinstance(value, Tensor)}
    return VisionBatch(inputs=inputs, image_mask=inputs["input_ids"] == image_id)


def _run_processor(model, texts: list[str], pictures: list):
    """The processor over the batch: images flat or one list per prompt, as the family wants."""
    present = [p for p in pictures if p is not None]
    if not present:
        images = None
    elif vision_format(model.hf).nested_images:
        images = [[p] if p is not None else [] for p in pictures]
    else:
        images = present
    model.tokenizer.padding_side = "left"
    return model.processor(text=texts, images=images, return_tensors="pt", padding=True)


def generate_answers(model, prompts: Sequence[str], images: Sequence[ImageLike], *, max_new_tokens: int = 16,
                     batch_size: int = 8) -> list[str]:
    """Greedy answers to (image, prompt) pairs, ``batch_size`` pairs per ``generate`` call.

    Returns each answer's text (special tokens removed, stripped), in the order given.
    """
    answers: list[str] = []
    device = next(model.hf.parameters()).device
    for start in range(0, len(prompts), batch_size):
        batch = vision_inputs(model, prompts[start:start + batch_size], images[start:start + batch_size])
        with torch.no_grad():
            out = model.hf.generate(**batch.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=model.tokenizer.pad_token_id)
        new = out[:, batch.input_ids.shape[1]:]
        answers += [text.strip() for text in model.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers
