"""Run function of ``headscope circuits compare``; its parser is in :mod:`circuits.cli`.

Context:
    ``circuits compare`` measures component reuse between two result files
    (:mod:`circuits.discovery.results`) of one model (IOI against colored objects, say): the
    heads each keeps by one rule, the shared ones, their overlap (shared over union,
    :func:`~circuits.discovery.scores.overlap`) and the Spearman rank correlation of the two
    score maps.

Errors:
    A bad result file, two models or two geometries raise :class:`~probe.errors.InputError`; the
    CLI prints it as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from circuits.discovery.ground_truth import circuit_from_scores, heads_of
from circuits.discovery.results import ResultFile, ranked, read_result, shape_text
from circuits.discovery.scores import overlap
from probe.cli_options import check_output_path
from probe.errors import InputError
from probe.files import write_text_atomic


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
