"""Vision-language models: load them with their processor and find their image-token id.

Context:
    A folder or hub id whose ``config.json`` names a family registered with
    ``takes_images=True`` (LLaVA, Qwen2-VL, Idefics3/SmolVLM, Gemma-3; see
    :mod:`probe.models.families`) is loaded with ``AutoProcessor`` and
    ``AutoModelForImageTextToText`` instead of a tokenizer and a causal LM. Its image-token id is
    read from the model's config (``image_token_id``, or LLaVA's older ``image_token_index``),
    else from the processor; the positions holding that id are the image tokens every record,
    statistic and edit refers to.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from probe.models.families import family_for_type


@dataclass(frozen=True)
class VisionFormat:
    """How a VLM family's processor wants its text and images.

    Attributes:
        placeholder: text inserted before a prompt that holds no image placeholder (None: the
            processor's ``image_token``); the processor expands it to the image's tokens.
        nested_images: the processor takes one list of images per prompt (Idefics3, SmolVLM,
            Gemma-3) rather than one flat list.
        own_positions: the model computes its own position ids from the attention mask
            (Qwen2-VL's 3-d rotary positions); others get left-padding-aware 1-d ids.
    """

    placeholder: str | None = None
    nested_images: bool = False
    own_positions: bool = False


_FORMATS: dict[str, VisionFormat] = {}


def register_vision_format(model_types: tuple[str, ...], fmt: VisionFormat) -> None:
    for model_type in model_types:
        _FORMATS[model_type] = fmt


def vision_format(model: nn.Module) -> VisionFormat:
    """The :class:`VisionFormat` of ``model``'s family (the default one when none is registered)."""
    return _FORMATS.get(getattr(getattr(model, "config", None), "model_type", None), VisionFormat())


register_vision_format(("qwen2_vl", "qwen2_5_vl"),
                       VisionFormat(placeholder="<|vision_start|><|image_pad|><|vision_end|>", own_positions=True))
register_vision_format(("idefics3", "smolvlm"), VisionFormat(nested_images=True))
register_vision_format(("gemma3",), VisionFormat(placeholder="<start_of_image>", nested_images=True))

IMAGE_TOKEN_FIELDS = ("image_token_id", "image_token_index")
"""Config attributes holding the image-token id, in the order they are tried."""


def takes_images(config: dict) -> bool:
    """True when a ``config.json`` (as a dict) names a registered vision-language family."""
    adapter = family_for_type(config.get("model_type"))
    return adapter is not None and adapter.takes_images


def load_vision_model(source: str, dtype) -> tuple[object, nn.Module]:
    """``(processor, model)`` of a VLM folder or hub id.

    Raises:
        ValueError: naming the part that failed (the processor or the model) and the fix; the
            caller adds the folder or hub id.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    except Exception as err:  # a broken config raises huggingface_hub's validation errors, not ValueError
        raise ValueError(f"its image-text-to-text model cannot be built ({_first_line(err)})") from err
    try:
        processor = AutoProcessor.from_pretrained(source)
    except Exception as err:  # transformers raises OSError, ValueError, TypeError ... for missing files
        raise ValueError(f"its processor cannot be loaded ({_first_line(err)}); a vision-language model needs its "
                         "processor's files (tokenizer, image processor, processor config) beside config.json: "
                         "save them with processor.save_pretrained(folder)") from err
    return processor, model


def _first_line(err: BaseException) -> str:
    """The first sentence of an error's first line (transformers' messages run on), or its class."""
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0][:200] if text else type(err).__name__


def image_token_id_of(model: nn.Module, processor: object | None) -> int | None:
    """The id of the image placeholder token: the model config's, else the processor's, else None."""
    config = getattr(model, "config", None)
    for name in IMAGE_TOKEN_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    value = getattr(processor, "image_token_id", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def processor_tokenizer(processor: object):
    """The tokenizer inside a processor (left padding is set on it by the loader)."""
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"the processor {type(processor).__name__} has no tokenizer")
    return tokenizer
