"""Run function of ``headscope circuits score``; its parser is in :mod:`circuits.cli`.

Context:
    ``circuits score`` reads result files (:mod:`circuits.discovery.results`) and scores each
    against a circuit: a stored literature circuit (``data/circuits/``, by task name, file stem
    or path) or a reference circuit cut from an activation-patching result file by a stated rule
    (:func:`~circuits.discovery.ground_truth.circuit_from_scores`).

Errors:
    A bad argument, result file or ground-truth file raises :class:`~probe.errors.InputError` or
    :class:`~probe.cli_options.UsageError`; the CLI prints it as one ``error:`` line with exit
    status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from circuits.discovery.ground_truth import (DATA_FOLDER, TASK_FILES, GroundTruth, circuit_from_scores,
                                             read_ground_truth)
from circuits.discovery.results import ResultFile, ranked, read_result, shape_text
from circuits.discovery.scores import CircuitScore, score_method
from probe.cli_options import UsageError, check_output_path
from probe.errors import InputError
from probe.files import write_text_atomic


def run_score(args: argparse.Namespace) -> int:
    check_score_args(args)
    if args.out is not None:
        check_output_path(args.out)
    results = [read_result(path) for path in args.scores]
    truth = reference_circuit(args) if args.reference is not None else named_truth(args.truth, args.variant)
    for result in results:
        check_fits_truth(result, truth)
    scored = [scored_result(r, truth, args) for r in results]
    print(truth_line(truth, args.ambiguous))
    print(f"heads ranked by {'signed score' if args.signed else '|score|'}")
    print(format_score_table(results, scored))
    if args.out is not None:
        record = {"truth": truth_record(truth), "ambiguous": args.ambiguous,
                  "ranked_by": "score" if args.signed else "|score|",
                  "results": [{"file": str(r.path), **s.to_dict()} for r, s in zip(results, scored)]}
        write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
        print(f"saved {args.out}")
    return 0


def scored_result(result: ResultFile, truth: GroundTruth, args: argparse.Namespace) -> CircuitScore:
    """One result file's scores against ``truth`` (a bad ``--k`` named with the option)."""
    try:
        return score_method(result.method, ranked(result.scores, args.signed), truth, result.seconds, ks=args.k,
                            ambiguous=args.ambiguous)
    except ValueError as err:
        option = "--k: " if str(err).startswith("k ") else ""
        raise InputError(f"{option}{result.path}: {err}") from None


def check_score_args(args: argparse.Namespace) -> None:
    """The cut options go with ``--reference`` only, ``--variant`` with ``--truth`` only."""
    cut_given = args.threshold is not None or args.top_k is not None
    if args.reference is not None and not cut_given:
        raise UsageError("--reference needs a cut: --threshold T (heads with at least T x the largest effect) "
                         "or --top-k K")
    if args.reference is None and (cut_given or args.margin):
        raise UsageError("--threshold, --top-k and --margin cut a --reference patching file; --truth is a list already")
    if args.reference is not None and args.variant is not None:
        raise UsageError("--variant picks a list of a --truth file; a --reference circuit has none")


def named_truth(name: str, variant: str | None) -> GroundTruth:
    """A stored circuit by task name (``ioi``), file stem in ``data/circuits/`` (``gpt2_small_ioi``)
    or path."""
    path = Path(name)
    stored = DATA_FOLDER / f"{name}.json"
    if path.is_file():
        file = path
    elif name in TASK_FILES:
        file = DATA_FOLDER / TASK_FILES[name]
    elif path.name == name and stored.is_file():
        file = stored
    else:
        known = sorted({*TASK_FILES, *(p.stem for p in DATA_FOLDER.glob("*.json"))})
        raise InputError(f"--truth: {name!r} is neither a file nor a stored circuit ({', '.join(known)})")
    return read_truth_file(file, variant)


def read_truth_file(file: Path, variant: str | None) -> GroundTruth:
    """A ground-truth file, its format errors named with the file."""
    try:
        return read_ground_truth(file, variant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"--truth: {file} is not a ground-truth file ({type(err).__name__}: {err}); "
                         "see data/circuits/README.md for the format") from None
    except ValueError as err:
        raise InputError(f"--truth: {file}: {err}") from None


def reference_circuit(args: argparse.Namespace) -> GroundTruth:
    """The circuit cut from a patching result file by ``--threshold`` or ``--top-k``."""
    reference = read_result(args.reference)
    try:
        truth = circuit_from_scores(reference.scores, task=reference.task, model=reference.model,
                                    threshold=args.threshold, top_k=args.top_k, margin=args.margin)
    except ValueError as err:
        raise InputError(f"--reference {reference.path}: {err}") from None
    if not reference.method.startswith("patching"):
        print(f"warning: the reference {reference.path} holds {reference.method} scores, not activation patching",
              file=sys.stderr)
    return truth


def check_fits_truth(result: ResultFile, truth: GroundTruth) -> None:
    """Refuse a result of another geometry, task or (for a reference circuit) model."""
    if tuple(result.scores.shape) != truth.shape:
        raise InputError(f"{result.path} has scores for {shape_text(result.scores)} ({result.model}), but the "
                         f"ground truth is for {truth.model} with {truth.n_layers} layers x {truth.n_heads} heads: "
                         "score it against a circuit of its own model (--reference PATCHING.json of that model)")
    if result.task != truth.task:
        raise InputError(f"{result.path} is a result on task {result.task!r}, the ground truth is for task "
                         f"{truth.task!r}: score each task against its own circuit")
    if truth.source.startswith("activation patching") and result.model != truth.model:
        raise InputError(f"{result.path} is a result of {result.model}, the reference circuit is of {truth.model}: "
                         "cut the reference from a patching file of the same model")


def truth_line(truth: GroundTruth, ambiguous: str) -> str:
    return (f"against {truth.task} on {truth.model} ({truth.variant}): {len(truth.heads)} heads in the circuit, "
            f"{len(truth.ambiguous)} ambiguous ({ambiguous}); {truth.source}")


def format_score_table(results: list[ResultFile], scored: list[CircuitScore]) -> str:
    """One row per result: ROC AUC, staircase AUC, precision and recall at each k, seconds."""
    ks = list(scored[0].precision_at_k)
    header = ["method", "ROC AUC", "staircase", *(f"P@{k}" for k in ks), *(f"R@{k}" for k in ks), "seconds"]
    rows = [[r.label, f"{s.roc_auc:.3f}", f"{s.staircase_auc:.3f}",
             *(f"{s.precision_at_k[k]:.3f}" for k in ks), *(f"{s.recall_at_k[k]:.3f}" for k in ks),
             f"{s.seconds:.2f}"] for r, s in zip(results, scored)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in [header, *rows])


def truth_record(truth: GroundTruth) -> dict:
    return {"task": truth.task, "model": truth.model, "variant": truth.variant, "source": truth.source,
            "n_layers": truth.n_layers, "n_heads": truth.n_heads, "heads": sorted(map(list, truth.heads)),
            "ambiguous": sorted(map(list, truth.ambiguous))}
