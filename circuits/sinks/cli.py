"""``headscope sinks`` (sink report) and ``headscope act search|eval`` (ACT head search, evaluation).

Results are written as JSON lines and printed as a readable table. Bad input (unknown task,
malformed task file, task with no options, tau or beta out of range) raises ``ValueError``,
which the CLI prints as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from probe.files import write_text_atomic
from probe.models import DEFAULT_MODEL, load_model


def register(subparsers) -> None:
    _register_sinks(subparsers)
    act = subparsers.add_parser("act", help="ACT calibration: head search and evaluation")
    verbs = act.add_subparsers(dest="act_command", required=True)
    _register_search(verbs)
    _register_eval(verbs)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, required=True, help="output JSON-lines file")


def _act_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default="hyperbaton,navigate,ruin_names,reasoning_about_colored_objects,geometric_shapes",
                   help="comma-separated BBH task names or .json/.jsonl paths")
    p.add_argument("--tau", type=float, default=0.1, help="ACT sink threshold, in (0, 1)")
    p.add_argument("--beta", type=float, default=0.4, help="ACT sink scale, in [0, 1]")
    p.add_argument("--min-visible", type=int, default=1, help="sink guard at the last positions (1 = ACT raw)")
    p.add_argument("--layers", type=_ints, default=None, help="layers to search (default all)")
    p.add_argument("--n-calibration", type=int, default=3, help="calibration items per task")
    p.add_argument("--max-prompt-chars", type=int, default=300, help="leave out longer items (0: keep all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache", type=Path, default=None, help="search cache (default: OUT with .cache.jsonl)")
    p.add_argument("--seed", type=int, default=0)


def _register_sinks(subparsers) -> None:
    p = subparsers.add_parser("sinks", help="detect attention sinks over prompts or a task's inputs")
    _common(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    source.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    source.add_argument("--task", help="BBH task name or .json/.jsonl path: its inputs are the prompts")
    p.add_argument("--limit", type=int, default=16, help="at most this many prompts")
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--min-visible", type=int, default=8, help="keys seen by fewer queries are not counted")
    p.set_defaults(func=run_sinks)


def _register_search(verbs) -> None:
    p = verbs.add_parser("search", help="score ACT calibration of each head on a calibration split")
    _common(p)
    _act_options(p)
    p.set_defaults(func=run_search)


def _register_eval(verbs) -> None:
    p = verbs.add_parser("eval", help="accuracy without calibration, with searched heads, with random heads")
    _common(p)
    _act_options(p)
    p.add_argument("--n-test", type=int, default=30, help="test items per task")
    p.add_argument("--n-random", type=int, default=2, help="random-head control draws")
    p.set_defaults(func=run_eval)


def run_sinks(args: argparse.Namespace) -> int:
    from circuits.sinks.detection import format_report, sink_report

    from probe.attention.spec import SinkRule

    SinkRule(tau=args.tau, min_visible=args.min_visible)  # range checks before loading a model
    prompts = _prompts(args)[: args.limit]
    torch.set_grad_enabled(False)
    report = sink_report(load_model(args.model), prompts, tau=args.tau, min_visible=args.min_visible)
    _write_jsonl(args.out, report.to_records())
    print(format_report(report))
    print(f"saved {args.out}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from circuits.evaluation.harness import EvalConfig, split_tasks
    from circuits.sinks.search import search_heads

    search, tasks = _search_config(args), _tasks(args)
    calibration, _ = split_tasks(tasks, EvalConfig(n_calibration=args.n_calibration, n_test=None, seed=args.seed))
    torch.set_grad_enabled(False)
    result = search_heads(load_model(args.model), calibration, search, cache=_cache(args))
    records = [{"kind": "baseline", **result.baseline}, *result.heads,
               {"kind": "selected", "heads": [list(h) for h in result.selected], "seconds": result.seconds,
                "resumed": result.resumed}]
    _write_jsonl(args.out, records)
    print(f"baseline accuracy {100 * result.baseline['accuracy']:.1f}% on {len(calibration)} calibration items; "
          f"{len(result.selected)} of {len(result.heads)} heads raise it: {list(result.selected)}")
    print(f"scored {len(result.heads) - result.resumed} heads in {result.seconds:.0f}s ({result.resumed} from cache)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from circuits.evaluation.harness import EvalConfig, act_evaluation, format_table

    config = EvalConfig(n_calibration=args.n_calibration, n_test=args.n_test, seed=args.seed,
                        max_prompt_chars=args.max_prompt_chars or None, n_random=args.n_random,
                        batch_size=args.batch_size)
    search, tasks = _search_config(args), _tasks(args)
    torch.set_grad_enabled(False)
    report = act_evaluation(load_model(args.model), tasks, search, config, cache=_cache(args))
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
    return load_tasks(names, max_prompt_chars=args.max_prompt_chars or None)


def _prompts(args) -> list[str]:
    if args.prompt:
        return args.prompt
    if args.prompts_file:
        from probe.cli_capture import read_prompts

        return read_prompts(args.prompts_file)
    from circuits.evaluation.harness import load_tasks

    return [item.prompt for item in load_tasks([args.task])[0].items]


def _cache(args) -> Path:
    return args.cache or args.out.with_suffix(".cache.jsonl")


def _write_jsonl(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
