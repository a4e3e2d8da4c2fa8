"""Tiny random vision-language models saved as HF folders (config + processor + weights), offline.

Each builder makes transformers' own class (LLaVA, Qwen2-VL, Idefics3, SmolVLM) with a vision tower
and a language model of a few odd-sized layers, a processor whose tokenizer is the GPT-2 tokenizer
of ``../shared`` with the image tokens added, and saves both, so tests go through
:func:`probe.models.load_model` exactly as a user's folder would (:data:`SAVABLE`; the others are
built in memory and wrapped as ``load_model`` would). Images are resized to a few
dozen pixels, so one image is a handful of image tokens.

Example:
    >>> folder = save_tiny_vlm("llava", tmp_path / "llava")
    >>> model = load_model(str(folder))        # model.processor, model.image_token_id
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

import torch
import transformers as tf
from transformers.processing_utils import ProcessorMixin

from probe.models.loading import LoadedModel, load_model, vision_loaded
from tests.helpers import gpt2_tokenizer

HAVE_TORCHVISION = importlib.util.find_spec("torchvision") is not None

TEXT = dict(hidden_size=48, intermediate_size=38, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
            head_dim=8, max_position_embeddings=512)
"""The language model of every tiny VLM: 3 layers, GQA 6:2, head dim 8."""


def _image_processor(name: str):
    """The PIL-backed image processor class ``name + "Pil"`` (transformers >= 5.2x; no torchvision
    needed), else ``name`` itself (older releases, or the torchvision-backed one)."""
    return getattr(tf, f"{name}Pil", None) or getattr(tf, name)


def _tokenizer(extra: list[str]):
    tok = gpt2_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": extra})
    return tok


def _llava() -> tuple[torch.nn.Module, object]:
    tok = _tokenizer(["<image>"])
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = tf.CLIPVisionConfig(hidden_size=20, intermediate_size=22, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=30, patch_size=6)
    text = tf.LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **TEXT)
    config = tf.LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_id,
                            vision_feature_select_strategy="default", vision_feature_layer=-1,
                            projector_hidden_act="gelu")
    images = _image_processor("LlavaImageProcessor")(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    processor = tf.LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=6,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return tf.LlavaForConditionalGeneration(config), processor


@contextlib.contextmanager
def _video_processor_optional() -> Iterator[None]:
    """Without torchvision, transformers cannot check a processor's (absent) video processor, so
    no Qwen2-VL processor can be built; inside the block a missing one is accepted (tests only)."""
    if HAVE_TORCHVISION:
        yield
        return
    original = ProcessorMixin.get_possibly_dynamic_module

    def lookup(name):
        return type(None) if name == "VideoProcessorMixin" else original(name)

    with mock.patch.object(ProcessorMixin, "get_possibly_dynamic_module", staticmethod(lookup)):
        yield


def _qwen2_vl() -> tuple[torch.nn.Module, object]:
    names = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
    tok = _tokenizer(names)
    ids = {name: tok.convert_tokens_to_ids(name) for name in names}
    text = dict(TEXT, vocab_size=len(tok), rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2],
                                                            "rope_theta": 10000.0})
    vision = dict(depth=2, embed_dim=32, num_heads=2, hidden_size=TEXT["hidden_size"], mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    images = _image_processor("Qwen2VLImageProcessor")(min_pixels=56 * 56, max_pixels=56 * 84, patch_size=14,
                                                       merge_size=2, temporal_patch_size=2)
    video = {"video_processor": tf.Qwen2VLVideoProcessor()} if HAVE_TORCHVISION else {}
    with _video_processor_optional():
        processor = tf.Qwen2VLProcessor(image_processor=images, tokenizer=tok, **video)
    return tf.Qwen2VLForConditionalGeneration(config), processor


def _idefics3(model_class=None, config_class=None) -> tuple[torch.nn.Module, object]:
    """Idefics3, SmolVLM's architecture; both get Idefics3's processor (SmolVLM's own processor
    class needs ``num2words`` and torchvision's video processing)."""
    tok = _tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"])
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = dict(hidden_size=20, intermediate_size=22, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    text = tf.LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **TEXT)
    config = (config_class or tf.Idefics3Config)(vision_config=vision, text_config=text.to_dict(),
                                                 image_token_id=image_id, scale_factor=2)
    images = _image_processor("Idefics3ImageProcessor")(do_image_splitting=False, size={"longest_edge": 32},
                                          max_image_size={"longest_edge": 32})
    # (32 / 8)^2 patches merged 2x2 by the connector: 4 image tokens per image.
    processor = tf.Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=4)
    return (model_class or tf.Idefics3ForConditionalGeneration)(config), processor


def _smolvlm() -> tuple[torch.nn.Module, object]:
    return _idefics3(tf.SmolVLMForConditionalGeneration, tf.SmolVLMConfig)


TINY_VLMS: dict[str, Callable[[], tuple[torch.nn.Module, object]]] = {
    "llava": _llava, "qwen2_vl": _qwen2_vl, "idefics3": _idefics3, "smolvlm": _smolvlm,
}
"""Family -> builder of ``(random model, processor)``."""


def build_tiny_vlm(family: str, seed: int = 1234) -> tuple[torch.nn.Module, object]:
    """A tiny random VLM of ``family`` (a key of :data:`TINY_VLMS`) and its processor."""
    torch.manual_seed(seed)
    model, processor = TINY_VLMS[family]()
    return model.eval(), processor


def save_tiny_vlm(family: str, folder: Path, seed: int = 1234) -> Path:
    """Build a tiny VLM and save it (config, weights, processor) to ``folder``; returns ``folder``."""
    model, processor = build_tiny_vlm(family, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


SAVABLE = ("llava", "idefics3") + (("qwen2_vl",) if HAVE_TORCHVISION else ())
"""Families whose processor saves and loads here (Qwen2-VL's needs torchvision for its video part;
a SmolVLM folder loads SmolVLM's own processor, which needs ``num2words``)."""


def tiny_vlm_loaded(family: str, folder: Path) -> LoadedModel:
    """A tiny VLM as :func:`probe.models.load_model` returns it: saved to ``folder`` and loaded,
    or (Qwen2-VL without torchvision) built in memory and wrapped by ``vision_loaded``."""
    if family in SAVABLE:
        return load_model(str(save_tiny_vlm(family, folder)))
    model, processor = build_tiny_vlm(family)
    return vision_loaded(f"tiny-{family}", model, processor)
