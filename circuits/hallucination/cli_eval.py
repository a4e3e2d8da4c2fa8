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
    Bad arguments (an unknown answerer or edit, an unwritable ``--out``) raise
    :class:`~probe.errors.InputError` or :class:`~probe.cli_options.UsageError` before a model
    loads, as does a model without an image-token id when it loads; the CLI prints one ``error:``
    line, exit status 2. An item set that cannot be read (a missing or unreadable question,
    annotation or vocabulary file, a question file with unknown fields) is skipped with a
    ``warning:`` line and listed in the summary while the other sets go on; with no readable set
    it is that error (:mod:`circuits.hallucination.eval_plan`). A missing or corrupt image fails
    its item only: it is recorded, listed in the summary, and the other items go on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from circuits.hallucination.answerers import AnswererOptions, build_answerer
from circuits.hallucination.eval_plan import EvalPlan, plan_eval
from circuits.hallucination.runner import pending, run_items
from circuits.hallucination.shards import Shard, barrier, process_group, rank_device, shard_from_env
from circuits.hallucination.store import (RESULTS_FILE, ShardWriter, check_manifest, done_records, merge_shards,
                                          shard_path)
from circuits.hallucination.summary import SUMMARY_FILES, summarize, summary_text, write_summary


def run_eval(args: argparse.Namespace) -> int:
    plan = plan_eval(args)
    shard = shard_from_env()
    device = rank_device(args.device, shard)
    with process_group(shard, device):
        evaluate(plan, args, shard, device)
    return 0


def evaluate(plan: EvalPlan, args: argparse.Namespace, shard: Shard, device: str) -> None:
    """Answer this process's items, wait for the others, and (rank 0) merge and summarise."""
    check_manifest(args.out, plan.manifest, write=False)  # refuse other settings before a model loads
    with ShardWriter(shard_path(args.out, shard.rank, shard.world)) as writer:  # locked before a model loads too
        answerer = build_answerer(args.answerer, AnswererOptions(plan.options.model, device, plan.options.conditions))
        check_manifest(args.out, plan.manifest, write=shard.leader)  # recorded once the model loaded
        done = set(done_records(args.out))
        todo = pending(shard.take(plan.items), plan.settings.conditions, done)
        if shard.leader:
            print(start_line(plan, len(done), len(todo), shard))
        with progress_bar(len(todo), enabled=shard.leader and not args.no_progress) as bar:
            run_items(todo, answerer, writer, done, plan.settings, progress=bar.update)
    barrier(shard, device)
    if shard.leader:
        report(plan, args.out)


def start_line(plan: EvalPlan, done: int, todo: int, shard: Shard) -> str:
    conditions = plan.settings.conditions
    return (f"{len(plan.items)} items x {len(conditions)} condition{'s' if len(conditions) > 1 else ''} "
            f"({', '.join(conditions)}); {done} records done before, "
            f"{todo} items to answer{' on this process' if shard.world > 1 else ''}")


def report(plan: EvalPlan, out: Path) -> None:
    """Merge the shards into ``results.jsonl``, write and print the summary."""
    order = [(condition, item.item_id) for condition in plan.settings.conditions for item in plan.items]
    records, missing = merge_shards(out, order)
    summary = summarize(records, plan.vocabulary, missing, plan.skipped)
    write_summary(out, summary)
    print(summary_text(summary), end="")
    print(f"saved {out / RESULTS_FILE}, " + ", ".join(str(out / name) for name in SUMMARY_FILES))


def progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="item", desc="vlm eval", file=sys.stderr, dynamic_ncols=True)
