"""One call to capture attention from a batch of prompts, on HF or TransformerLens models.

Example:
    >>> from probe import load_model, capture, CaptureConfig
    >>> model = load_model("smollm2-135m")
    >>> record = capture(model, ["The capital of France is"], CaptureConfig(mode="pattern"))
    >>> record.pattern(layer=5).shape          # [head, query, key]
    >>> record.stat(5, "received_mean")        # ACT sink score per head and key

    A vision-language model takes images beside the prompts (one per prompt, None for none); the
    record's ``image_mask`` marks the image tokens:

    >>> record = capture(vlm, ["What is on the table?"], CaptureConfig(image_span=True), images=["photo.jpg"])
    >>> record.stat(1, "span_mass")            # [head, query]: attention to the image

    Token ids you already have (a prompt + response whose tokens must not be re-tokenized; a
    tokenizer may merge tokens across the boundary) go through :func:`capture_ids`.
"""

from __future__ import annotations

from typing import Literal

from jaxtyping import Int
from torch import Tensor

from probe.capture.config import CaptureConfig
from probe.capture.hf import Recorder, recording, run_forward
from probe.capture.inputs import Batch, InputError, batch_from_ids, check_layers, tokenize
from probe.capture.lens import lens_hooks, run_lens
from probe.capture.record import AttentionRecord
from probe.capture.vision import vision_batch
from probe.models.loading import LoadedModel
from probe.models.vlm_inputs import ImageLike

Engine = Literal["hf", "lens"]


def capture(
    model: LoadedModel,
    prompts: list[str] | str,
    config: CaptureConfig = CaptureConfig(),
    *,
    images: list[ImageLike] | ImageLike = None,
    engine: Engine = "hf",
) -> AttentionRecord:
    """Run ``prompts`` through ``model`` and record attention as ``config`` asks.

    Args:
        model: a loaded model (see :func:`probe.models.load_model`).
        prompts: one prompt or a list (left-padded into one batch).
        config: mode, layers, statistics, head-output positions, backend.
        images: for a vision-language model, one image per prompt (a file path, a PIL image,
            or None for a text-only item); the prompts then go through the model's processor
            (:func:`probe.models.vlm_inputs.vision_inputs`) and the record carries ``image_mask``.
        engine: ``"hf"`` (the Hugging Face model, any length) or ``"lens"`` (the same weights as
            a TransformerLens ``HookedTransformer``, through its hooks).

    Raises:
        InputError: empty prompts, prompts longer than the context, layers out of range, or a
            pattern-mode capture too large for ``config.pattern_bytes_limit``; images given to a
            text-only model, a missing or unreadable image, a model without an image-token id,
            or ``image_span`` without images.
    """
    layers = check_layers(config.layers, model.geometry)
    if images is None and not config.image_span:
        batch = tokenize(model.tokenizer, prompts, model.geometry.context_length)
    else:
        batch = vision_batch(model, prompts, images, config)
    return capture_batch(model, batch, layers, config, engine)


def capture_ids(
    model: LoadedModel,
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    config: CaptureConfig = CaptureConfig(),
    *,
    engine: Engine = "hf",
) -> AttentionRecord:
    """Like :func:`capture`, on token ids instead of text: the ids are read exactly as given.

    Example:
        >>> ids = torch.tensor([[1, 2, 3], [0, 4, 5]])    # row 1 is padded on the left
        >>> mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
        >>> record = capture_ids(model, ids, mask, CaptureConfig(mode="stats"))
        >>> record.tokens[1]                      # the strings of ids 4 and 5

    Args:
        model: a loaded model.
        input_ids: ``[batch, pos]`` token ids of ``model``'s tokenizer, left-padded.
        attention_mask: ``[batch, pos]``, 0 on the padding, 1 on the tokens.
        config: as for :func:`capture`.
        engine: as for :func:`capture`.

    Raises:
        InputError: as :func:`capture`, and for ids outside the vocabulary, a mask that is not
            left padding, or tensors of other shapes (see
            :func:`probe.capture.inputs.batch_from_ids`).
    """
    layers = check_layers(config.layers, model.geometry)
    vocab = model.hf.get_input_embeddings().num_embeddings
    batch = batch_from_ids(model.tokenizer, input_ids, attention_mask, model.geometry.context_length, vocab)
    return capture_batch(model, batch, layers, config, engine)


def capture_batch(model: LoadedModel, batch: Batch, layers: tuple[int, ...], config: CaptureConfig,
                  engine: Engine = "hf") -> AttentionRecord:
    """Record ``layers`` of ``model`` over a checked ``batch`` (what :func:`capture` and
    :func:`capture_ids` share once they have one)."""
    geometry = model.geometry
    if config.mode == "pattern":
        _check_pattern_size(batch.input_ids.shape, len(layers), geometry.n_heads, config)
    if engine == "hf":
        with recording(model.hf, config, layers, batch.attention_mask, batch.image_mask) as recorder:
            logits = run_forward(model.hf, batch.input_ids, batch.attention_mask, batch.model_inputs)
    elif engine == "lens" and batch.model_inputs:
        raise InputError("engine='lens' runs the language model alone and cannot take images; use engine='hf'")
    elif engine == "lens":
        recorder = Recorder(config=config)
        hooks = lens_hooks(config, layers, batch.attention_mask.to(model.lens().cfg.device), recorder)
        logits = run_lens(model.lens(), batch.input_ids, batch.attention_mask, hooks)
    else:
        raise InputError(f"engine must be 'hf' or 'lens', got {engine!r}")
    return _to_record(model.name, config, batch, geometry.n_heads, recorder, logits)


def _check_pattern_size(shape, n_layers: int, n_heads: int, config: CaptureConfig) -> None:
    batch, length = shape
    needed = batch * n_layers * n_heads * length * length * 4
    if needed > config.pattern_bytes_limit:
        raise InputError(
            f"pattern mode would hold {needed / 2**30:.1f} GiB of patterns ({batch} prompts x {n_layers} layers x "
            f"{n_heads} heads x {length}^2 floats), over the {config.pattern_bytes_limit / 2**30:.1f} GiB limit; "
            "use mode='stats', fewer layers, or raise pattern_bytes_limit"
        )


def _to_record(name, config, batch, n_heads, recorder: Recorder, logits) -> AttentionRecord:
    stats, patterns, head_outputs = {}, {}, {}
    for layer, calls in recorder.calls.items():
        first = calls[0]
        stats[layer] = {k: v.cpu() for k, v in first["stats"].items()}
        if "pattern" in first:
            patterns[layer] = first["pattern"].cpu()
        if "head_outputs" in first:
            head_outputs[layer] = first["head_outputs"].cpu()
    return AttentionRecord(
        model=name,
        config=config,
        tokens=batch.tokens,
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        n_heads=n_heads,
        stats=stats,
        patterns=patterns,
        head_outputs=head_outputs,
        last_logits=logits,
        image_mask=batch.image_mask,
    )
