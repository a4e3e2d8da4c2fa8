"""Bad-input rows of ``headscope vlm carve``: every one fails before a model loads."""

from __future__ import annotations

from tests.bad_inputs.table import Case, Env, api, cli


def carve_args(env: Env, *extra: str) -> list[str]:
    return ["vlm", "carve", "--out", str(env.tmp / "carve.json"), *extra]


def _image(env: Env) -> str:
    from PIL import Image

    path = env.tmp / "scene.png"
    Image.new("RGB", (12, 9), (10, 200, 30)).save(path)
    return str(path)


def _text_only_model(env: Env):
    from circuits.vision.carve_pipeline import carve

    return carve(env.tiny, _image(env), "Is there a cat?")


def _bad_step_mode(env: Env):
    from circuits.vision.carve_pipeline import CarveOptions

    return CarveOptions(step_mode="first")


CASES: list[Case] = [
    cli("vlm-carve-neither-world-nor-image", lambda env: carve_args(env), "--world"),
    cli("vlm-carve-world-and-image", lambda env: carve_args(env, "--world", "heldout", "--image", _image(env),
                                                           "--question", "Is there a cat?"), "either"),
    cli("vlm-carve-image-without-question", lambda env: carve_args(env, "--image", _image(env)), "--question"),
    cli("vlm-carve-question-without-image", lambda env: carve_args(env, "--world", "heldout", "--question", "Q?"),
        "--image"),
    cli("vlm-carve-image-missing", lambda env: carve_args(env, "--image", str(env.tmp / "none.png"), "--question",
                                                         "Q?"), "does not exist"),
    cli("vlm-carve-count-zero", lambda env: carve_args(env, "--world", "heldout", "--count", "0"), "--count"),
    cli("vlm-carve-top-percent-out-of-range", lambda env: carve_args(env, "--world", "heldout", "--top-percent", "2"),
        "--top-percent"),
    cli("vlm-carve-unknown-step-mode", lambda env: carve_args(env, "--world", "heldout", "--step-mode", "first"),
        "--step-mode"),
    cli("vlm-carve-out-is-folder", lambda env: ["vlm", "carve", "--world", "heldout", "--out", str(env.tmp)], "folder"),
    cli("vlm-carve-bad-layers", lambda env: carve_args(env, "--world", "heldout", "--layers", "a,b"), "--layers"),
    api("carve-text-only-model", _text_only_model, "text-only"),
    api("carve-unknown-step-mode", _bad_step_mode, "step mode"),
]
