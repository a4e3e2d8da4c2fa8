"""Bad-input rows: captures, loading and edits with images (vision-language models)."""

from __future__ import annotations

import dataclasses
import functools
import json

from probe import CaptureConfig, capture, load_model
from probe.capture import image_head_outputs
from probe.edits import BiasKeys, ImageKeys, ScaleHeads, apply_edits
from probe.models.vlm_inputs import generate_answers
from tests.bad_inputs.table import Case, api

COCO_LIKE = "a photo.jpg"


@functools.cache
def tiny_llava():
    """A tiny random LLaVA in memory (built once for the table)."""
    from probe.models.loading import vision_loaded
    from tests.vision.tiny_vlms import build_tiny_vlm

    model, processor = build_tiny_vlm("llava")
    return vision_loaded("tiny-llava", model, processor)


def _image(env, name: str = COCO_LIKE, data: bytes | None = None):
    """A file in the row's folder (a valid little JPEG unless ``data`` is given)."""
    from PIL import Image

    path = env.tmp / name
    if data is None:
        Image.new("RGB", (9, 7), (120, 30, 200)).save(path)
    else:
        path.write_bytes(data)
    return path


def _capture(model, images, prompts=("What is in the picture?",), **config):
    return capture(model, list(prompts), CaptureConfig(**config), images=images)


def _no_image_token(env):
    model = dataclasses.replace(tiny_llava(), image_token_id=None)
    return _capture(model, [_image(env)])


def _vlm_folder_without_processor(env):
    folder = env.tmp / "vlm"
    tiny_llava().hf.save_pretrained(folder)
    return load_model(str(folder))


def _vlm_folder_with_broken_type(env):
    folder = env.tmp / "vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": 3}))
    return load_model(str(folder))


def _record_with_float_image_mask(env):
    """A VLM record rewritten (with a fresh checksum) so that its image mask is not boolean."""
    from probe.capture.record import AttentionRecord
    from probe.capture.record_file import read_stored, write_record

    record = _capture(tiny_llava(), [_image(env)], layers=(0,))
    stored = read_stored(record.save(env.tmp / "rec"))
    tensors = dict(stored.tensors, image_mask=stored.tensors["image_mask"].float())
    path = write_record(env.tmp / "bad", tensors, record.metadata())
    return AttentionRecord.load(path)


def _image_keys_on_text_model(env):
    with apply_edits(env.tiny, [BiasKeys(ImageKeys(), 1.0)]):
        capture(env.tiny, ["Hello there"])


CASES: list[Case] = [
    api("vlm-missing-image", lambda env: _capture(tiny_llava(), [env.tmp / "absent.jpg"]), "does not exist"),
    api("vlm-corrupt-image", lambda env: _capture(tiny_llava(), [_image(env, "broken.jpg", b"\xff\xd8garbage")]),
        "not a readable image"),
    api("vlm-image-is-a-folder", lambda env: _capture(tiny_llava(), [env.tmp]), "not a file"),
    api("vlm-image-wrong-type", lambda env: _capture(tiny_llava(), [42]), "file path"),
    api("vlm-no-image-token-id", _no_image_token, "image-token id"),
    api("vlm-images-to-text-model", lambda env: _capture(env.tiny, [_image(env)]), "text-only"),
    api("vlm-image-count", lambda env: _capture(tiny_llava(), [_image(env)], prompts=("a", "b")), "one image"),
    api("vlm-two-placeholders", lambda env: _capture(tiny_llava(), [_image(env)], prompts=("<image><image> hi",)),
        "placeholder"),
    api("vlm-placeholder-without-image", lambda env: _capture(tiny_llava(), [None], prompts=("<image> hi",)),
        "placeholder"),
    api("vlm-image-span-without-images", lambda env: _capture(tiny_llava(), None, image_span=True), "image_span"),
    api("vlm-image-span-not-bool", lambda env: CaptureConfig(image_span="yes"), "image_span"),
    api("vlm-lens-engine", lambda env: capture(tiny_llava(), ["hi"], images=[_image(env)], engine="lens"), "lens"),
    api("vlm-head-outputs-without-image", lambda env: image_head_outputs(tiny_llava(), "hi", None), "image"),
    api("vlm-generate-on-text-model", lambda env: generate_answers(env.tiny, ["hi"], [_image(env)]), "text-only"),
    api("vlm-folder-without-processor", _vlm_folder_without_processor, "cannot load the model folder"),
    api("vlm-folder-broken-config", _vlm_folder_with_broken_type, "cannot load the model folder"),
    api("vlm-record-image-mask-not-bool", _record_with_float_image_mask, "image_mask has dtype"),
    api("edit-image-keys-on-text-model", _image_keys_on_text_model, "image-token id"),
    api("edit-image-keys-bias-on-heads", lambda env: BiasKeys(ScaleHeads(1.0), 1.0), "ImageKeys"),
]
