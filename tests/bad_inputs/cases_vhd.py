"""Bad-input rows of ``headscope vlm vhd``: the item source, the POPE file and its images, the
prompt, the output path, the model and T-VHD's k. All fail before a forward; the rows that reach
a model use the tiny text-only Llama folder (refused: no image processor) or a tiny LLaVA folder."""

from __future__ import annotations

import json

from tests.bad_inputs.cases_cli import written
from tests.bad_inputs.table import Case, Env, cli


def vhd(env: Env, *extra: str) -> list[str]:
    return ["vlm", "vhd", "--out", str(env.tmp / "vhd.json"), *extra]


def pope(env: Env, image: str = "missing.png") -> str:
    record = {"question_id": 1, "image": image, "text": "Is there a dog in the image?", "label": "yes"}
    return str(written(env.tmp / "pope.jsonl", json.dumps(record) + "\n"))


def tiny_llava_folder(env: Env) -> str:
    from tests.vision.tiny_vlms import save_tiny_vlm

    if "tiny-llava-folder" not in env.extra:
        env.extra["tiny-llava-folder"] = str(save_tiny_vlm("llava", env.tmp / "llava"))
    return env.extra["tiny-llava-folder"]


CASES: list[Case] = [
    cli("vhd-no-source", lambda env: vhd(env), "--world"),
    cli("vhd-two-sources", lambda env: vhd(env, "--world", "heldout", "--pope", pope(env)), "one item source"),
    cli("vhd-unknown-split", lambda env: vhd(env, "--world", "testing"), "invalid choice"),
    cli("vhd-zero-count", lambda env: vhd(env, "--world", "heldout", "--count", "0"), "count"),
    cli("vhd-negative-start", lambda env: vhd(env, "--world", "heldout", "--start", "-1"), "start"),
    cli("vhd-missing-pope-file", lambda env: vhd(env, "--pope", str(env.tmp / "absent.jsonl")), "not a file"),
    cli("vhd-pope-image-missing", lambda env: vhd(env, "--pope", pope(env), "--images", str(env.tmp)), "--images"),
    cli("vhd-images-not-a-folder", lambda env: vhd(env, "--pope", pope(env), "--images", pope(env)), "not a folder"),
    cli("vhd-empty-prompt", lambda env: vhd(env, "--world", "heldout", "--prompt", " "), "--prompt"),
    cli("vhd-out-is-a-folder", lambda env: ["vlm", "vhd", "--world", "heldout", "--out", str(env.tmp)], "folder"),
    cli("vhd-text-only-model", lambda env: vhd(env, "--world", "heldout", "--count", "1", "--model",
                                               str(env.tiny_folder)), "text-only"),
    cli("vhd-top-k-above-heads", lambda env: vhd(env, "--world", "heldout", "--count", "1", "--top-k", "7",
                                                 "--model", tiny_llava_folder(env)), "--top-k"),
]
