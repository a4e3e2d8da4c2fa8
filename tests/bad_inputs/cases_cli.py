"""Bad-input rows: the command line's arguments, output paths, caches, model folders and task names.

Most rows fail before a model loads (argparse's ``type=`` checks, the output-path check, the cache
check, the task lookup); ``--model`` is the tiny folder, so a row that got further would still be
quick. Rows that need the hub to be unreachable set ``HF_ENDPOINT`` to a closed local port while
they run (``api`` rows around :func:`probe.cli.main`), so they do not depend on the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from probe.cli import main
from tests.bad_inputs.table import Case, Env, api, cli

UNREACHABLE_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": None, "HF_DATASETS_OFFLINE": None,
                   "HEADSCOPE_BBH_DIR": None}


@contextmanager
def environment(changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables while the block runs."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


def without_hub(argv: Callable[[Env], list[str]]) -> Callable[[Env], int]:
    """Run ``headscope argv`` with an unreachable hub and no BBH folder in the environment."""
    def run(env: Env) -> int:
        with environment(UNREACHABLE_HUB):
            return main(argv(env))

    return run


def written(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def model(env: Env) -> list[str]:
    return ["--model", str(env.tiny_folder)]


def capture(env: Env, *extra: str) -> list[str]:
    return ["capture", *model(env), "--prompt", "Hello there", "--out", str(env.tmp / "rec"), *extra]


def sinks(env: Env, *extra: str) -> list[str]:
    return ["sinks", *model(env), "--prompt", "Hello there", *(extra or ("--out", str(env.tmp / "s.jsonl")))]


def sinks_task(env: Env, *extra: str) -> list[str]:
    return ["sinks", *model(env), "--task", "hyperbaton", "--out", str(env.tmp / "s.jsonl"), *extra]


def act(env: Env, verb: str, *extra: str) -> list[str]:
    task = written(env.tmp / "t.jsonl", '{"input": "Go?", "target": "yes"}\n{"input": "Stop?", "target": "no"}\n')
    out = [] if "--out" in extra else ["--out", str(env.tmp / "act.jsonl")]
    return ["act", verb, *model(env), "--tasks", str(task), *out, *extra]


def broken_model_folder(env: Env) -> str:
    return str(written(env.tmp / "broken-model" / "config.json", "{not json").parent)


def load_on(device: str):
    def call(env: Env):
        from probe.models import load_model

        return load_model(str(env.tiny_folder), device=device)

    return call


CASES: list[Case] = [
    cli("cli-capture-top-negative", lambda env: capture(env, "--top", "-1"), "--top"),
    cli("cli-capture-top-not-a-number", lambda env: capture(env, "--top", "abc"), "--top"),
    cli("cli-capture-block-size-zero", lambda env: capture(env, "--block-size", "0"), "--block-size"),
    cli("cli-sinks-limit-zero", lambda env: sinks(env) + ["--limit", "0"], "--limit"),
    cli("cli-sinks-limit-negative", lambda env: sinks(env) + ["--limit", "-1"], "--limit"),
    cli("cli-sinks-min-visible-zero", lambda env: sinks(env) + ["--min-visible", "0"], "--min-visible"),
    cli("cli-act-n-calibration-negative", lambda env: act(env, "search", "--n-calibration", "-1"), "--n-calibration"),
    cli("cli-act-batch-size-zero", lambda env: act(env, "search", "--batch-size", "0"), "--batch-size"),
    cli("cli-act-max-prompt-chars-negative", lambda env: act(env, "eval", "--max-prompt-chars", "-5"),
        "--max-prompt-chars"),
    cli("cli-act-n-test-zero", lambda env: act(env, "eval", "--n-test", "0"), "--n-test"),
    cli("cli-act-n-random-negative", lambda env: act(env, "eval", "--n-random", "-1"), "--n-random"),
    cli("cli-dashboard-port-too-large", lambda env: ["dashboard", "--no-model", "--port", "99999"], "65535"),
    cli("cli-dashboard-port-zero", lambda env: ["dashboard", "--port", "0"], "--port"),
    cli("cli-dashboard-long-input-zero", lambda env: ["dashboard", "--long-input", "0"], "--long-input"),
    cli("cli-capture-out-below-a-file",
        lambda env: capture(env, "--out", str(written(env.tmp / "somefile.txt") / "rec")), "is a file, not a folder"),
    cli("cli-sinks-out-below-a-file",
        lambda env: sinks(env, "--out", str(written(env.tmp / "notes.txt") / "sub" / "s.jsonl")),
        "is a file, not a folder"),
    cli("cli-sinks-out-is-a-folder", lambda env: sinks(env, "--out", str(env.tmp)), "is a folder, not a file"),
    cli("cli-act-out-in-proc", lambda env: act(env, "search", "--out", "/proc/headscope-out/act.jsonl"),
        "--out: cannot write in /proc"),
    cli("cli-act-cache-is-a-folder", lambda env: act(env, "search", "--cache", str(env.tmp)), "--cache"),
    cli("cli-act-cache-garbage",
        lambda env: act(env, "eval", "--cache", str(written(env.tmp / "c.jsonl", "not json\nat all\n"))),
        "delete it or pass another --cache"),
    cli("cli-act-cache-without-header",
        lambda env: act(env, "search", "--cache", str(written(env.tmp / "c.jsonl", '{"layer": 0, "head": 1}\n'))),
        "header"),
    cli("cli-capture-corrupt-config", lambda env: ["capture", "--model", broken_model_folder(env), "--prompt", "hi",
                                                   "--out", str(env.tmp / "rec")], "config.json is not valid JSON"),
    cli("cli-sinks-bbh-dir-missing", lambda env: sinks_task(env, "--bbh-dir", str(env.tmp / "missing")),
        "does not exist"),
    cli("cli-act-unknown-task-in-bbh-dir",
        lambda env: ["act", "search", *model(env), "--tasks", "no_such_task", "--bbh-dir", str(env.tmp),
                     "--out", str(env.tmp / "act.jsonl")], "unknown task"),
    api("cli-sinks-bbh-name-without-folder-or-hub", without_hub(sinks_task), "pass --bbh-dir DIR"),
    api("cli-capture-hub-unreachable",
        without_hub(lambda env: ["capture", "--model", "org/model", "--prompt", "hi", "--out", str(env.tmp / "rec")]),
        "cannot reach the model hub"),
    api("cli-load-model-bogus-device", load_on("gpu0"), "gpu0"),
    api("cli-load-model-missing-cuda-device", load_on("cuda:99"), "cuda:99"),
]
