"""Run function of ``headscope vlm eval``; its parser is in :mod:`circuits.cli_vlm`.

Context:
    ``vlm eval`` answers POPE questions and CHAIR caption requests with a vision-language model,
    without edits and under each ``--edit``, and writes into ``--out``:

    - ``shards/rankRRR-of-WWW.jsonl``: each process's records as they are made (see
      :mod:`circuits.hallucination.store`); rerunning the same command continues from them;
    - ``results.jsonl``: all records in item order, written by rank 0 at the end;
    - ``summary.json``, ``summary.txt``, ``summary.html``: metrics per condition and split, the
      failures (:mod:`circuits.hallucination.summary`);
    - ``run.json``: the settings, so a restart with other settings is refused.

    Under ``torchrun`` each process takes every WORLD-th item (:mod:`circuits.hallucination.shards`).

Errors:
    Everything the arguments show (an unknown answerer or edit, a missing or unreadable question,
    annotation or vocabulary file, a question file with unknown fields, an unwritable ``--out``)
    raises :class:`~probe.errors.InputError` or :class:`~probe.cli_options.UsageError` before a
    model loads, as does a model without an image-token id when it loads; the CLI prints one
    ``error:`` line, exit status 2. A missing or corrupt image fails its item only: it is
    recorded, listed in the summary, and the other items go on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from circuits.hallucination.answerers import AnswererOptions, build_answerer, check_answerer
from circuits.hallucination.conditions import conditions
from circuits.hallucination.item_sets import Prompts, chair_items, pope_items, pope_path
from circuits.hallucination.items import EvalItem, check_unique_ids
from circuits.hallucination.runner import RunSettings, pending, run_items
from circuits.hallucination.shards import Shard, barrier, process_group, rank_device, shard_from_env
from circuits.hallucination.store import (RESULTS_FILE, ShardWriter, check_manifest, done_records, merge_shards,
                                          shard_path)
from circuits.hallucination.summary import SUMMARY_FILES, summarize, summary_text, write_summary
from probe.cli_options import UsageError, check_output_path


@dataclass(frozen=True)
class EvalPlan:
    """What ``vlm eval`` checked before any model loads.

    Attributes:
        items: every item of the run, in order (all processes hold the same list).
        settings: conditions, batch size, token budgets, image folder.
        options: what the answerer is built from.
        vocabulary: CHAIR's vocabulary (None without CHAIR items).
        manifest: the settings that decide the answers, kept in ``run.json``.
    """

    items: tuple[EvalItem, ...]
    settings: RunSettings
    options: AnswererOptions
    vocabulary: object
    manifest: dict


def run_eval(args: argparse.Namespace) -> int:
    plan = plan_eval(args)
    shard = shard_from_env()
    device = rank_device(args.device, shard)
    with process_group(shard, device):
        evaluate(plan, args, shard, device)
    return 0


def plan_eval(args: argparse.Namespace) -> EvalPlan:
    """Check every argument and read every input file; fails fast, before a model loads."""
    check_answerer(args.answerer)
    if args.answerer == "hf" and not args.model:
        raise UsageError("--model: name the vision-language model (a LLaVA folder, a hub id, a registered name)")
    names = conditions(args.edit)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is a file; pass a folder (it is created when missing)")
    check_output_path(args.out / RESULTS_FILE)
    if args.images is not None and not args.images.is_dir():
        raise UsageError(f"--images: {args.images} {'is not a folder' if args.images.exists() else 'does not exist'}")
    prompts = Prompts(pope_suffix=args.pope_suffix, caption=args.caption_prompt)
    items = read_sets(args, prompts)
    vocabulary = read_vocabulary(args, items) if any(item.kind == "chair" for item in items) else None
    settings = RunSettings(conditions=names, batch_size=args.batch_size, images_dir=args.images,
                           max_new_tokens={"pope": args.answer_tokens, "chair": args.max_new_tokens})
    options = AnswererOptions(model=args.model, device=args.device, conditions=names)
    manifest = {"answerer": args.answerer, "model": args.model if args.answerer == "hf" else None,
                "pope_suffix": prompts.pope_suffix, "caption_prompt": prompts.caption,
                "answer_tokens": args.answer_tokens, "max_new_tokens": args.max_new_tokens}
    return EvalPlan(tuple(items), settings, options, vocabulary, manifest)


def read_sets(args: argparse.Namespace, prompts: Prompts) -> list[EvalItem]:
    """The items of every ``--pope`` set, then of ``--chair-captions``; ids checked unique."""
    if not args.pope and not args.chair_captions:
        raise UsageError("nothing to evaluate: pass --pope FILE_OR_SPLIT and/or --chair-captions --annotations FILE")
    if args.annotations is not None and not args.chair_captions:
        raise UsageError("--annotations is read by --chair-captions; add --chair-captions or drop --annotations")
    items: list[EvalItem] = []
    for name in args.pope:
        split, path = pope_path(name, args.pope_dir)
        items += pope_items(path, split, prompts, args.limit)
    if args.chair_captions:
        items += read_chair_set(args, prompts)
    return check_unique_ids(items)


def read_chair_set(args: argparse.Namespace, prompts: Prompts) -> list[EvalItem]:
    from circuits.hallucination.annotations import load_annotations

    if args.annotations is None:
        raise UsageError("--chair-captions needs --annotations FILE: the objects truly in each image")
    items, unmatched = chair_items(load_annotations(args.annotations), args.images, prompts, args.limit)
    if unmatched:
        print(f"warning: {unmatched} images in {args.images} have no annotation in {args.annotations}: left out",
              file=sys.stderr)
    if not items:
        where = f"images in {args.images}" if args.images is not None else "annotated images"
        raise UsageError(f"--chair-captions: no {where} match the keys of {args.annotations}; check both paths")
    return items


def read_vocabulary(args: argparse.Namespace, items: list[EvalItem]):
    """CHAIR's vocabulary; every ground-truth object must be one of its categories."""
    from circuits.hallucination.chair import ChairVocabulary

    path = args.chair_vocabulary or args.annotations
    vocabulary = ChairVocabulary.from_file(path)
    for item in items:
        unknown = sorted(set(item.truth or ()) - vocabulary.categories)
        if unknown:
            raise UsageError(f"--annotations: image {item.image!r} has the object {unknown[0]!r}, not a category of "
                             f"the CHAIR vocabulary {path}; name objects by their COCO category or pass "
                             "--chair-vocabulary FILE")
    return vocabulary


def evaluate(plan: EvalPlan, args: argparse.Namespace, shard: Shard, device: str) -> None:
    """Answer this process's items, wait for the others, and (rank 0) merge and summarise."""
    check_manifest(args.out, plan.manifest, write=False)  # refuse other settings before a model loads
    answerer = build_answerer(args.answerer, AnswererOptions(plan.options.model, device, plan.options.conditions))
    check_manifest(args.out, plan.manifest, write=shard.leader)  # recorded once the model loaded
    done = set(done_records(args.out))
    mine = shard.take(plan.items)
    todo = pending(mine, plan.settings.conditions, done)
    if shard.leader:
        n_conditions = len(plan.settings.conditions)
        print(f"{len(plan.items)} items x {n_conditions} condition{'s' if n_conditions > 1 else ''} "
              f"({', '.join(plan.settings.conditions)}); {len(done)} records done before, "
              f"{len(todo)} items to answer{' on this process' if shard.world > 1 else ''}")
    with ShardWriter(shard_path(args.out, shard.rank, shard.world)) as writer, \
            progress_bar(len(todo), enabled=shard.leader and not args.no_progress) as bar:
        run_items(todo, answerer, writer, done, plan.settings, progress=bar.update)
    barrier(shard, device)
    if shard.leader:
        report(plan, args.out)


def report(plan: EvalPlan, out: Path) -> None:
    """Merge the shards into ``results.jsonl``, write and print the summary."""
    order = [(condition, item.item_id) for condition in plan.settings.conditions for item in plan.items]
    records, missing = merge_shards(out, order)
    summary = summarize(records, plan.vocabulary, missing)
    write_summary(out, summary)
    print(summary_text(summary), end="")
    print(f"saved {out / RESULTS_FILE}, " + ", ".join(str(out / name) for name in SUMMARY_FILES))


def progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="item", desc="vlm eval", file=sys.stderr, dynamic_ncols=True)
