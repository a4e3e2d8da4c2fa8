"""CARVE as a pipeline over any supported VLM: maps, contrast, regions, and the two-image re-query.

Context:
    :func:`carve` runs the method of Ge et al. (arXiv 2509.06461; code ``YuyaoGe/CARVE``,
    ``carve/pipeline.py``): greedy generation with attention capture for the general instruction G and
    the task query Q (:func:`circuits.vision.carve_maps.step_attention`), their fused contrast
    (:func:`~circuits.vision.carve_maps.fuse_contrast`), the strongest regions
    (:func:`circuits.vision.carve_regions.region_mask`), the masked crop, and a final answer to Q with
    two images in one prompt: the original, then the refined one.

    The texts are options. The code's are G = "Write a general description of the image." and
    Q = the question, each followed by " Answer the question using a single word or phrase."
    (:data:`PAPER_PROMPTS`). ``synth-llava`` was trained on "Describe this image." and bare questions,
    so it is asked in its own forms (:data:`MODEL_PROMPTS`, looked up by model name in
    :func:`prompts_for`).

    Two images: the prompt holds two image parts, written by the processor's chat template when it has
    one, else as two of the family's placeholders before the text; families whose processors take a
    list of images per prompt get ``[[original, refined]]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float
from PIL import Image

from circuits.vision.carve_maps import LAMBDA, STEP_MODES, StepAttention, fuse_contrast, step_attention
from circuits.vision.carve_regions import mask_box, refined_image, region_mask
from probe.errors import InputError


@dataclass(frozen=True)
class CarvePrompts:
    """The texts CARVE asks with.

    Attributes:
        general: the general instruction G.
        suffix: appended (after a space) to G and to the question; empty: none.
    """

    general: str = "Write a general description of the image."
    suffix: str = "Answer the question using a single word or phrase."

    def ask(self, text: str) -> str:
        return f"{text} {self.suffix}" if self.suffix else text


PAPER_PROMPTS = CarvePrompts()
"""The code's texts (``GENERAL_INSTRUCTION`` and ``ANSWER_SUFFIX``)."""

MODEL_PROMPTS: dict[str, CarvePrompts] = {
    "synth-llava": CarvePrompts(general="Describe this image.", suffix=""),
}
"""Models trained on other forms of the request: their own forms (synth-llava's training prompts)."""


def prompts_for(model_name: str) -> CarvePrompts:
    """The model's own request forms where registered, else the paper's."""
    return MODEL_PROMPTS.get(model_name, PAPER_PROMPTS)


@dataclass(frozen=True)
class CarveOptions:
    """How CARVE runs.

    Attributes:
        prompts: the general instruction and the suffix (None: :func:`prompts_for` the model).
        max_new_tokens: steps recorded per map generation (the code's 32).
        answer_tokens: most tokens of the final answer.
        layers: layers whose maps are summed (None: the code's 20..25 of 32 at the same relative depth).
        lam: lambda of ``A^Q / (A^G + lambda)``.
        step_mode: ``all`` (steps weighted t + 1, the code's v4) or ``last`` (the paper's t_end).
        top_percent: share of pixels kept by the threshold, and of regions kept (the code's 0.2).
        min_regions: fewest regions kept (the code's 3).
    """

    prompts: CarvePrompts | None = None
    max_new_tokens: int = 32
    answer_tokens: int = 32
    layers: tuple[int, ...] | None = None
    lam: float = LAMBDA
    step_mode: str = "all"
    top_percent: float = 0.2
    min_regions: int = 3

    def __post_init__(self):
        if self.step_mode not in STEP_MODES:
            raise InputError(f"CARVE step mode {self.step_mode!r} is unknown; use one of {', '.join(STEP_MODES)}")
        if not 0.0 < self.top_percent <= 1.0:
            raise InputError(f"CARVE top_percent {self.top_percent} must lie in (0, 1]; the code uses 0.2")
        if self.max_new_tokens < 1 or self.answer_tokens < 1 or self.min_regions < 1:
            raise InputError("CARVE's token budgets and min_regions must be at least 1")
        if self.lam < 0:
            raise InputError(f"CARVE lambda {self.lam} must not be negative; the code uses 1e-8")


@dataclass(frozen=True)
class CarveResult:
    """What :func:`carve` found and answered.

    Attributes:
        answer: the answer to the question with the original and the refined image.
        plain_answer: the answer with the original image alone (the Q map generation's text).
        maps: the fused contrast map at image resolution ``[height, width]``.
        mask: the kept regions ``[height, width]``.
        box: the mask's bounding box ``(left, top, right, bottom)``, right/bottom exclusive.
        refined_image: the masked, cropped and resized image.
        query, general: the recorded step attentions of Q and G.
    """

    answer: str
    plain_answer: str
    maps: Float[np.ndarray, "height width"]
    mask: Bool[np.ndarray, "height width"]
    box: tuple[int, int, int, int]
    refined_image: Image.Image
    query: StepAttention
    general: StepAttention

    @property
    def peak(self) -> tuple[int, int]:
        """``(x, y)`` of the contrast map's largest value."""
        y, x = np.unravel_index(int(np.argmax(self.maps)), self.maps.shape)
        return int(x), int(y)


def resolved(options: CarveOptions, model) -> CarveOptions:
    """``options`` with the prompts filled in for ``model``."""
    return options if options.prompts is not None else replace(options, prompts=prompts_for(model.name))


def general_attention(model, image: Image.Image, options: CarveOptions = CarveOptions()) -> StepAttention:
    """The general instruction's step attention on ``image`` (reusable for every question about it)."""
    options = resolved(options, model)
    return step_attention(model, options.prompts.ask(options.prompts.general), image,
                          max_new_tokens=options.max_new_tokens, layers=options.layers)


def carve(model, image, question: str, options: CarveOptions = CarveOptions(),
          general: StepAttention | None = None) -> CarveResult:
    """CARVE's answer to ``question`` about ``image``.

    Args:
        model: a vision-language :class:`~probe.models.LoadedModel` (a family whose image tokens form
            a known grid: LLaVA-like square grids, Qwen2-VL).
        image: a PIL image or a file path.
        question: the task query Q (the suffix of ``options.prompts`` is added).
        options: see :class:`CarveOptions`.
        general: G's step attention on this image, when already computed (:func:`general_attention`).

    Example:
        >>> result = carve(load_model("synth-llava"), scene_image, "Is there a fork in the image?")
        >>> result.answer, result.plain_answer, result.box
    """
    from probe.models.vlm_inputs import load_image

    options = resolved(options, model)
    image = load_image(image, 0)
    general = general if general is not None else general_attention(model, image, options)
    query = step_attention(model, options.prompts.ask(question), image, max_new_tokens=options.max_new_tokens,
                           layers=general.layers)
    fused = fuse_contrast(query, general, image.size, lam=options.lam, step_mode=options.step_mode)
    mask = region_mask(fused, top_percent=options.top_percent, min_regions=options.min_regions)
    refined = refined_image(image, mask)
    answer = answer_with_images(model, options.prompts.ask(question), [image, refined], options.answer_tokens)
    return CarveResult(answer=answer, plain_answer=query.text, maps=fused, mask=mask, box=mask_box(mask),
                       refined_image=refined, query=query, general=general)


def multi_image_inputs(model, prompt: str, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
    """Processor inputs of one prompt holding several images, in order, before the text."""
    from probe.models.vision import vision_format
    from probe.models.vlm_inputs import check_vision_model

    check_vision_model(model)
    processor = model.processor
    if getattr(processor, "chat_template", None):
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
    else:
        fmt = vision_format(model.hf)
        text = (fmt.placeholder or getattr(processor, "image_token", "<image>")) * len(images) + prompt
    nested = vision_format(model.hf).nested_images
    encoded = processor(text=[text], images=[list(images)] if nested else list(images), return_tensors="pt")
    return {name: value for name, value in encoded.items() if isinstance(value, torch.Tensor)}


def answer_with_images(model, prompt: str, images: Sequence[Image.Image], max_new_tokens: int) -> str:
    """The greedy answer to ``prompt`` asked with all of ``images`` in one prompt."""
    inputs = multi_image_inputs(model, prompt, images)
    device = next(model.hf.parameters()).device
    with torch.no_grad():
        out = model.hf.generate(**{k: v.to(device) for k, v in inputs.items()}, max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=model.tokenizer.pad_token_id)
    return model.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
