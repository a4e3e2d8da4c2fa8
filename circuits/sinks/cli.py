"""Run functions of ``headscope sinks`` (sink report) and ``headscope act search|eval`` (ACT head
search, evaluation); their parsers are in :mod:`circuits.cli`.

Results are written as JSON lines and printed as a readable table. Bad input (unknown task,
malformed task file, task with no options, tau or beta out of range, an output path that cannot
be written, a damaged search cache) raises ``ValueError`` before the model loads, which the CLI
prints as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from probe.cli_options import check_output_path
from probe.files import write_text_atomic
from probe.models import load_model


def run_sinks(args: argparse.Namespace) -> int:
    from circuits.sinks.detection import format_report, sink_report
    from probe.attention.spec import SinkRule

    SinkRule(tau=args.tau, min_visible=args.min_visible)  # range checks before loading a model
    check_output_path(args.out)
    prompts = _prompts(args)[: args.limit]
    torch.set_grad_enabled(False)
    report = sink_report(load_model(args.model), prompts, tau=args.tau, min_visible=args.min_visible)
    _write_jsonl(args.out, report.to_records())
    print(format_report(report))
    print(f"saved {args.out}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from circuits.evaluation.harness import EvalConfig, fit_context, split_tasks
    from circuits.sinks.search import search_heads

    cache, search, tasks = _checked_paths(args), _search_config(args), _tasks(args)
    torch.set_grad_enabled(False)
    model = load_model(args.model)
    tasks, skipped = fit_context(tasks, model.tokenizer, model.geometry.context_length)
    calibration, _ = split_tasks(tasks, EvalConfig(n_calibration=args.n_calibration, n_test=None, seed=args.seed))
    result = search_heads(model, calibration, search, cache=cache)
    records = [{"kind": "baseline", **result.baseline}, *result.heads,
               {"kind": "selected", "heads": [list(h) for h in result.selected], "seconds": result.seconds,
                "resumed": result.resumed, "skipped_over_context": skipped}]
    _write_jsonl(args.out, records)
    if skipped:
        print(f"left out {len(skipped)} item(s) longer than the model's context of {skipped[0]['context']} tokens")
    print(f"baseline accuracy {100 * result.baseline['accuracy']:.1f}% on {len(calibration)} calibration items; "
          f"{len(result.selected)} of {len(result.heads)} heads raise it: {list(result.selected)}")
    print(f"scored {len(result.heads) - result.resumed} heads in {result.seconds:.0f}s ({result.resumed} from cache)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from circuits.evaluation.harness import EvalConfig, act_evaluation, format_table

    config = EvalConfig(n_calibration=args.n_calibration, n_test=args.n_test, seed=args.seed,
                        max_prompt_chars=args.max_prompt_chars or None, n_random=args.n_random,
                        batch_size=args.batch_size)
    cache, search, tasks = _checked_paths(args), _search_config(args), _tasks(args)
    torch.set_grad_enabled(False)
    report = act_evaluation(load_model(args.model), tasks, search, config, cache=cache)
    _write_jsonl(args.out, [{"kind": "row", **row} for row in report["rows"]]
                 + [{"kind": "meta", **{k: v for k, v in report.items() if k != "rows"}}])
    print(format_table(report))
    return 0


def _search_config(args):
    from circuits.sinks.search import SearchConfig

    return SearchConfig(tau=args.tau, beta=args.beta, min_visible=args.min_visible, layers=args.layers,
                        batch_size=args.batch_size)


def _tasks(args):
    from circuits.evaluation.harness import load_tasks

    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    if not names:
        raise ValueError("--tasks names no task")
    return load_tasks(names, max_prompt_chars=args.max_prompt_chars or None, bbh_dir=args.bbh_dir)


def _prompts(args) -> list[str]:
    if args.prompt:
        return args.prompt
    if args.prompts_file:
        from probe.cli_capture import read_prompts

        return read_prompts(args.prompts_file)
    from circuits.evaluation.harness import load_tasks

    return [item.prompt for item in load_tasks([args.task], bbh_dir=args.bbh_dir)[0].items]


def _checked_paths(args) -> Path:
    """Check ``--out`` and the search cache before the model loads; returns the cache path."""
    from circuits.sinks.cache import check_cache_file

    check_output_path(args.out)
    cache = args.cache or args.out.with_suffix(".cache.jsonl")
    check_output_path(cache, "--cache")
    check_cache_file(cache)
    return cache


def _write_jsonl(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
