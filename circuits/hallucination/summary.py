"""The summary of an evaluation: metrics per condition and split, the failures, a table, plots.

Context:
    :func:`summarize` groups the merged records by (condition, kind, split) and scores each group
    with the metric functions of :mod:`circuits.hallucination.pope` (parsed yes/no answers against
    the labels) and :mod:`circuits.hallucination.chair` (captions against the true objects).
    Failed items (no answer: a missing or corrupt image, an answer the model could not give) are
    left out of the metrics, counted per group and listed with their errors.

    Each metric comes with a 95% percentile-bootstrap interval over the group's items (seeded, so a
    rerun or another number of processes gives the same numbers).

    :func:`write_summary` writes ``summary.json`` (atomically), ``summary.txt`` (the table and
    the failures) and ``summary.html`` (the table, one plotly figure per item kind with a panel
    per metric and a bar with its interval per condition and split, the failures; plotly's script
    embedded once, so the page opens offline).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

from probe.files import write_text_atomic

SUMMARY_FILES = ("summary.json", "summary.txt", "summary.html")
FAILURES_SHOWN = 50


def group_records(records: Sequence[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Records by (condition, kind, split), groups in order of first appearance."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["condition"], record["kind"], record["split"]), []).append(record)
    return groups


BOOTSTRAP = {"n_boot": 1000, "level": 0.95, "seed": 0}
"""The intervals' percentile bootstrap over a group's items (seeded: a rerun gives the same)."""


def pope_group_metrics(records: Sequence[dict], vocabulary=None) -> tuple[dict, dict]:
    from circuits.hallucination.pope import pope_report

    report = pope_report([r["label"] for r in records], [r["answer"] for r in records], **BOOTSTRAP)
    return report.metrics.to_dict(), {name: interval.as_dict() for name, interval in report.intervals.items()}


def chair_group_metrics(records: Sequence[dict], vocabulary=None) -> tuple[dict, dict]:
    from circuits.hallucination.chair import chair_metrics

    if vocabulary is None:
        raise ValueError("CHAIR metrics need a vocabulary")
    metrics = chair_metrics(vocabulary, [r["answer"] for r in records], [frozenset(r["truth"]) for r in records])
    return metrics.to_dict(details=False), {name: interval.as_dict()
                                            for name, interval in metrics.intervals(**BOOTSTRAP).items()}


METRICS = {"pope": pope_group_metrics, "chair": chair_group_metrics}
"""Per item kind, ``metrics(answered_records, vocabulary) -> (metrics, intervals)``."""

HEADLINE = {"pope": ("accuracy", "precision", "recall", "f1", "yes_ratio"), "chair": ("chair_s", "chair_i", "recall")}
"""Per item kind, the metrics of the table and the plots (``summary.json`` holds every count too)."""


def summarize(records: Sequence[dict], vocabulary=None, missing: Sequence[tuple[str, str]] = (),
              skipped: Sequence = ()) -> dict:
    """Metrics per (condition, kind, split) over the answered records, and every failure.

    Args:
        records: the merged result records.
        vocabulary: CHAIR's vocabulary (needed when there are CHAIR records).
        missing: (condition, item_id) keys no process recorded (empty after a complete run).
        skipped: the item sets that could not be read (``option`` and ``error`` each).
    """
    groups = []
    for (condition, kind, split), members in group_records(records).items():
        answered = [r for r in members if r["error"] is None]
        metrics, intervals = METRICS[kind](answered, vocabulary) if answered else ({}, {})
        groups.append({"condition": condition, "kind": kind, "split": split, "items": len(members),
                       "answered": len(answered), "failed": len(members) - len(answered),
                       "metrics": json_safe(metrics),
                       "intervals": {name: json_safe(interval) for name, interval in intervals.items()}})
    failures = [{"condition": r["condition"], "item_id": r["item_id"], "image": r["image"], "error": r["error"]}
                for r in records if r["error"] is not None]
    return {"groups": groups, "failures": failures, "records": len(records),
            "missing": [list(key) for key in missing],
            "skipped_sets": [{"set": skip.option, "error": skip.error} for skip in skipped]}


def json_safe(metrics: dict) -> dict:
    """``metrics`` with NaN and infinities (a precision without a single yes) as None."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def metric_names(groups: Sequence[dict]) -> list[str]:
    """The headline metrics of ``groups``' kind that they hold (every numeric one for other kinds)."""
    present: dict[str, None] = {}
    for group in groups:
        present.update({k: None for k, v in group["metrics"].items() if isinstance(v, (int, float))})
    headline = HEADLINE.get(groups[0]["kind"]) if groups else None
    return [name for name in headline if name in present] if headline else list(present)


def format_value(value) -> str:
    """A table cell: 4 decimals for floats, ``-`` where a group has no value (every item failed)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_table(summary: dict) -> str:
    """One text table per item kind: condition, split, counts and each metric."""
    blocks = []
    for kind in dict.fromkeys(group["kind"] for group in summary["groups"]):
        groups = [group for group in summary["groups"] if group["kind"] == kind]
        names = metric_names(groups)
        header = ["condition", "split", "items", "failed", *names]
        rows = [[g["condition"], g["split"], str(g["items"]), str(g["failed"]),
                 *(format_value(g["metrics"].get(name)) for name in names)] for g in groups]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
        blocks.append(f"{kind.upper()}\n" + "\n".join(lines))
    return "\n\n".join(blocks) if blocks else "no results"


def failure_lines(summary: dict, limit: int = FAILURES_SHOWN) -> list[str]:
    lines = []
    if summary["skipped_sets"]:
        lines.append(f"{len(summary['skipped_sets'])} item set(s) skipped, unreadable:")
        lines += [f"  {skip['set']}: {skip['error']}" for skip in summary["skipped_sets"]]
    failures = summary["failures"]
    if not failures:
        return lines + ["no failed items"]
    lines += [f"{len(failures)} failed (condition, item: error):"]
    lines += [f"  {f['condition']}  {f['item_id']}: {f['error']}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more (all in summary.json)")
    return lines


def summary_text(summary: dict) -> str:
    text = summary_table(summary) + "\n\n" + "\n".join(failure_lines(summary))
    if summary["missing"]:
        text += f"\n\n{len(summary['missing'])} (condition, item) pairs were not recorded by any process"
    return text + "\n"


def figures(summary: dict) -> list:
    """One plotly figure per item kind: a panel per metric, bars per split grouped by condition."""
    from plotly.subplots import make_subplots

    out = []
    for kind in dict.fromkeys(group["kind"] for group in summary["groups"]):
        groups = [g for g in summary["groups"] if g["kind"] == kind]
        names = metric_names(groups)
        if not names:
            continue
        figure = make_subplots(rows=1, cols=len(names), subplot_titles=names)
        for index, condition in enumerate(dict.fromkeys(g["condition"] for g in groups)):
            mine = [g for g in groups if g["condition"] == condition]
            for col, name in enumerate(names, start=1):
                figure.add_bar(x=[g["split"] for g in mine], y=[g["metrics"].get(name) for g in mine],
                               error_y=error_bars(mine, name), name=condition, legendgroup=condition,
                               showlegend=col == 1, marker_color=PALETTE[index % len(PALETTE)], row=1, col=col)
        figure.update_layout(title=f"{kind.upper()} by split and condition", barmode="group",
                             height=360, width=max(420, 260 * len(names)))
        out.append(figure)
    return out


def error_bars(groups: Sequence[dict], name: str) -> dict:
    """Plotly's asymmetric error bars from the groups' bootstrap intervals of ``name`` (0 where none)."""
    intervals = [g["intervals"].get(name, {}) for g in groups]
    values = [g["metrics"].get(name) for g in groups]
    up = [i["high"] - v if v is not None and i.get("high") is not None else 0 for i, v in zip(intervals, values)]
    down = [v - i["low"] if v is not None and i.get("low") is not None else 0 for i, v in zip(intervals, values)]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down}


PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")


def summary_html(summary: dict) -> str:
    plots = [figure.to_html(full_html=False, include_plotlyjs=index == 0, config={"displaylogo": False})
             for index, figure in enumerate(figures(summary))]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>headscope vlm eval</title></head><body>\n"
            "<h1>Hallucination evaluation</h1>\n"
            f"<pre>{html.escape(summary_table(summary))}</pre>\n{''.join(plots)}\n"
            f"<h2>Failures</h2>\n<pre>{html.escape(chr(10).join(failure_lines(summary, limit=10**9)))}</pre>\n"
            "</body></html>\n")


def write_summary(out: Path, summary: dict) -> list[Path]:
    """``summary.json``, ``summary.txt`` and ``summary.html`` in ``out``, each written atomically."""
    out = Path(out)
    texts = (json.dumps(summary, indent=1, allow_nan=False) + "\n", summary_text(summary), summary_html(summary))
    return [write_text_atomic(out / name, text) for name, text in zip(SUMMARY_FILES, texts)]
