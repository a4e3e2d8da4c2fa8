"""ACT evaluation: accuracy without calibration, with searched heads, with random heads.

Context:
    Each task is split (seeded) into calibration and test items. The head search
    (:func:`circuits.sinks.search.search_heads`) runs on the pooled calibration items; the test
    items are then scored three ways, by option log-likelihood:

    - ``baseline``: no edit;
    - ``searched``: ACT calibration on the heads the search kept;
    - ``random-i``: ACT calibration on as many heads drawn uniformly from the searched space
      (the control: does *which* heads matter, or only *how many*?).

    Accuracies carry percentile-bootstrap intervals over items; differences to the baseline are
    paired (same items) bootstrap intervals.

Deviation: to fit CPU budgets, items whose prompt is longer than ``max_prompt_chars`` can be
left out before splitting; the report states the filter.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from circuits.evaluation.bootstrap import bootstrap_difference, bootstrap_mean
from circuits.evaluation.scoring import correct, scored_length, score_items
from circuits.evaluation.tasks import Item, Task, TaskError, build_task, load_task, split_items
from circuits.sinks.search import SearchConfig, random_heads, search_heads, search_space
from probe.edits import apply_edits
from probe.models.hub import hub_offline, hub_reachable
from probe.models.loading import first_line

BBH_DIR_VARIABLE = "HEADSCOPE_BBH_DIR"
BBH_DATASET = "lukaemon/bbh"
"""The hub data set of BIG-Bench-Hard: one config per task, a ``test`` split of ``{input, target}``."""
DEFAULT_TASKS = ("hyperbaton", "navigate", "ruin_names", "logical_deduction_three_objects", "reasoning_about_colored_objects")


@dataclass(frozen=True)
class EvalConfig:
    """Splits and statistics of an ACT evaluation.

    Attributes:
        n_calibration: calibration items per task (the search's data).
        n_test: test items per task (None: all the rest).
        max_prompt_chars: leave out longer items before splitting (None: keep all).
        seed: split seed.
        n_random: random-head control draws.
        n_boot: bootstrap resamples.
        batch_size: rows per forward in the test scoring.
    """

    n_calibration: int = 8
    n_test: int | None = 40
    max_prompt_chars: int | None = None
    seed: int = 0
    n_random: int = 3
    n_boot: int = 2000
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.n_calibration < 0 or (self.n_test is not None and self.n_test < 1):
            raise ValueError("n_calibration must be >= 0 and n_test >= 1")
        if self.n_random < 0 or self.n_boot < 1:
            raise ValueError("n_random must be >= 0 and n_boot >= 1")


def bbh_dir_or_default(bbh_dir: str | Path | None) -> Path | None:
    """``bbh_dir``, else ``$HEADSCOPE_BBH_DIR``, else None (task names then load from the hub)."""
    chosen = bbh_dir if bbh_dir is not None else os.environ.get(BBH_DIR_VARIABLE) or None
    return Path(chosen).expanduser() if chosen is not None else None


def is_task_file(name: str) -> bool:
    return Path(name).suffix in (".json", ".jsonl")


def resolve_task(name: str, bbh_dir: str | Path | None = None) -> Path:
    """A ``.json``/``.jsonl`` path, or a task name's file in the BBH folder.

    Args:
        name: ``hyperbaton`` or ``path/to/task.jsonl``.
        bbh_dir: folder of BBH ``NAME.json`` files (default ``$HEADSCOPE_BBH_DIR``).

    Raises:
        TaskError: a missing file or folder, an unknown name, or no folder to look names up in.
    """
    if is_task_file(name):
        path = Path(name)
        if not path.exists():
            raise TaskError(f"task file {path} does not exist")
        return path
    folder = bbh_dir_or_default(bbh_dir)
    if folder is None:
        raise TaskError(f"task {name!r}: no BBH folder given (--bbh-dir or {BBH_DIR_VARIABLE}); "
                        "pass --bbh-dir DIR or a .json/.jsonl path")
    if not folder.is_dir():
        raise TaskError(f"BBH folder {folder} (--bbh-dir or {BBH_DIR_VARIABLE}) does not exist or is not a folder")
    candidate = folder / f"{name}.json"
    if not candidate.exists():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise TaskError(f"unknown task {name!r} in {folder}; give a .json/.jsonl path or one of {known}")
    return candidate


def load_bbh_from_hub(name: str) -> Task:
    """BBH task ``name`` from the hub data set :data:`BBH_DATASET`, through the ``datasets`` package.

    Raises:
        TaskError: the hub does not answer, ``datasets`` is missing, or the hub has no such task.
    """
    if not hub_offline("HF_DATASETS_OFFLINE") and not hub_reachable():
        raise TaskError(f"task {name!r}: no BBH folder given (--bbh-dir or {BBH_DIR_VARIABLE}) and the hub is "
                        "unreachable; pass --bbh-dir DIR or a .json/.jsonl path")
    try:
        import datasets
    except ImportError as err:
        raise TaskError(f"task {name!r}: no BBH folder given, and loading it from the hub needs the datasets "
                        "package (pip install datasets); or pass --bbh-dir DIR or a .json/.jsonl path") from err
    try:
        rows = datasets.load_dataset(BBH_DATASET, name, split="test")
    except (ValueError, OSError, ConnectionError) as err:
        raise TaskError(f"unknown task {name!r} at the hub data set {BBH_DATASET} ({first_line(err)}); "
                        "pass --bbh-dir DIR or a .json/.jsonl path") from err
    return build_task(name, [{"input": row["input"], "target": row["target"]} for row in rows])


def load_named_task(name: str, bbh_dir: str | Path | None = None) -> Task:
    """A task file, a task name in the BBH folder, or, with no folder, a task name from the hub."""
    if is_task_file(name) or bbh_dir_or_default(bbh_dir) is not None:
        return load_task(resolve_task(name, bbh_dir))
    return load_bbh_from_hub(name)


def load_tasks(names: Sequence[str], max_prompt_chars: int | None = None,
               bbh_dir: str | Path | None = None) -> list[Task]:
    """Load tasks by name or path, optionally keeping only items with short prompts.

    Args:
        names: BBH task names or ``.json``/``.jsonl`` paths.
        max_prompt_chars: leave out items with longer prompts (None: keep all).
        bbh_dir: folder of BBH ``NAME.json`` files for task names (default
            ``$HEADSCOPE_BBH_DIR``; with neither, names load from the hub, :func:`load_bbh_from_hub`).
    """
    tasks = []
    for name in names:
        task = load_named_task(name, bbh_dir)
        if max_prompt_chars is not None:
            kept = tuple(i for i in task.items if len(i.prompt) <= max_prompt_chars)
            if not kept:
                raise TaskError(f"task {task.name!r}: no item has a prompt of at most {max_prompt_chars} characters")
            task = Task(task.name, kept, task.dropped)
        tasks.append(task)
    return tasks


def fit_context(tasks: Sequence[Task], tokenizer, context_length: int | None) -> tuple[list[Task], list[dict]]:
    """Leave out items whose scoring rows would not fit the model's context.

    Returns the tasks without those items and one record per item left out (task, index in
    the task, tokens needed, context), for the report. A task left with no item is an error.
    """
    if context_length is None:
        return list(tasks), []
    kept_tasks, skipped = [], []
    for task in tasks:
        kept = []
        for index, item in enumerate(task.items):
            length = scored_length(tokenizer, item)
            if length > context_length:
                skipped.append({"task": task.name, "item": index, "tokens": length, "context": context_length})
            else:
                kept.append(item)
        if not kept:
            raise TaskError(f"task {task.name!r}: every item is longer than the model's context of {context_length} tokens")
        kept_tasks.append(Task(task.name, tuple(kept), task.dropped))
    return kept_tasks, skipped


def split_tasks(tasks: Sequence[Task], config: EvalConfig) -> tuple[list[Item], dict[str, tuple[Item, ...]]]:
    """Pooled calibration items and per-task test items."""
    calibration, test = [], {}
    for task in tasks:
        cal, held = split_items(task, config.n_calibration, config.n_test, config.seed)
        calibration += cal
        test[task.name] = held
    return calibration, test


def test_hits(model, test: dict[str, tuple[Item, ...]], edits: list, batch_size: int) -> dict[str, list[bool]]:
    """Per task, whether each test item is answered correctly under ``edits``."""
    hits = {}
    with apply_edits(model, edits):
        for name, items in test.items():
            hits[name] = correct(score_items(model, items, batch_size), items)
    return hits


def act_evaluation(model, tasks: Sequence[Task], search: SearchConfig = SearchConfig(),
                   config: EvalConfig = EvalConfig(), cache: str | Path | None = None, progress: bool = True) -> dict:
    """Search heads on the calibration split, then score the test split under each condition.

    Items longer than the model's context are left out before the split and listed in the
    report (``skipped_over_context``)."""
    tasks, skipped = fit_context(tasks, model.tokenizer, model.geometry.context_length)
    calibration, test = split_tasks(tasks, config)
    found = search_heads(model, calibration, search, cache=cache, progress=progress)
    space = search_space(search, model.geometry.n_layers, model.geometry.n_heads)
    conditions = {"baseline": [], "searched": list(found.selected)}
    for draw in range(config.n_random if found.selected else 0):
        conditions[f"random-{draw}"] = random_heads(space, len(found.selected), seed=draw)
    hits = {name: test_hits(model, test, search.edit(heads), config.batch_size) for name, heads in conditions.items()}
    return {
        "model": model.name,
        "search": {**asdict(search), "baseline": found.baseline, "selected": [list(h) for h in found.selected],
                   "n_heads_searched": len(found.heads), "seconds": found.seconds, "resumed": found.resumed,
                   "n_calibration_items": len(calibration)},
        "eval": asdict(config),
        "rows": _rows(hits, config.n_boot),
        "skipped_over_context": skipped,
        "conditions": {name: [list(h) for h in heads] for name, heads in conditions.items()},
    }


def _rows(hits: dict[str, dict[str, list[bool]]], n_boot: int) -> list[dict]:
    rows = []
    base = hits["baseline"]
    for condition, per_task in hits.items():
        for task in [*per_task, "all"]:
            sample = sum(per_task.values(), []) if task == "all" else per_task[task]
            control = sum(base.values(), []) if task == "all" else base[task]
            row = {"condition": condition, "task": task, "n": len(sample),
                   "accuracy": bootstrap_mean(sample, n_boot).as_dict()}
            if condition != "baseline":
                row["minus_baseline"] = bootstrap_difference(sample, control, n_boot=n_boot).as_dict()
            rows.append(row)
    return rows


def format_table(report: dict) -> str:
    """A readable accuracy table (percent, 95% bootstrap intervals)."""
    lines = [f"model {report['model']}: {len(report['search']['selected'])} heads kept of "
             f"{report['search']['n_heads_searched']} searched; calibration baseline "
             f"{100 * report['search']['baseline']['accuracy']:.1f}%",
             f"{'condition':<10} {'task':<34} {'n':>4}  {'accuracy % [95% CI]':<22} {'minus baseline [95% CI]':<22}"]
    skipped = report.get("skipped_over_context") or []
    if skipped:
        lines.insert(1, f"left out {len(skipped)} item(s) longer than the context: " + ", ".join(
            f"{s['task']}#{s['item']} ({s['tokens']} tokens > {s['context']})" for s in skipped))
    for row in report["rows"]:
        acc = row["accuracy"]
        diff = row.get("minus_baseline")
        diff_text = (f"{100 * diff['value']:+5.1f} [{100 * diff['low']:+5.1f}, {100 * diff['high']:+5.1f}]"
                     if diff else "")
        lines.append(f"{row['condition']:<10} {row['task']:<34} {row['n']:>4}  "
                     f"{100 * acc['value']:5.1f} [{100 * acc['low']:5.1f}, {100 * acc['high']:5.1f}]  {diff_text}")
    return "\n".join(lines)
