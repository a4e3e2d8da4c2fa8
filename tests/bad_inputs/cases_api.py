"""Bad-input rows: the capture API, records in memory, the ACT search and evaluation API."""

from __future__ import annotations

import json
from dataclasses import replace

import torch

from circuits.discovery.ablation import ablate_heads
from circuits.discovery.attribution import attribution_patching, eap_ig
from circuits.discovery.behaviour import task_behaviour
from circuits.discovery.contrast import ContrastSet
from circuits.discovery.ground_truth import GroundTruth, circuit_from_scores, load_ground_truth
from circuits.discovery.methods import discover
from circuits.discovery.patching import activation_patching
from circuits.discovery.sae_method import SAEOptions, sae_discovery
from circuits.discovery.sae_train import load_sae
from circuits.discovery.scores import precision_recall_at_k, roc_auc
from circuits.discovery.tasks import load_task
from circuits.evaluation.harness import EvalConfig
from circuits.evaluation.scoring import score_items
from circuits.evaluation.tasks import Item
from circuits.rhythm.credit import CreditConfig, credit_weights, rhythm_credit, shape_advantages
from circuits.sinks.search import SearchConfig, search_space
from probe import CaptureConfig, capture
from tests.bad_inputs.table import Case, api

def _capture(env, prompts="Hello there", engine="hf", **config):
    return capture(env.tiny, prompts, CaptureConfig(**config), engine=engine)


def _task_file(env, **fields):
    """A one-item IOI file in the row's scratch folder."""
    record = {"prompt": "When Mary and John left, John gave it to", "corrupted": "When Mary and John left, Anna gave "
              "it to", "answer": " Mary", "subject": " John", **fields}
    path = env.tmp / "items.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


def _ioi_behaviour(env, contrast=None, batch_size=4):
    contrast = contrast or load_task("ioi", env.tiny.tokenizer).contrast
    return task_behaviour(env.tiny, contrast, batch_size)


def _foreign_set():
    """A contrast set whose ids lie beyond the tiny model's vocabulary (another tokenizer's)."""
    return ContrastSet.left_padded("ioi", [[1, 2]], [[1, 3]], [10**6], [4], ["x"], pad_id=0)


def _tiny_set(env):
    return load_task("ioi", env.tiny.tokenizer).contrast


LONG_ITEM = Item("word " * 200 + "\nAnswer:", (" yes", " no"), 0)

CASES: list[Case] = [
    api("capture-bytes", lambda env: _capture(env, b"Hello"), "bytes"),
    api("capture-no-prompts", lambda env: _capture(env, []), "no prompts"),
    api("capture-empty-prompt", lambda env: _capture(env, ["ok", "  "]), "empty"),
    api("capture-too-long", lambda env: _capture(env, "word " * 400), "context"),
    api("capture-layer-out-of-range", lambda env: _capture(env, layers=(9,)), "out of range"),
    api("capture-empty-layers", lambda env: _capture(env, layers=()), "empty"),
    api("capture-float-layer", lambda env: _capture(env, layers=(1.5,)), "integers"),
    api("capture-bad-mode", lambda env: CaptureConfig(mode="full"), "mode"),
    api("capture-zero-chunk", lambda env: CaptureConfig(chunk_size=0), "chunk_size"),
    api("capture-zero-block", lambda env: CaptureConfig(block_size=0), "block_size"),
    api("capture-position-past-prompt", lambda env: _capture(env, head_output_positions=(50,)), "beyond"),
    api("capture-unknown-engine", lambda env: _capture(env, engine="jax"), "engine"),
    api("capture-unknown-backend", lambda env: _capture(env, backend="nope"), "unknown attention backend"),
    api("capture-pattern-too-large", lambda env: _capture(env, mode="pattern", pattern_bytes_limit=10), "pattern mode"),
    api("record-stat-missing-layer", lambda env: _capture(env, layers=(0,)).stat(2, "entropy"), "recorded layers"),
    api("record-pattern-in-stats-mode", lambda env: _capture(env, layers=(0,)).pattern(0), "mode='pattern'"),
    api("search-layer-past-model", lambda env: search_space(SearchConfig(layers=(99,)), 30, 9), "out of range"),
    api("search-beta", lambda env: SearchConfig(beta=2.0), "beta"),
    api("search-tau", lambda env: SearchConfig(tau=0.0), "tau"),
    api("score-item-past-context", lambda env: score_items(env.tiny, [LONG_ITEM]), "context"),
    api("eval-no-test-items", lambda env: EvalConfig(n_test=0), "n_test"),
    api("capture-config-unknown-key", lambda env: CaptureConfig.from_dict({**CaptureConfig().to_dict(), "colour": 1}),
        "colour"),
    api("capture-replace-bad-chunk", lambda env: replace(CaptureConfig(), chunk_size=-3), "chunk_size"),
    api("credit-lengths-differ", lambda env: credit_weights(torch.ones(5), torch.ones(4)), "one value of each"),
    api("credit-q-zero", lambda env: CreditConfig(q=0.0), "(0, 1]"),
    api("credit-q-above-one", lambda env: CreditConfig(q=1.5), "(0, 1]"),
    api("credit-gamma-below-one", lambda env: CreditConfig(gamma_amp=0.5), "gamma_amp must be a number >= 1"),
    api("credit-alpha-outside", lambda env: CreditConfig(alpha=1.5), "alpha must lie in [0, 1]"),
    api("credit-k-zero", lambda env: CreditConfig(k=0), "integer >= 1"),
    api("credit-unknown-strategy", lambda env: CreditConfig(strategy="random"), "coupled"),
    api("credit-advantages-do-not-fit", lambda env: shape_advantages(torch.ones(3), torch.ones(2, 4)), "do not fit"),
    api("credit-prompts-responses-differ", lambda env: rhythm_credit(env.tiny, [[1, 2]], [[3] * 12, [4] * 12]),
        "one prompt per response"),
    api("circuits-scores-wrong-shape", lambda env: roc_auc(torch.zeros(4, 8), load_ground_truth("ioi")), "shape"),
    api("circuits-empty-truth", lambda env: GroundTruth(task="t", model="m", n_layers=2, n_heads=3, heads=frozenset()),
        "no heads"),
    api("circuits-k-zero", lambda env: precision_recall_at_k(torch.zeros(12, 12), load_ground_truth("ioi"), 0),
        "k must be"),
    api("circuits-unknown-task", lambda env: load_ground_truth("colored_objects"), "unknown ground-truth task"),
    api("circuits-threshold-and-top-k",
        lambda env: circuit_from_scores(torch.ones(2, 3), task="t", model="m", threshold=0.1, top_k=2), "exactly one"),
    api("task-answer-not-one-token", lambda env: load_task("ioi", env.tiny.tokenizer,
                                                           _task_file(env, answer=" Marylebonequux")), "one token"),
    api("task-unknown", lambda env: load_task("ioi2", env.tiny.tokenizer), "unknown task"),
    api("task-file-missing", lambda env: load_task("docstring", env.tiny.tokenizer, env.tmp / "none.jsonl"),
        "make_docstring.py"),
    api("task-item-without-contrast", lambda env: load_task("ioi", env.tiny.tokenizer, _task_file(env, subject=None)),
        "subject"),
    api("behaviour-zero-batch", lambda env: _ioi_behaviour(env, batch_size=0), "batch_size"),
    api("behaviour-other-tokenizer", lambda env: _ioi_behaviour(
        env, ContrastSet.left_padded("ioi", [[1, 2]], [[1, 3]], [10**6], [4], ["x"], pad_id=0)), "another tokenizer"),
    api("patching-other-tokenizer", lambda env: activation_patching(env.tiny, _foreign_set()), "another tokenizer"),
    api("patching-zero-heads-per-forward", lambda env: activation_patching(env.tiny, _tiny_set(env), heads_per_forward=0),
        "heads_per_forward"),
    api("patching-unknown-ablation", lambda env: activation_patching(env.tiny, _tiny_set(env), ablation="zero"),
        "ablation"),
    api("eap-other-tokenizer", lambda env: attribution_patching(env.tiny, _foreign_set()), "another tokenizer"),
    api("eap-ig-zero-steps", lambda env: eap_ig(env.tiny, _tiny_set(env), steps=0), "steps must be"),
    api("eap-ig-unknown-path", lambda env: eap_ig(env.tiny, _tiny_set(env), interpolate="edges"), "interpolate"),
    api("sae-unknown-position", lambda env: sae_discovery(env.tiny, _tiny_set(env), SAEOptions(position="first")),
        "position"),
    api("sae-unknown-score", lambda env: sae_discovery(env.tiny, _tiny_set(env), score="vertex"), "score"),
    api("sae-other-tokenizer", lambda env: sae_discovery(env.tiny, _foreign_set()), "another tokenizer"),
    api("sae-folder-missing", lambda env: load_sae(env.tmp / "no-sae"), "not an SAE folder"),
    api("discover-unknown-method", lambda env: discover(env.tiny, _tiny_set(env), "acdc"), "unknown discovery method"),
    api("ablate-head-outside", lambda env: ablate_heads(env.tiny, _tiny_set(env), [(9, 0)]), "outside the model"),
    api("ablate-unknown-mode", lambda env: ablate_heads(env.tiny, _tiny_set(env), [(0, 0)], mode="zero"), "mode"),
]
