"""A capture's batch with images: :func:`vision_batch` turns (prompts, images) into the checked
:class:`~probe.capture.inputs.Batch` that :func:`probe.capture.capture` records, with the
processor's further inputs (``pixel_values`` ...) and the image-token mask."""

from __future__ import annotations

from dataclasses import replace

from probe.capture.config import CaptureConfig
from probe.capture.inputs import Batch, InputError, batch_from_ids
from probe.models.vlm_inputs import check_vision_model, vision_inputs


def vision_batch(model, prompts, images, config: CaptureConfig) -> Batch:
    """The checked batch of ``prompts`` with ``images`` (one per prompt, None for none)."""
    if images is None:
        raise InputError("CaptureConfig(image_span=True) measures attention to image tokens; pass images=[...] "
                         "(one per prompt) or set image_span=False")
    check_vision_model(model)
    encoded = vision_inputs(model, prompts, images)
    vocab = model.hf.get_input_embeddings().num_embeddings
    batch = batch_from_ids(model.tokenizer, encoded.input_ids, encoded.attention_mask,
                           model.geometry.context_length, vocab)
    extra = {name: value for name, value in encoded.inputs.items() if name not in ("input_ids", "attention_mask")}
    return replace(batch, model_inputs=extra, image_mask=encoded.image_mask)
