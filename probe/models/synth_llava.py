"""``synth-llava``: a LLaVA whose language model is the real SmolLM2-135M-Instruct and whose small
CLIP-architecture vision tower and projector were trained by this project on the synthetic world.

Context:
    No real vision-language weights can be had offline, so headscope ships its own: the language
    model is the embedded default (frozen during training, so its weights are SmolLM2's own), and
    ``data/synth_llava/vision.safetensors`` holds the rest (the vision tower and the projector,
    a few MB, trained by ``data/make_synth_llava.py`` on scenes of :mod:`circuits.vision.world`).
    :func:`assemble` puts the two together in transformers' own ``LlavaForConditionalGeneration``
    and ``LlavaProcessor``; the registered name ``synth-llava`` saves the assembled model once as a
    plain HF folder in the cache, so it then loads like any other VLM folder.

    The image token ``<image>`` is added to SmolLM2's tokenizer; its embedding row is zero (LLaVA
    replaces it by image features before the language model sees it) and so is its unembedding
    (tied), so the text model's logits for every other token are SmolLM2's.

Geometry:
    112 x 112 images, 14-pixel patches: 64 image tokens (the CLS token is dropped, LLaVA's
    "default" feature selection); vision tower of 4 layers, width 256, 4 heads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerBase,
)

from probe.models.cache import cache_root
from probe.models.loading import ModelNotFoundError, ModelSource, register_model, registered_models
from probe.models.offline import SMOLLM2_INSTALL, save_folder_atomic, sha256_of

IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 112
PATCH_SIZE = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "data" / "synth_llava"
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.")

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=256,
    )


def llava_config(text_config: LlamaConfig, image_token_id: int) -> LlavaConfig:
    return LlavaConfig(
        vision_config=vision_config(),
        text_config=text_config,
        image_token_index=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=IMAGE_TOKENS,
        tie_word_embeddings=True,
    )


def chat_prompt(question: str) -> str:
    """The text a question is asked with (what the processor's chat template writes)."""
    return f"<|im_start|>user\n{IMAGE_TOKEN}\n{question}<|im_end|>\n<|im_start|>assistant\n"


def processor_for(tokenizer: PreTrainedTokenizerBase) -> LlavaProcessor:
    """A LLaVA processor over ``tokenizer`` (which must already hold :data:`IMAGE_TOKEN`).

    The PIL image processor where transformers has one (it needs no torchvision, and importing the
    plain name without torchvision prints a warning); both give the same pixels on 112-pixel images.
    """
    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor
    images = ImageProcessor(
        do_resize=True, size={"shortest_edge": IMAGE_SIZE}, do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )


def tokenizer_with_image_token(lm_folder: Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(lm_folder))
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def assemble(lm_folder: Path, vision_state: dict[str, torch.Tensor] | None = None,
             seed: int = 0) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """SmolLM2 from ``lm_folder`` inside a LLaVA, with ``vision_state`` (tower + projector) loaded,
    or freshly initialised from ``seed`` when None (the start of training)."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer_with_image_token(lm_folder)
    language = AutoModelForCausalLM.from_pretrained(str(lm_folder), dtype=torch.float32)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_config = language.config
    text_config.vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava_config(text_config, image_id)).float()
    _load_language(model, language, image_id)
    if vision_state is not None:
        missing = load_vision_state(model, vision_state)
        if missing:
            raise ValueError(f"synth-llava vision weights lack {len(missing)} tensors, e.g. {missing[0]}")
    return model.eval(), processor_for(tokenizer)


def _load_language(model: LlavaForConditionalGeneration, language, image_id: int) -> None:
    """Copy SmolLM2's weights in; the image token's (new) embedding row is zero."""
    state = language.model.state_dict()
    embed = state["embed_tokens.weight"]
    grown = torch.zeros(image_id + 1, embed.shape[1], dtype=embed.dtype)
    grown[: embed.shape[0]] = embed
    state["embed_tokens.weight"] = grown
    model.model.language_model.load_state_dict(state)
    model.tie_weights()


def vision_state_of(model: LlavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The trained part: vision tower and projector, keyed as in the full model's state dict."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.startswith(VISION_PREFIXES)}


def load_vision_state(model: LlavaForConditionalGeneration, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into the tower and projector; returns the names of tensors it lacked."""
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own or not k.startswith(VISION_PREFIXES))
    if unknown:
        raise ValueError(f"not a synth-llava vision weight: {unknown[0]}")
    for name, tensor in state.items():
        own[name].copy_(tensor.to(own[name].dtype))
    return sorted(k for k in own if k.startswith(VISION_PREFIXES) and k not in state)


def shipped_vision_state(folder: Path = WEIGHTS_DIR) -> dict[str, torch.Tensor]:
    path = folder / "vision.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: synth-llava's trained vision weights ship with the repository "
                                "(train them with python data/make_synth_llava.py)")
    return load_file(str(path))


def synth_llava_folder() -> Path:
    """The assembled model as an HF folder in the cache, built on first use (atomically); the
    folder's name carries the vision weights' digest, so retrained weights make a new folder."""
    weights = WEIGHTS_DIR / "vision.safetensors"
    if not weights.exists():
        raise ModelNotFoundError(f"{weights} is missing: synth-llava's vision weights ship with the headscope repository")
    target = cache_root() / "models" / f"synth-llava-{sha256_of(weights)[:12]}"
    if (target / "config.json").exists():
        return target
    model, processor = assemble(registered_models()["smollm2-135m"].folder(), shipped_vision_state())
    save_folder_atomic(target, model, processor)
    return target


register_model(
    ModelSource(
        name="synth-llava",
        description="LLaVA: SmolLM2-135M-Instruct (frozen) + a small CLIP vision tower trained on the synthetic world",
        install=SMOLLM2_INSTALL,
        folder=synth_llava_folder,
    )
)
