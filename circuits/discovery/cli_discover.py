"""Run function of ``headscope circuits discover``; its parser is in :mod:`circuits.cli`.

Context:
    ``circuits discover`` runs one discovery method (:mod:`circuits.discovery.methods`) on one
    task for one model and writes one JSON result file (:mod:`circuits.discovery.results`): the
    task, the model, the method with every option (the seed included), the model's behaviour on
    the items, the items used, the ``[layer][head]`` scores, the time and the forwards. The
    behaviour is measured and printed first, because heads of a behaviour the model lacks are
    noise: the items the model gets wrong are counted on screen and in the file, and dropped only
    with ``--only-correct``.

Errors:
    Everything the arguments alone show (an unknown method or task, a missing task file, an
    unwritable output, SAE options with a method that has no SAE, a missing ``--load-sae``
    folder) raises :class:`~probe.errors.InputError` or :class:`~probe.cli_options.UsageError`
    before the model loads; the CLI prints it as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from circuits.discovery.behaviour import TaskBehaviour, task_behaviour
from circuits.discovery.contrast import ContrastSet
from circuits.discovery.methods import DiscoveryOptions, discover, method
from circuits.discovery.patching import HeadScores
from circuits.discovery.results import TOP_SHOWN, discovery_record, top_scored
from circuits.discovery.sae_method import SAE_METHODS, SAEOptions, sae_discovery
from circuits.discovery.sae_train import SAETraining, load_sae, sae_metadata, save_sae
from circuits.discovery.tasks import TaskItem, read_items, tokenize_items
from probe.cli_options import UsageError, check_output_path
from probe.errors import InputError
from probe.files import write_text_atomic
from probe.models import load_model

SAE_TRAINING_OPTIONS = (("--n-train", "n_train"), ("--sae-width", "sae_width"), ("--l1", "l1"),
                        ("--epochs", "epochs"))
SAE_ONLY_OPTIONS = (*SAE_TRAINING_OPTIONS, ("--position", "position"))


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
    contrast = task.contrast.rows(rows)
    behaviour = task_behaviour(model, contrast, batch_size=plan.options.batch_size)
    print(behaviour.summary())
    print(wrong_line(behaviour, [task.kept[r] for r in rows], args.only_correct))
    if args.only_correct:
        rows = correct_rows(rows, behaviour)
        contrast = task.contrast.rows(rows)
    found = run_method(model, contrast, args, plan)
    if args.save_sae is not None:
        print(f"saved the SAE in {save_sae(found.sae, args.save_sae)}")
    print(format_top(found.scores.scores))
    print(f"{args.method}: {found.scores.seconds:.2f} s, {found.scores.forwards} forwards, {len(rows)} items")
    items = {"in_file": task.total, "measured": [task.kept[r] for r in measured],
             "used": [task.kept[r] for r in rows]}
    record = discovery_record(task=args.task, task_file=args.task_file, model=model.name, method=args.method,
                              options=recorded_options(args, plan), behaviour=behaviour, items=items,
                              scores=found.scores, sae=sae_metadata(found.sae) if found.sae is not None else None)
    write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(f"saved {args.out}")
    return 0


def plan_discovery(args: argparse.Namespace) -> DiscoverPlan:
    """Check every argument the model is not needed for: the method, the task and its file, the
    output path, the SAE options and folders. Fails fast, before the model loads."""
    method(args.method)  # an unknown name lists the known ones
    check_output_path(args.out)
    items = tuple(read_items(args.task, args.task_file))  # an unknown task or a bad file
    is_sae = args.method in SAE_METHODS
    for option, value in (("--save-sae", args.save_sae), ("--load-sae", args.load_sae)):
        if value is not None and not is_sae:
            raise UsageError(f"{option} works with the SAE methods ({', '.join(SAE_METHODS)}), not with "
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


def recorded_options(args: argparse.Namespace, plan: DiscoverPlan) -> dict:
    """Every option of the run as the result file records it: the registry's and the CLI's own."""
    return {**asdict(plan.options), "limit": args.limit, "only_correct": args.only_correct,
            "device": args.device, "load_sae": str(args.load_sae) if args.load_sae else None,
            "save_sae": str(args.save_sae) if args.save_sae else None}


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
    if args.method not in SAE_METHODS:
        return Discovered(discover(model, contrast, args.method, plan.options), None)
    if plan.sae is None and plan.options.sae.n_train > 2 * len(contrast):
        print(f"warning: --n-train {plan.options.sae.n_train} asks for more prompts than the {2 * len(contrast)} "
              "there are (clean and corrupted): the SAE trains on all of them", file=sys.stderr)
    found = sae_discovery(model, contrast, plan.options.sae, score=SAE_METHODS[args.method],
                          batch_size=plan.options.batch_size, sae=plan.sae, model_name=model.name)
    return Discovered(found.scores, found.sae)


def format_top(scores: Float[Tensor, "layer head"]) -> str:
    lines = [f"top {min(TOP_SHOWN, scores.numel())} heads by |score| (layer.head: score):"]
    lines += [f"  {layer}.{head}: {value:+.4g}" for layer, head, value in top_scored(scores)]
    return "\n".join(lines)
