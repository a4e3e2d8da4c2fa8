"""The ``headscope`` subcommands of the circuits package: ``sinks``, ``act search``, ``act eval``,
``rhythm traces``, ``rhythm analyse``, ``rhythm perturb``, ``circuits discover``, ``circuits score``,
``circuits compare``.

Context:
    This module only builds their parsers; their run functions are in :mod:`circuits.sinks.cli`,
    :mod:`circuits.rhythm.cli` and ``circuits.discovery.cli_*``, imported when a command runs.
    It sits at the package's top level because importing anything under ``circuits.sinks`` runs
    that package's ``__init__``, which imports torch and transformers, and ``headscope --help``
    must answer without them. Counts are checked here by argparse; everything else before the
    model loads, in the run functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.cli_options import LazyCommand, int_list, non_negative_float, non_negative_int, positive_int
from probe.model_names import DEFAULT_MODEL

BBH_DIR_HELP = ("folder of BBH task files (NAME.json) for task names (default $HEADSCOPE_BBH_DIR; without one, "
                "names load from the hub dataset lukaemon/bbh through the datasets package)")


def register(subparsers) -> None:
    _register_sinks(subparsers)
    act = subparsers.add_parser("act", help="ACT calibration: head search and evaluation")
    verbs = act.add_subparsers(dest="act_command", required=True)
    _register_search(verbs)
    _register_eval(verbs)
    rhythm = subparsers.add_parser("rhythm", help="reasoning rhythm (WAAD, FAI; Li et al. 2025): traces and analysis")
    rhythm_verbs = rhythm.add_subparsers(dest="rhythm_command", required=True)
    _register_rhythm_traces(rhythm_verbs)
    _register_rhythm_analyse(rhythm_verbs)
    _register_rhythm_perturb(rhythm_verbs)
    circuits = subparsers.add_parser("circuits", help="circuit discovery (issue 23): discover, score, compare")
    circuits_verbs = circuits.add_subparsers(dest="circuits_command", required=True)
    _register_circuits_discover(circuits_verbs)
    _register_circuits_score(circuits_verbs)
    _register_circuits_compare(circuits_verbs)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, required=True, help="output JSON-lines file")
    p.add_argument("--bbh-dir", type=Path, default=None, help=BBH_DIR_HELP)


def _act_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default="hyperbaton,navigate,ruin_names,reasoning_about_colored_objects,geometric_shapes",
                   help="comma-separated BBH task names or .json/.jsonl paths")
    p.add_argument("--tau", type=float, default=0.1, help="ACT sink threshold, in (0, 1)")
    p.add_argument("--beta", type=float, default=0.4, help="ACT sink scale, in [0, 1]")
    p.add_argument("--min-visible", type=positive_int, default=1, help="sink guard at the last positions (1 = ACT raw)")
    p.add_argument("--layers", type=int_list, default=None, help="layers to search (default all)")
    p.add_argument("--n-calibration", type=positive_int, default=3, help="calibration items per task")
    p.add_argument("--max-prompt-chars", type=non_negative_int, default=300, help="leave out longer items (0: keep all)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--cache", type=Path, default=None, help="search cache (default: OUT with .cache.jsonl)")
    p.add_argument("--seed", type=int, default=0)


def _register_sinks(subparsers) -> None:
    p = subparsers.add_parser("sinks", help="detect attention sinks over prompts or a task's inputs")
    _common(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    source.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    source.add_argument("--task", help="BBH task name or .json/.jsonl path: its inputs are the prompts")
    p.add_argument("--limit", type=positive_int, default=16, help="at most this many prompts")
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--min-visible", type=positive_int, default=8, help="keys seen by fewer queries are not counted")
    p.set_defaults(func=LazyCommand("circuits.sinks.cli", "run_sinks"))


def _register_search(verbs) -> None:
    p = verbs.add_parser("search", help="score ACT calibration of each head on a calibration split")
    _common(p)
    _act_options(p)
    p.set_defaults(func=LazyCommand("circuits.sinks.cli", "run_search"))


def _register_eval(verbs) -> None:
    p = verbs.add_parser("eval", help="accuracy without calibration, with searched heads, with random heads")
    _common(p)
    _act_options(p)
    p.add_argument("--n-test", type=positive_int, default=30, help="test items per task")
    p.add_argument("--n-random", type=non_negative_int, default=2, help="random-head control draws")
    p.set_defaults(func=LazyCommand("circuits.sinks.cli", "run_eval"))


def band_range(text: str) -> tuple[int, int | None]:
    """FAI's band ``LO,HI`` (``10,100``) or ``LO,end`` (to the end of the response): 0 <= LO <= HI."""
    lo_text, comma, hi_text = text.partition(",")
    try:
        if not comma:
            raise ValueError(text)
        lo = int(lo_text)
        hi = None if hi_text.strip().lower() == "end" else int(hi_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI or LO,end (e.g. 10,100 or 10,end), got {text!r}") from None
    if lo < 0:
        raise argparse.ArgumentTypeError(f"LO must be 0 or more, got {lo}")
    if hi is not None and hi < lo:
        raise argparse.ArgumentTypeError(f"HI must be at least LO, got {text!r} (HI {hi} < LO {lo})")
    return lo, hi


def _register_rhythm_traces(verbs) -> None:
    p = verbs.add_parser("traces", help="generate reasoning traces for GSM8K problems (resumable)")
    p.add_argument("--problems", required=True,
                   help="GSM8K JSON-lines file ({\"question\", \"answer\"} per line) or hub data set id (openai/gsm8k)")
    p.add_argument("--out", type=Path, required=True, help="trace file (JSON lines); rerunning continues it")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N problems (default all)")
    p.add_argument("--max-new-tokens", type=positive_int, default=512, help="most tokens per response")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0: greedy; the paper samples at 0.7")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling (temperature > 0)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="problems per generate call")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    p.set_defaults(func=LazyCommand("circuits.rhythm.cli", "run_traces"))


def _register_rhythm_analyse(verbs) -> None:
    p = verbs.add_parser("analyse", help="WAAD, FAI, peaks and their couplings over traces")
    p.add_argument("--traces", type=Path, default=None, help="trace file of `headscope rhythm traces`")
    p.add_argument("--text-traces", type=Path, default=None,
                   help="JSON lines of a model's own text: {\"prompt\", \"response\"[, \"answer\"]} per line")
    p.add_argument("--out", type=Path, required=True, help="JSON lines: one per trace, then the couplings")
    p.add_argument("--report", type=Path, default=None, help="also write a self-contained HTML report")
    p.add_argument("--window", type=positive_int, default=10, help="WAAD's window W in tokens (paper: 10)")
    p.add_argument("--band", type=band_range, default=(10, 100),
                   help="FAI's band LO,HI in tokens after each token, or LO,end (default 10,100; section 4: 10,end)")
    layers = p.add_mutually_exclusive_group()
    layers.add_argument("--layers", type=int_list, default=None, help="layers whose heads are ranked (default all)")
    layers.add_argument("--paper-layers", action="store_true",
                        help="the paper's RL layers: 5 evenly spaced in L/3..2L/3")
    p.add_argument("--batch-size", type=positive_int, default=4, help="traces per capture")
    p.add_argument("--model", default=None,
                   help=f"model name or folder (default: the one that generated --traces, else {DEFAULT_MODEL})")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--backend", choices=("reference", "triton"), default="reference",
                   help="attention statistics: reference (plain PyTorch, any device) or triton (the GPU kernels)")
    p.add_argument("--skip-short", action="store_true",
                   help="leave out (and name) responses too short for the band instead of refusing the run")
    p.set_defaults(func=LazyCommand("circuits.rhythm.cli", "run_analyse"))


def alternative_rank(text: str) -> int:
    """The forced token's place in the model's ranking, the original counted as place 1: 2 or more."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (2: the most probable token other than the original), "
                                         f"got {value}")
    return value


def _register_rhythm_perturb(verbs) -> None:
    p = verbs.add_parser("perturb", help="force another token at high- and low-FAI positions, compare greedy "
                                         "rollouts by content words (the paper's Table 1)")
    p.add_argument("--traces", type=Path, default=None, help="trace file of `headscope rhythm traces`")
    p.add_argument("--text-traces", type=Path, default=None,
                   help="JSON lines of a model's own text: {\"prompt\", \"response\"[, \"answer\"]} per line")
    p.add_argument("--out", type=Path, required=True, help="one JSON file: settings, summary and every trial")
    p.add_argument("--analysis", type=Path, default=None,
                   help="output of `headscope rhythm analyse` on the same traces: reuse its FAI (default: compute it)")
    p.add_argument("--band", type=band_range, default=None,
                   help="FAI's band when computed here, LO,HI or LO,end (default 10,end: the paper's section 4)")
    p.add_argument("--rollout-tokens", type=positive_int, default=64, help="greedy tokens after the forced one")
    p.add_argument("--rank", type=alternative_rank, default=2,
                   help="forced token's place in the model's ranking, the original counted as 1 (default 2)")
    p.add_argument("--pairs", type=positive_int, default=1, help="high/low position pairs per trace")
    p.add_argument("--skip-first", type=non_negative_int, default=5, help="response tokens never chosen at the start")
    p.add_argument("--min-after", type=positive_int, default=None,
                   help="least response tokens after a chosen position (default: --rollout-tokens)")
    p.add_argument("--stop-words", choices=("builtin", "nltk", "sklearn"), default="builtin",
                   help="builtin: NLTK's English list, shipped in data/ (default)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="traces per capture, prefixes per rollout call")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N traces (default all)")
    p.add_argument("--model", default=None,
                   help=f"model name or folder (default: the one that generated --traces, else {DEFAULT_MODEL})")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--skip-short", action="store_true",
                   help="leave out (and name) responses too short for a high and a low position instead of refusing")
    p.set_defaults(func=LazyCommand("circuits.rhythm.cli", "run_perturb"))


def unit_fraction(text: str) -> float:
    """A number in (0, 1] (a relative threshold)."""
    value = non_negative_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text!r}")
    return value


def below_one(text: str) -> float:
    """A number in [0, 1) (a relative margin)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return value


def _register_circuits_discover(verbs) -> None:
    p = verbs.add_parser("discover", help="score every head for a task with one method; write a JSON result file")
    p.add_argument("--task", required=True, help="task name: ioi, greater_than, docstring, colored_objects")
    p.add_argument("--task-file", type=Path, default=None,
                   help="the task's items from this JSON-lines file (default: its shipped file in data/)")
    p.add_argument("--method", required=True,
                   help="patching, patching-mean, eap, eap-ig, sae, sae-edge (circuits.discovery.methods)")
    p.add_argument("--out", type=Path, required=True, help="result file (JSON)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N items that fit the tokenizer")
    p.add_argument("--only-correct", action="store_true",
                   help="drop the items whose answer the model does not put above the contrast (counted either way)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="items per forward")
    p.add_argument("--heads-per-forward", type=positive_int, default=16, help="patching: heads patched per forward")
    p.add_argument("--ig-steps", type=positive_int, default=5, help="eap-ig: points on the path")
    p.add_argument("--seed", type=int, default=0, help="seeds the SAE methods (training prompts, initial weights)")
    sae = p.add_argument_group("SAE methods (sae, sae-edge)")
    sae.add_argument("--n-train", type=positive_int, default=None, help="prompts the SAE trains on (default 10)")
    sae.add_argument("--position", choices=("mean", "last"), default=None,
                     help="head outputs averaged over positions (default) or at the last one")
    sae.add_argument("--sae-width", type=positive_int, default=None, help="dictionary size (default 200)")
    sae.add_argument("--l1", type=non_negative_float, default=None, help="sparsity weight (default 0.02)")
    sae.add_argument("--epochs", type=positive_int, default=None, help="full-batch training steps (default 500)")
    sae.add_argument("--save-sae", type=Path, default=None,
                     help="save the trained SAE in this folder (sae-lens format)")
    sae.add_argument("--load-sae", type=Path, default=None,
                     help="reuse the SAE saved in this folder instead of training one")
    p.set_defaults(func=LazyCommand("circuits.discovery.cli_discover", "run_discover"))


def _register_circuits_score(verbs) -> None:
    p = verbs.add_parser("score", help="score result files against a known or a patching reference circuit")
    p.add_argument("--scores", type=Path, nargs="+", required=True, help="result files of `circuits discover`")
    truth = p.add_mutually_exclusive_group(required=True)
    truth.add_argument("--truth", help="stored circuit (ioi, greater_than, docstring, or a data/circuits/ file stem "
                                       "such as gpt2_small_ioi) or a ground-truth JSON file")
    truth.add_argument("--reference", type=Path,
                       help="result file of `circuits discover --method patching`, cut by --threshold or --top-k")
    p.add_argument("--variant", default=None, help="--truth: another source's list (e.g. sae_circuits)")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=unit_fraction, default=None,
                     help="--reference: heads with |score| >= T x the largest")
    cut.add_argument("--top-k", type=positive_int, default=None, help="--reference: the K heads of largest |score|")
    p.add_argument("--margin", type=below_one, default=0.0,
                   help="--reference: heads within this relative band below the cut are ambiguous")
    p.add_argument("--ambiguous", choices=("exclude", "positive", "negative"), default="exclude",
                   help="how ambiguous heads count (default: left out)")
    p.add_argument("--k", type=positive_int, nargs="+", default=None,
                   help="k of precision and recall at k (default: the circuit's size)")
    p.add_argument("--signed", action="store_true",
                   help="rank heads by their signed score (default: by |score|; negative heads belong to circuits)")
    p.add_argument("--out", type=Path, default=None, help="also write the scores as JSON")
    p.set_defaults(func=LazyCommand("circuits.discovery.cli_score", "run_score"))


def _register_circuits_compare(verbs) -> None:
    p = verbs.add_parser("compare", help="component reuse between two result files of one model")
    p.add_argument("a", type=Path, help="result file of `circuits discover`")
    p.add_argument("b", type=Path, help="another result file of the same model")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--top-k", type=positive_int, default=None, help="keep each file's K heads of largest |score|")
    rule.add_argument("--threshold", type=unit_fraction, default=None,
                      help="keep each file's heads with |score| >= T x its largest")
    p.add_argument("--signed", action="store_true",
                   help="keep and rank heads by their signed score (default: by |score|)")
    p.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON")
    p.set_defaults(func=LazyCommand("circuits.discovery.cli_compare", "run_compare"))
