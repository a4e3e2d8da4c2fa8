"""Bad-input rows: the command line's arguments, output paths, caches, model folders and task names.

Most rows fail before a model loads (argparse's ``type=`` checks, the output-path check, the cache
check, the task lookup); ``--model`` is the tiny folder, so a row that got further would still be
quick. Rows that need the hub to be unreachable set ``HF_ENDPOINT`` to a closed local port while
they run (``api`` rows around :func:`probe.cli.main`), so they do not depend on the network.
"""

from __future__ import annotations

import json
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


def rhythm_traces(env: Env, *extra: str) -> list[str]:
    problems = written(env.tmp / "problems.jsonl", '{"question": "Tom has 2 apples and buys 3. How many?", '
                                                   '"answer": "#### 5"}\n')
    out = [] if "--out" in extra else ["--out", str(env.tmp / "traces.jsonl")]
    return ["rhythm", "traces", *model(env), "--problems", str(problems), "--max-new-tokens", "4", *out, *extra]


def rhythm_analyse(env: Env, *extra: str, response: str = "word " * 20) -> list[str]:
    """``rhythm analyse`` of one text trace (``response``) unless ``extra`` names the traces."""
    text = written(env.tmp / "mine.jsonl", json.dumps({"prompt": "Tom has 2 apples. How many?", "response": response}))
    traces = [] if "--traces" in extra else ["--text-traces", str(text)]
    out = [] if "--out" in extra else ["--out", str(env.tmp / "rhythm.jsonl")]
    return ["rhythm", "analyse", *model(env), *traces, *out, *extra]


def rhythm_perturb(env: Env, *extra: str, response: str = "Tom has 3 apples and buys 4 more, so he has 7. " * 2
                   ) -> list[str]:
    """``rhythm perturb`` of one text trace (``response``) unless ``extra`` names the traces."""
    text = written(env.tmp / "mine.jsonl", json.dumps({"prompt": "Tom has 3 apples. How many?", "response": response}))
    traces = [] if "--traces" in extra else ["--text-traces", str(text)]
    return ["rhythm", "perturb", *model(env), *traces, "--out", str(env.tmp / "perturb.json"), *extra]


def broken_model_folder(env: Env) -> str:
    return str(written(env.tmp / "broken-model" / "config.json", "{not json").parent)


def load_on(device: str):
    def call(env: Env):
        from probe.models import load_model

        return load_model(str(env.tiny_folder), device=device)

    return call


def circuits_discover(env: Env, *extra: str, task: str = "ioi") -> list[str]:
    """``circuits discover`` with EAP on 4 IOI items unless ``extra`` says otherwise."""
    method = [] if "--method" in extra else ["--method", "eap"]
    out = [] if "--out" in extra else ["--out", str(env.tmp / "found.json")]
    return ["circuits", "discover", *model(env), "--task", task, "--limit", "4", *method, *out, *extra]


def one_item_task(env: Env, answer: str) -> str:
    """A one-item IOI task file whose answer is ``answer``."""
    line = {"prompt": "When John and Mary went to the store, John gave a drink to", "answer": answer,
            "subject": " John", "corrupted": "When John and Mary went to the store, Anna gave a drink to"}
    return str(written(env.tmp / "task.jsonl", json.dumps(line) + "\n"))


def result_file(env: Env, name: str, model: str = "tiny", shape: tuple[int, int] = (3, 6)) -> str:
    """A result file as ``circuits discover`` writes it (the fields ``score`` and ``compare`` read)."""
    scores = [[float(layer * shape[1] + head) for head in range(shape[1])] for layer in range(shape[0])]
    record = {"kind": "circuit-discovery", "task": "ioi", "model": model, "method": "eap", "scores": scores,
              "seconds": 1.0}
    return str(written(env.tmp / name, json.dumps(record)))


def sae_of_another_model(env: Env) -> str:
    """An SAE folder saved for a model of 5 layers x 2 heads (the tiny Llama has 3 x 6)."""
    import torch

    from circuits.discovery.sae_train import new_sae, save_sae

    meta = {"model_name": "other-model", "headscope_n_layers": 5, "headscope_n_heads": 2,
            "headscope_position": "mean"}
    sae = new_sae(84, 4, torch.Generator().manual_seed(0), meta)
    return str(save_sae(sae, env.tmp / "other-sae"))


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
    cli("cli-rhythm-empty-trace-file",
        lambda env: rhythm_analyse(env, "--traces", str(written(env.tmp / "traces.jsonl"))), "is empty"),
    cli("cli-rhythm-trace-longer-than-context", lambda env: rhythm_analyse(env, response="word " * 200),
        "longer than the model's context window"),
    cli("cli-rhythm-response-shorter-than-band", lambda env: rhythm_analyse(env, response="5 apples."),
        "not longer than the band"),
    cli("cli-rhythm-window-zero", lambda env: rhythm_analyse(env, "--window", "0"), "--window"),
    cli("cli-rhythm-unknown-backend", lambda env: rhythm_analyse(env, "--backend", "flash"), "--backend"),
    cli("cli-rhythm-unknown-device", lambda env: rhythm_analyse(env, "--device", "gpu0"), "device"),
    cli("cli-rhythm-every-response-too-short",
        lambda env: rhythm_analyse(env, "--skip-short", response="5 apples."), "every trace has fewer than"),
    cli("cli-rhythm-band-reversed", lambda env: rhythm_analyse(env, "--band", "10,5"), "HI must be at least LO"),
    cli("cli-rhythm-band-not-numbers", lambda env: rhythm_analyse(env, "--band", "x"), "expected LO,HI"),
    cli("cli-rhythm-analyse-out-below-a-file",
        lambda env: rhythm_analyse(env, "--out", str(written(env.tmp / "notes.txt") / "rhythm.jsonl")),
        "is a file, not a folder"),
    cli("cli-rhythm-report-is-a-folder", lambda env: rhythm_analyse(env, "--report", str(env.tmp)), "--report"),
    cli("cli-rhythm-analyse-nothing", lambda env: ["rhythm", "analyse", "--out", str(env.tmp / "r.jsonl")],
        "nothing to analyse"),
    cli("cli-rhythm-traces-out-below-a-file",
        lambda env: rhythm_traces(env, "--out", str(written(env.tmp / "notes.txt") / "traces.jsonl")),
        "is a file, not a folder"),
    cli("cli-rhythm-traces-out-not-a-trace-file",
        lambda env: rhythm_traces(env, "--out", str(written(env.tmp / "t.jsonl", '{"kind": "header"}\n'))),
        "not a trace file"),
    cli("cli-rhythm-traces-temperature-negative", lambda env: rhythm_traces(env, "--temperature", "-0.5"),
        "--temperature"),
    cli("cli-rhythm-traces-problems-missing",
        lambda env: ["rhythm", "traces", *model(env), "--problems", str(env.tmp / "missing.jsonl"),
                     "--out", str(env.tmp / "t.jsonl")], "does not exist"),
    cli("cli-rhythm-perturb-traces-missing",
        lambda env: rhythm_perturb(env, "--traces", str(env.tmp / "missing.jsonl")), "does not exist"),
    cli("cli-rhythm-perturb-trace-too-short", lambda env: rhythm_perturb(env, response="5 apples."), "too short"),
    cli("cli-rhythm-perturb-rollout-tokens-zero", lambda env: rhythm_perturb(env, "--rollout-tokens", "0"),
        "--rollout-tokens"),
    cli("cli-rhythm-perturb-rank-below-two", lambda env: rhythm_perturb(env, "--rank", "1"), "--rank"),
    cli("cli-rhythm-perturb-band-with-analysis",
        lambda env: rhythm_perturb(env, "--analysis", str(env.tmp / "rhythm.jsonl"), "--band", "2,end"), "--band"),
    cli("cli-rhythm-perturb-analysis-missing",
        lambda env: rhythm_perturb(env, "--analysis", str(env.tmp / "missing.jsonl")), "does not exist"),
    cli("cli-circuits-unknown-method", lambda env: circuits_discover(env, "--method", "acdc"),
        "unknown discovery method"),
    cli("cli-circuits-unknown-task", lambda env: circuits_discover(env, task="sorting"), "unknown task"),
    cli("cli-circuits-task-file-missing",
        lambda env: circuits_discover(env, "--task-file", str(env.tmp / "missing.jsonl")), "does not exist"),
    cli("cli-circuits-out-in-proc", lambda env: circuits_discover(env, "--out", "/proc/headscope-out/found.json"),
        "--out: cannot write in /proc"),
    cli("cli-circuits-load-sae-missing",
        lambda env: circuits_discover(env, "--method", "sae", "--load-sae", str(env.tmp / "no-sae")),
        "--load-sae"),
    cli("cli-circuits-load-sae-corrupt",
        lambda env: circuits_discover(env, "--method", "sae", "--load-sae",
                                      str(written(env.tmp / "bad-sae" / "cfg.json", "{not json").parent)),
        "cannot read the SAE"),
    cli("cli-circuits-save-sae-without-sae-method",
        lambda env: circuits_discover(env, "--save-sae", str(env.tmp / "sae")), "--save-sae works with the SAE"),
    cli("cli-circuits-sae-of-another-geometry",
        lambda env: circuits_discover(env, "--method", "sae", "--load-sae", sae_of_another_model(env)),
        "not on"),
    cli("cli-circuits-limit-zero", lambda env: circuits_discover(env, "--limit", "0"), "--limit"),
    cli("cli-circuits-answer-not-one-token",
        lambda env: circuits_discover(env, "--task-file", one_item_task(env, " Maryanne-Louise")), "no item fits"),
    cli("cli-circuits-score-geometry-mismatch",
        lambda env: ["circuits", "score", "--scores", result_file(env, "found.json"), "--truth", "gpt2_small_ioi"],
        "12 layers x 12 heads"),
    cli("cli-circuits-score-reference-without-cut",
        lambda env: ["circuits", "score", "--scores", result_file(env, "a.json"),
                     "--reference", result_file(env, "ref.json")], "needs a cut"),
    cli("cli-circuits-score-unknown-truth",
        lambda env: ["circuits", "score", "--scores", result_file(env, "a.json"), "--truth", "sorting"],
        "neither a file nor a stored circuit"),
    cli("cli-circuits-compare-different-models",
        lambda env: ["circuits", "compare", result_file(env, "a.json"), result_file(env, "b.json", model="other"),
                     "--top-k", "3"], "cannot compare"),
    cli("cli-circuits-compare-not-a-result",
        lambda env: ["circuits", "compare", result_file(env, "a.json"), str(written(env.tmp / "b.json", "[]")),
                     "--top-k", "3"], "not a circuit-discovery result"),
    api("cli-sinks-bbh-name-without-folder-or-hub", without_hub(sinks_task), "pass --bbh-dir DIR"),
    api("cli-capture-hub-unreachable",
        without_hub(lambda env: ["capture", "--model", "org/model", "--prompt", "hi", "--out", str(env.tmp / "rec")]),
        "cannot reach the model hub"),
    api("cli-load-model-bogus-device", load_on("gpu0"), "gpu0"),
    api("cli-load-model-missing-cuda-device", load_on("cuda:99"), "cuda:99"),
]
