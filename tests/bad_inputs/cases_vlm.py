"""Bad-input rows of ``headscope vlm eval``: item sets, annotation and question files, the model,
the output folder, a restart with other settings.

Every row fails before an item is answered; the rows that get as far as a model use the tiny
text-only Llama folder (refused for having no image processor and no image-token id) or the
test answerer ``fake-hash``, so they are quick.
"""

from __future__ import annotations

import json

from tests.bad_inputs.cases_cli import written
from tests.bad_inputs.table import Case, Env, cli
from tests.hallucination.eval_fixtures import EvalFixture, write_fixture


def fixture(env: Env) -> EvalFixture:
    if "vlm" not in env.extra:
        env.extra["vlm"] = write_fixture(env.tmp / "vlm-set")
    return env.extra["vlm"]


def pope_only(env: Env, *extra: str, pope: str | None = None) -> list[str]:
    """``vlm eval`` of the fixture's POPE file (or ``pope``) with the test answerer."""
    set_ = fixture(env)
    return ["vlm", "eval", "--answerer", "fake-hash", "--out", str(env.tmp / "out"), "--images", str(set_.images),
            "--pope", pope or str(set_.pope), *extra]


def chair_only(env: Env, *extra: str, annotations: str | None = None) -> list[str]:
    set_ = fixture(env)
    return ["vlm", "eval", "--answerer", "fake-hash", "--out", str(env.tmp / "out"), "--images", str(set_.images),
            "--chair-captions", "--annotations", annotations or str(set_.annotations),
            "--chair-vocabulary", str(set_.vocabulary), *extra]


def pope_file(env: Env, record: dict) -> str:
    return str(written(env.tmp / "questions.jsonl", json.dumps(record) + "\n"))


def other_settings_run(env: Env) -> list[str]:
    """A folder holding a run with ``--answer-tokens 8`` (the default), restarted with 4."""
    out = env.tmp / "out"
    written(out / "run.json", json.dumps({"answerer": "fake-hash", "model": None, "pope_suffix": "",
                                          "caption_prompt": "Please describe this image in detail.",
                                          "answer_tokens": 8, "max_new_tokens": 96}))
    return pope_only(env, "--answer-tokens", "4")


def foreign_shard(env: Env) -> list[str]:
    """An output folder whose shard file holds lines that are not result records."""
    written(env.tmp / "out" / "shards" / "rank000-of-001.jsonl", "garbage\n{}\n")
    return pope_only(env)


QUESTION = {"question_id": 1, "image": "img0.png", "text": "Is there a dog in the image?", "label": "yes"}

CASES: list[Case] = [
    cli("vlm-eval-nothing-to-evaluate", lambda env: ["vlm", "eval", "--answerer", "fake-hash",
                                                     "--out", str(env.tmp / "out")], "nothing to evaluate"),
    cli("vlm-eval-unknown-answerer", lambda env: pope_only(env, "--answerer", "oracle"), "unknown answerer"),
    cli("vlm-eval-unknown-edit", lambda env: pope_only(env, "--edit", "paint-v9"), "unknown edit"),
    cli("vlm-eval-batch-size-zero", lambda env: pope_only(env, "--batch-size", "0"), "--batch-size"),
    cli("vlm-eval-max-new-tokens-negative", lambda env: pope_only(env, "--max-new-tokens", "-1"), "--max-new-tokens"),
    cli("vlm-eval-hf-without-model", lambda env: pope_only(env, "--answerer", "hf"), "--model"),
    cli("vlm-eval-text-only-model",
        lambda env: pope_only(env, "--answerer", "hf", "--model", str(env.tiny_folder)), "image"),
    cli("vlm-eval-pope-file-missing", lambda env: pope_only(env, pope=str(env.tmp / "no_such.json")),
        "does not exist"),
    cli("vlm-eval-pope-unknown-field",
        lambda env: pope_only(env, pope=pope_file(env, {**QUESTION, "answer": "yes"})), "unknown field"),
    cli("vlm-eval-pope-bad-label", lambda env: pope_only(env, pope=pope_file(env, {**QUESTION, "label": "maybe"})),
        "label"),
    cli("vlm-eval-pope-split-without-folder",
        lambda env: ["vlm", "eval", "--answerer", "fake-hash", "--out", str(env.tmp / "out"), "--pope", "random"],
        "--pope-dir"),
    cli("vlm-eval-pope-same-split-twice",
        lambda env: pope_only(env, "--pope", str(fixture(env).pope)), "occurs twice"),
    cli("vlm-eval-annotations-gzip-garbage",
        lambda env: chair_only(env, annotations=str(written(env.tmp / "objects.json.gz", "not gzip at all"))),
        "gzip"),
    cli("vlm-eval-annotations-not-json",
        lambda env: chair_only(env, annotations=str(written(env.tmp / "objects.json", "{broken"))), "not valid JSON"),
    cli("vlm-eval-chair-without-annotations",
        lambda env: ["vlm", "eval", "--answerer", "fake-hash", "--out", str(env.tmp / "out"), "--chair-captions"],
        "--annotations"),
    cli("vlm-eval-annotations-without-chair",
        lambda env: pope_only(env, "--annotations", str(fixture(env).annotations)), "--chair-captions"),
    cli("vlm-eval-object-not-in-vocabulary",
        lambda env: chair_only(env, annotations=str(written(env.tmp / "o.jsonl", json.dumps(
            {"image": "img0.png", "objects": ["unicorn"]}) + "\n"))), "not a category"),
    cli("vlm-eval-no-image-matches-annotations",
        lambda env: chair_only(env, annotations=str(written(env.tmp / "o.jsonl", json.dumps(
            {"image": "elsewhere.png", "objects": ["dog"]}) + "\n"))), "no images in"),
    cli("vlm-eval-vocabulary-not-chair-lists",
        lambda env: chair_only(env, "--chair-vocabulary", str(written(env.tmp / "v.json", "[1, 2]"))), "not an object"),
    cli("vlm-eval-images-missing", lambda env: pope_only(env, "--images", str(env.tmp / "no-images")), "--images"),
    cli("vlm-eval-out-is-a-file", lambda env: pope_only(env, "--out", str(written(env.tmp / "out.txt"))),
        "is a file"),
    cli("vlm-eval-out-in-proc", lambda env: pope_only(env, "--out", "/proc/headscope-vlm"), "cannot write"),
    cli("vlm-eval-restart-with-other-settings", other_settings_run, "other settings (answer_tokens)"),
    cli("vlm-eval-shard-not-results", foreign_shard, "not a result record"),
    cli("vlm-world-count-zero", lambda env: ["vlm", "world", "--count", "0", "--out", str(env.tmp / "w")], "--count"),
    cli("vlm-world-unknown-split", lambda env: ["vlm", "world", "--split", "nowhere", "--out", str(env.tmp / "w")],
        "--split"),
    cli("vlm-world-per-image-zero", lambda env: ["vlm", "world", "--per-image", "0", "--out", str(env.tmp / "w")],
        "--per-image"),
    cli("vlm-world-negative-world-seed", lambda env: ["vlm", "world", "--world-seed", "-1", "--out", str(env.tmp / "w")],
        "--world-seed"),
    cli("vlm-world-out-is-a-file", lambda env: ["vlm", "world", "--count", "2", "--out",
                                                 str(written(env.tmp / "taken", "x"))], "is a file"),
]
