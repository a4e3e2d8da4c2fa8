"""Model families: where each architecture keeps its decoder layers, declared, not branched on.

Context:
    headscope needs three facts about a model: its language-model decoder layers (in order),
    the attention module inside each, and that module's output projection (for per-head output
    hooks). Each family declares them in a :class:`FamilyAdapter`, registered by
    ``config.model_type``. Adding an architecture is adding one ``register_family`` call.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class HeadGeometry:
    """Attention geometry of a model's language part."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int | None


@dataclass(frozen=True)
class FamilyAdapter:
    """Where one architecture keeps its attention.

    Attributes:
        name: family name, for messages.
        layer_paths: dotted paths from the top model to the decoder-layer list; the first that
            exists is used (VLM wrappers nest the language model differently across versions).
        attention: attribute of a decoder layer holding the attention module.
        output_projection: attribute of the attention module holding the output projection.
        text_config: attribute of the model config holding the language model's config
            ("" when the config is the language model's own).
        takes_images: the model reads images through a processor (a vision-language model:
            loaded with ``AutoProcessor`` and ``AutoModelForImageTextToText``).
    """

    name: str
    layer_paths: tuple[str, ...]
    attention: str = "self_attn"
    output_projection: str = "o_proj"
    text_config: str = ""
    takes_images: bool = False

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        """The model's own container of decoder layers (mutable: tools may swap layers in it)."""
        for path in self.layer_paths:
            found = _get_path(model, path)
            if isinstance(found, nn.ModuleList):
                return found
        raise ValueError(f"{self.name}: none of {self.layer_paths} found on {type(model).__name__}")

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return list(self.layer_list(model))

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        return [getattr(layer, self.attention) for layer in self.layers(model)]

    def output_projections(self, model: nn.Module) -> list[nn.Module]:
        return [getattr(attn, self.output_projection) for attn in self.attention_modules(model)]

    def config(self, model: nn.Module):
        config = model.config
        return getattr(config, self.text_config) if self.text_config else config

    def geometry(self, model: nn.Module) -> HeadGeometry:
        cfg = self.config(model)
        n_heads = _first_attr(cfg, "num_attention_heads", "n_head")
        hidden = _first_attr(cfg, "hidden_size", "n_embd")
        head_dim = getattr(cfg, "head_dim", None) or hidden // n_heads
        return HeadGeometry(
            n_layers=len(self.layers(model)),
            n_heads=n_heads,
            n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
            head_dim=head_dim,
            context_length=getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None),
        )


_FAMILIES: dict[str, FamilyAdapter] = {}


def register_family(model_types: tuple[str, ...], adapter: FamilyAdapter, *, overwrite: bool = False) -> None:
    """Register ``adapter`` for each HF ``config.model_type`` in ``model_types``."""
    for model_type in model_types:
        if model_type in _FAMILIES and not overwrite:
            raise ValueError(f"model family {model_type!r} is already registered")
        _FAMILIES[model_type] = adapter


def family_of(model: nn.Module) -> FamilyAdapter:
    """The adapter for ``model``, or an error naming the supported families and the fix."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _FAMILIES:
        return _FAMILIES[model_type]
    raise ValueError(
        f"headscope has no adapter for model type {model_type!r}; supported: {supported_families()}. "
        "Register one with probe.models.families.register_family((model_type,), FamilyAdapter(...))."
    )


def family_for_type(model_type: object) -> FamilyAdapter | None:
    """The adapter registered for a config's ``model_type`` (None when there is none)."""
    return _FAMILIES.get(model_type) if isinstance(model_type, str) else None


def supported_families() -> list[str]:
    return sorted(_FAMILIES)


def _get_path(root: object, path: str) -> object | None:
    node = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _first_attr(cfg: object, *names: str) -> int:
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    raise ValueError(f"config {type(cfg).__name__} has none of {names}")


_DECODER = FamilyAdapter("llama-like", layer_paths=("model.layers", "layers"))
register_family(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2", "phi3"), _DECODER)
register_family(
    ("gpt2",),
    FamilyAdapter("gpt2", layer_paths=("transformer.h", "h"), attention="attn", output_projection="c_proj"),
)
_VLM = FamilyAdapter(
    "vision-language",
    layer_paths=("model.language_model.layers", "language_model.model.layers", "model.text_model.layers"),
    text_config="text_config",
    takes_images=True,
)
register_family(("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3", "smolvlm"), _VLM)
