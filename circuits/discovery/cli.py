"""Run functions of ``headscope circuits discover``, ``circuits score`` and ``circuits compare``;
their parsers are in :mod:`circuits.cli`.

Context:
    ``circuits discover`` runs one discovery method (:mod:`circuits.discovery.methods`) on one
    task for one model and writes one JSON result file: the task, the model, the method with
    every option (the seed included), the model's behaviour on the items, the items used, the
    ``[layer][head]`` scores, the time and the forwards. The behaviour is measured and printed
    first, because heads of a behaviour the model lacks are noise: the items the model gets
    wrong are counted on screen and in the file, and dropped only with ``--only-correct``.

    ``circuits score`` reads result files and scores each against a circuit: a stored
    literature circuit (``data/circuits/``, by task name, file stem or path) or a reference
    circuit cut from an activation-patching result file by a stated rule
    (:func:`~circuits.discovery.ground_truth.circuit_from_scores`).

    ``circuits compare`` measures component reuse between two result files of one model (IOI
    against colored objects, say): the heads each keeps by one rule, the shared ones, their
    overlap (shared over union, :func:`~circuits.discovery.scores.overlap`) and the Spearman
    rank correlation of the two score maps.

Errors:
    Everything the arguments alone show (an unknown method or task, a missing task file, an
    unwritable output, SAE options with a method that has no SAE, a missing ``--load-sae``
    folder) raises :class:`~probe.errors.InputError` or :class:`~probe.cli_options.UsageError`
    before the model loads; the CLI prints it as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.discovery.behaviour import TaskBehaviour, task_behaviour
from circuits.discovery.contrast import ContrastSet
from circuits.discovery.ground_truth import (DATA_FOLDER, TASK_FILES, GroundTruth, circuit_from_scores, heads_of,
                                             read_ground_truth)
from circuits.discovery.methods import DiscoveryOptions, discover, method
from circuits.discovery.patching import HeadScores
from circuits.discovery.sae_method import SAEOptions, sae_discovery
from circuits.discovery.sae_train import SAETraining, load_sae, sae_metadata, save_sae
from circuits.discovery.scores import CircuitScore, overlap, score_method
from circuits.discovery.tasks import TaskItem, read_items, tokenize_items
from probe.cli_options import UsageError, check_output_path
from probe.errors import InputError
from probe.files import write_text_atomic
from probe.models import load_model

SAE_SCORES = {"sae": "node", "sae-edge": "edge"}
"""The methods that train (or reuse) an SAE, and the score each asks of :func:`sae_discovery`."""

SAE_TRAINING_OPTIONS = (("--n-train", "n_train"), ("--sae-width", "sae_width"), ("--l1", "l1"),
                        ("--epochs", "epochs"))
SAE_ONLY_OPTIONS = (*SAE_TRAINING_OPTIONS, ("--position", "position"))

RESULT_KIND = "circuit-discovery"
TOP_SHOWN = 10


# --- discover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoverPlan:
    """What ``circuits discover`` checked before the model loads.

    Attributes:
        items: the task's items as text (read from the shipped file or ``--task-file``).
        options: the options every method reads.
        sae: the SAE of ``--load-sae`` (None otherwise).
    """

    items: tuple[TaskItem, ...]
    options: DiscoveryOptions
    sae: object = None


@dataclass(frozen=True)
class Discovered:
    """A method's scores and the SAE it trained or reused (SAE methods only).

    Attributes:
        scores: per-head scores with time and forwards.
        sae: the sae-lens SAE (None for methods without one).
    """

    scores: HeadScores
    sae: object


def run_discover(args: argparse.Namespace) -> int:
    plan = plan_discovery(args)
    model = load_model(args.model, device=args.device)
    task = tokenize_items(args.task, list(plan.items), model.tokenizer)
    print(task.summary())
    rows = measured = tuple(range(min(len(task.kept), args.limit or len(task.kept))))
    contrast = subset(task.contrast, rows)
    behaviour = task_behaviour(model, contrast, batch_size=plan.options.batch_size)
    print(behaviour.summary())
    print(wrong_line(behaviour, [task.kept[r] for r in rows], args.only_correct))
    if args.only_correct:
        rows = correct_rows(rows, behaviour)
        contrast = subset(task.contrast, rows)
    found = run_method(model, contrast, args, plan)
    if args.save_sae is not None:
        print(f"saved the SAE in {save_sae(found.sae, args.save_sae)}")
    print(format_top(found.scores.scores))
    print(f"{args.method}: {found.scores.seconds:.2f} s, {found.scores.forwards} forwards, {len(rows)} items")
    items = {"in_file": task.total, "measured": [task.kept[r] for r in measured],
             "used": [task.kept[r] for r in rows]}
    record = discovery_record(args, plan, model, behaviour, found, items)
    write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(f"saved {args.out}")
    return 0


def plan_discovery(args: argparse.Namespace) -> DiscoverPlan:
    """Check every argument the model is not needed for: the method, the task and its file, the
    output path, the SAE options and folders. Fails fast, before the model loads."""
    method(args.method)  # an unknown name lists the known ones
    check_output_path(args.out)
    items = tuple(read_items(args.task, args.task_file))  # an unknown task or a bad file
    is_sae = args.method in SAE_SCORES
    for option, value in (("--save-sae", args.save_sae), ("--load-sae", args.load_sae)):
        if value is not None and not is_sae:
            raise UsageError(f"{option} works with the SAE methods ({', '.join(SAE_SCORES)}), not with "
                             f"--method {args.method}; drop {option} or pick an SAE method")
    if args.save_sae is not None and args.load_sae is not None:
        raise UsageError("--save-sae and --load-sae exclude each other: a loaded SAE is already saved")
    if args.save_sae is not None:
        check_sae_folder(args.save_sae)
    warn_ignored_options(args, is_sae)
    sae = load_sae_folder(args.load_sae) if args.load_sae is not None else None
    return DiscoverPlan(items=items, options=discovery_options(args), sae=sae)


def check_sae_folder(folder: Path) -> None:
    """Refuse a ``--save-sae`` path that is a file or lies where no folder can be written."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--save-sae: {folder} is a file; an SAE is saved as a folder, pass a folder path")
    check_output_path(folder, "--save-sae", stem=True)


def load_sae_folder(folder: Path):
    """The SAE of ``--load-sae``; a missing folder or one without an SAE is refused by name."""
    if not folder.is_dir():
        raise UsageError(f"--load-sae: {folder} {'is a file' if folder.exists() else 'does not exist'}; pass the "
                         "folder written by `headscope circuits discover --method sae --save-sae DIR`")
    try:
        return load_sae(folder)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"--load-sae: cannot read the SAE in {folder} ({type(err).__name__}: {err}); pass a "
                         "folder written by `headscope circuits discover --method sae --save-sae DIR`") from None


def warn_ignored_options(args: argparse.Namespace, is_sae: bool) -> None:
    """Name on stderr the options the run will not read (SAE options of other methods, training
    options of a loaded SAE), so nobody believes they took effect."""
    if not is_sae:
        ignored = [option for option, name in SAE_ONLY_OPTIONS if getattr(args, name) is not None]
        why = f"only the SAE methods read them, not {args.method}"
    elif args.load_sae is not None:
        ignored = [option for option, name in SAE_TRAINING_OPTIONS if getattr(args, name) is not None]
        why = "the SAE of --load-sae is already trained"
    else:
        ignored = []
    if ignored:
        print(f"warning: {', '.join(ignored)} ignored: {why}", file=sys.stderr)


def discovery_options(args: argparse.Namespace) -> DiscoveryOptions:
    """The registry's options from the arguments (defaults where an SAE option was not given)."""
    given = {"width": args.sae_width, "l1": args.l1, "epochs": args.epochs}
    training = SAETraining(**{key: value for key, value in given.items() if value is not None})
    sae = SAEOptions(seed=args.seed, n_train=args.n_train or SAEOptions.n_train,
                     position=args.position or SAEOptions.position, training=training)
    return DiscoveryOptions(batch_size=args.batch_size, heads_per_forward=args.heads_per_forward,
                            ig_steps=args.ig_steps, sae=sae)


def subset(contrast: ContrastSet, rows: tuple[int, ...]) -> ContrastSet:
    """The items ``rows`` of ``contrast``, without the padding columns none of them needs."""
    if not rows:
        raise InputError(f"task {contrast.task!r}: no item left to run on")
    index = torch.tensor(rows, dtype=torch.long)
    mask = contrast.attention_mask[index]
    first = int(mask.any(0).long().argmax())
    return ContrastSet(task=contrast.task, clean=contrast.clean[index, first:],
                       corrupted=contrast.corrupted[index, first:], attention_mask=mask[:, first:],
                       answer=contrast.answer[index], contrast=contrast.contrast[index],
                       texts=tuple(contrast.texts[r] for r in rows))


def wrong_line(behaviour: TaskBehaviour, numbers: list[int], only_correct: bool) -> str:
    """The items whose answer does not beat the contrast (``numbers``: each measured item's index
    among the task file's items, from 0): counted always, dropped on request."""
    wrong, n = behaviour.wrong, len(behaviour.clean_top)
    if not wrong:
        return f"the model gets all {n} items right (answer above the contrast)"
    named = ", ".join(str(numbers[i]) for i in wrong[:12]) + (", ..." if len(wrong) > 12 else "")
    line = f"the model gets {len(wrong)} of {n} items wrong (answer not above the contrast; file items {named}); "
    if only_correct:
        return line + f"dropped (--only-correct): {n - len(wrong)} items left"
    return line + "kept (--only-correct drops them)"


def correct_rows(rows: tuple[int, ...], behaviour: TaskBehaviour) -> tuple[int, ...]:
    """``rows`` less the items the model gets wrong (``--only-correct``); none left is an error."""
    wrong = set(behaviour.wrong)
    if len(wrong) == len(rows):
        raise InputError(f"--only-correct leaves no item: the model gets all {len(rows)} wrong; "
                         "run without --only-correct, or on a task the model does")
    return tuple(row for i, row in enumerate(rows) if i not in wrong)


def run_method(model, contrast: ContrastSet, args: argparse.Namespace, plan: DiscoverPlan) -> Discovered:
    """Run the method by name; an SAE method runs directly, so its SAE can be saved or reused."""
    if args.method not in SAE_SCORES:
        return Discovered(discover(model, contrast, args.method, plan.options), None)
    if plan.sae is None and plan.options.sae.n_train > 2 * len(contrast):
        print(f"warning: --n-train {plan.options.sae.n_train} asks for more prompts than the {2 * len(contrast)} "
              "there are (clean and corrupted): the SAE trains on all of them", file=sys.stderr)
    found = sae_discovery(model, contrast, plan.options.sae, score=SAE_SCORES[args.method],
                          batch_size=plan.options.batch_size, sae=plan.sae, model_name=model.name)
    return Discovered(found.scores, found.sae)


def top_heads(scores: Float[Tensor, "layer head"], k: int = TOP_SHOWN) -> list[tuple[int, int, float]]:
    """The ``k`` heads of largest ``|score|`` as ``(layer, head, score)``, largest first: a head
    that works against the answer (a negative score) matters as much as one that helps."""
    flat = scores.detach().double().flatten()
    order = torch.argsort(flat.abs(), descending=True, stable=True)[:k]
    n_heads = scores.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads, float(flat[i])) for i in order]


def format_top(scores: Float[Tensor, "layer head"]) -> str:
    lines = [f"top {min(TOP_SHOWN, scores.numel())} heads by |score| (layer.head: score):"]
    lines += [f"  {layer}.{head}: {value:+.4g}" for layer, head, value in top_heads(scores)]
    return "\n".join(lines)


def finite(value: float) -> float | None:
    """A JSON-ready float: NaN and infinities as null."""
    return float(value) if math.isfinite(value) else None


def discovery_record(args: argparse.Namespace, plan: DiscoverPlan, model, behaviour: TaskBehaviour,
                     found: Discovered, items: dict) -> dict:
    """The result file's one JSON object (module docstring). ``items`` names the task file's
    items (from 0) whose behaviour was measured and those the method ran on (fewer with
    ``--only-correct``)."""
    scores = found.scores
    geometry = {"n_layers": int(scores.scores.shape[0]), "n_heads": int(scores.scores.shape[1])}
    options = {**asdict(plan.options), "limit": args.limit, "only_correct": args.only_correct,
               "device": args.device, "load_sae": str(args.load_sae) if args.load_sae else None,
               "save_sae": str(args.save_sae) if args.save_sae else None}
    return {
        "kind": RESULT_KIND, "task": args.task, "task_file": str(args.task_file) if args.task_file else None,
        "model": model.name, "geometry": geometry, "method": args.method, "options": options,
        "behaviour": behaviour.to_dict(), "items": items,
        "scores": [[finite(v) for v in row] for row in scores.scores.double().tolist()],
        "top": [[layer, head, finite(value)] for layer, head, value in top_heads(scores.scores)],
        "seconds": scores.seconds, "forwards": scores.forwards,
        "clean_logit_diff": finite(scores.clean_logit_diff),
        "corrupted_logit_diff": finite(scores.corrupted_logit_diff),
        "sae": sae_metadata(found.sae) if found.sae is not None else None,
    }


# --- result files --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultFile:
    """A ``circuits discover`` result as ``score`` and ``compare`` read it.

    Attributes:
        path: the file.
        task: the task it was run on.
        model: the model's name as loaded.
        method: the method's name.
        scores: ``[layer, head]`` scores (float64, finite).
        seconds: the method's wall-clock time.
    """

    path: Path
    task: str
    model: str
    method: str
    scores: Float[Tensor, "layer head"]
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.method} ({self.path.name})"


def read_result(path: Path) -> ResultFile:
    """Read a result file of ``circuits discover``; anything else is refused with the reason."""
    fix = "pass a file written by `headscope circuits discover --out FILE`"
    if not path.is_file():
        raise InputError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}; {fix}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not a JSON file ({err}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("kind") != RESULT_KIND:
        raise InputError(f"{path} is not a circuit-discovery result (no \"kind\": \"{RESULT_KIND}\"); {fix}")
    texts = {key: raw.get(key) for key in ("task", "model", "method")}
    if not all(isinstance(value, str) for value in texts.values()):
        raise InputError(f"{path}: task, model and method must be strings; {fix}")
    seconds = raw.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise InputError(f"{path}: seconds must be a finite number >= 0, got {seconds!r}; {fix}")
    return ResultFile(path=path, scores=score_matrix(raw.get("scores"), path), seconds=float(seconds), **texts)


def score_matrix(rows: object, path: Path) -> Tensor:
    """``[layer][head]`` numbers as a float64 tensor; ragged, empty or non-finite scores are refused."""
    numeric = (isinstance(rows, list) and rows and all(isinstance(row, list) and row for row in rows)
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for row in rows for v in row))
    if not numeric or len({len(row) for row in rows}) != 1:
        raise InputError(f"{path}: scores must be a [layer][head] list of numbers, every layer as long")
    scores = torch.tensor(rows, dtype=torch.float64)
    if not torch.isfinite(scores).all():
        raise InputError(f"{path}: scores hold NaN or infinite values; rerun the method")
    return scores


def shape_text(scores: Tensor) -> str:
    return f"{scores.shape[0]} layers x {scores.shape[1]} heads"


# --- score ---------------------------------------------------------------------------------


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


def ranked(scores: Tensor, signed: bool) -> Tensor:
    """What heads are ranked by: ``|score|`` by default, since a head that works against the
    answer (IOI's negative name movers) is part of the circuit, as reference circuits are cut
    and as Syed et al. rank attribution patching; the signed score with ``--signed``."""
    return scores if signed else scores.abs()


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


# --- compare -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepRule:
    """How ``compare`` picks each file's heads: the rule of reference circuits, on ``|score|``
    (or the signed score), by count or by a fraction of the largest.

    Attributes:
        top_k: keep the K heads of largest value (ties included); or None.
        threshold: keep the heads whose value is at least this fraction of the largest; or None.
        signed: rank by the signed score instead of ``|score|``.
    """

    top_k: int | None
    threshold: float | None
    signed: bool = False

    @property
    def value(self) -> str:
        return "score" if self.signed else "|score|"

    def text(self) -> str:
        if self.top_k is not None:
            return f"top {self.top_k} heads by {self.value} (ties included)"
        return f"heads with {self.value} >= {self.threshold:g} x the largest"


def run_compare(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_path(args.out)
    rule = KeepRule(top_k=args.top_k, threshold=args.threshold, signed=args.signed)
    first, second = read_result(args.a), read_result(args.b)
    check_comparable(first, second)
    record = comparison_record(first, second, rule)
    print(format_comparison(record))
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
        print(f"saved {args.out}")
    return 0


def check_comparable(first: ResultFile, second: ResultFile) -> None:
    """Component reuse is a question about one model: refuse two models or two geometries."""
    if first.model != second.model or first.scores.shape != second.scores.shape:
        raise InputError(f"cannot compare {first.path} ({first.model}, {shape_text(first.scores)}) with "
                         f"{second.path} ({second.model}, {shape_text(second.scores)}): component reuse compares "
                         "two tasks or methods on one model")


def kept_heads(result: ResultFile, rule: KeepRule) -> frozenset[tuple[int, int]]:
    """The heads ``rule`` keeps of a result (:func:`circuit_from_scores`, as reference circuits)."""
    try:
        return heads_of(circuit_from_scores(result.scores, task=result.task, model=result.model,
                                            threshold=rule.threshold, top_k=rule.top_k, absolute=not rule.signed))
    except ValueError as err:
        raise InputError(f"{result.path}: {err}") from None


def spearman(a: Tensor, b: Tensor) -> float | None:
    """Spearman's rank correlation of two score maps (None where one is constant: undefined)."""
    from scipy.stats import spearmanr

    x, y = a.flatten().numpy(), b.flatten().numpy()
    if (x == x[0]).all() or (y == y[0]).all():
        return None
    return float(spearmanr(x, y).statistic)


def comparison_record(first: ResultFile, second: ResultFile, rule: KeepRule) -> dict:
    """The comparison as JSON: each file's heads, shared and one-sided heads, overlap, Spearman."""
    heads_a, heads_b = kept_heads(first, rule), kept_heads(second, rule)

    def listed(heads) -> list[list[int]]:
        return [list(h) for h in sorted(heads)]

    return {
        "a": {"file": str(first.path), "task": first.task, "method": first.method, "heads": listed(heads_a)},
        "b": {"file": str(second.path), "task": second.task, "method": second.method, "heads": listed(heads_b)},
        "model": first.model, "rule": rule.text(), "ranked_by": rule.value,
        "shared": listed(heads_a & heads_b), "only_a": listed(heads_a - heads_b), "only_b": listed(heads_b - heads_a),
        "overlap": overlap(heads_a, heads_b),
        "spearman": spearman(ranked(first.scores, rule.signed), ranked(second.scores, rule.signed)),
    }


def format_comparison(record: dict) -> str:
    def named(heads: list[list[int]]) -> str:
        return ", ".join(f"{layer}.{head}" for layer, head in heads) or "none"

    rho = record["spearman"]
    a, b = record["a"], record["b"]
    return "\n".join([
        f"{record['model']}; heads kept: {record['rule']}",
        f"A: {a['task']} by {a['method']} ({Path(a['file']).name}): {len(a['heads'])} heads",
        f"B: {b['task']} by {b['method']} ({Path(b['file']).name}): {len(b['heads'])} heads",
        f"shared ({len(record['shared'])}): {named(record['shared'])}",
        f"only A ({len(record['only_a'])}): {named(record['only_a'])}",
        f"only B ({len(record['only_b'])}): {named(record['only_b'])}",
        f"overlap (shared / union): {record['overlap']:.3f}",
        f"Spearman rank correlation of {record['ranked_by']}: "
        + ("undefined (constant scores)" if rho is None else f"{rho:+.3f}"),
    ])
