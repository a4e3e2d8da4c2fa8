"""The rhythm paper's claims on one model's traces, next to its published figures (markdown).

Reads the outputs of ``headscope rhythm analyse`` (one JSON line per trace, then the couplings)
and, optionally, ``headscope rhythm perturb`` (one JSON file), and writes:

- the distribution of WAAD and FAI over all response tokens (quantiles) and peaks per 100 tokens;
- the three couplings of the paper's Table 2 with their lifts against shuffled peaks;
- where peaks fall (:mod:`circuits.rhythm.anchors`, recomputed from the per-token signals with
  the token classes of this checkout), and the tokens most often at a peak;
- the perturbation test next to the paper's Table 1.

    python benchmarks/rhythm_replication.py --analysis A.jsonl [--perturb P.json] --title TEXT
        [--out notes/rhythm.md]

Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from circuits.rhythm.anchors import all_placements, format_placements
from circuits.rhythm.metrics import HeadRoles, TokenRhythm
from circuits.rhythm.peaks import CouplingConfig

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def read_lines(path: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:-1], rows[-1]


def as_tensor(values: list) -> torch.Tensor:
    return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64)


def rhythm_of(row: dict) -> TokenRhythm:
    """A trace's line as a TokenRhythm (head roles: the spans are not needed here)."""
    heads = row["heads"]
    roles = HeadRoles(layers=tuple(heads["layers"]), spans=torch.zeros(1, 1), local_heads=(), global_heads=())
    return TokenRhythm(prompt=row["index"], response_start=row["response_start"], tokens=tuple(row["tokens"]),
                       waad=as_tensor(row["waad"]), fai=as_tensor(row["fai"]),
                       receiver_fai=as_tensor(row["receiver_fai"]), roles=roles)


def distribution(rows: list[dict]) -> list[str]:
    lines = ["| signal | tokens | " + " | ".join(f"q{int(100 * q)}" for q in QUANTILES) + " | peaks per 100 tokens |",
             "|---|---|" + "---|" * len(QUANTILES) + "---|"]
    n_tokens = sum(len(r["tokens"]) for r in rows)
    for signal in ("waad", "fai"):
        values = np.array([v for r in rows for v in r[signal] if v is not None], dtype=float)
        peaks = sum(len(r["peaks"][signal]) for r in rows)
        cells = " | ".join(f"{np.quantile(values, q):.4g}" for q in QUANTILES)
        lines.append(f"| {signal.upper()} | {values.size} | {cells} | {100 * peaks / n_tokens:.1f} |")
    return lines


def couplings(last: dict) -> list[str]:
    lines = ["| coupling | observed | random | lift [95% interval] | peaks | paper observed | paper random | paper lift |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in last["couplings"].values():
        paper = entry["paper"]
        if not entry["measured"]:
            lines.append(f"| {entry['label']} | no peaks | | | | {paper['observed']} | {paper['random']} | "
                         f"{100 * paper['lift']:+.2f}% |")
            continue
        lift = entry["lift"]
        lines.append(f"| {entry['label']} | {entry['observed']:.4g} | {entry['random']:.4g} | "
                     f"{100 * lift['value']:+.1f}% [{100 * lift['low']:+.1f}, {100 * lift['high']:+.1f}] | "
                     f"{entry['n_peaks']} | {paper['observed']} | {paper['random']} | {100 * paper['lift']:+.2f}% |")
    return lines


def top_tokens(rows: list[dict], signal: str, count: int = 8) -> str:
    at_peaks = Counter(r["tokens"][p] for r in rows for p in r["peaks"][signal])
    base = Counter(t for r in rows for t in r["tokens"])
    n_peaks, n_tokens = sum(at_peaks.values()), sum(base.values())
    return ", ".join(f"`{json.dumps(t)[1:-1]}` {100 * n / n_peaks:.1f}% (of tokens {100 * base[t] / n_tokens:.1f}%)"
                     for t, n in at_peaks.most_common(count))


def perturbation(path: Path) -> list[str]:
    result = json.loads(path.read_text(encoding="utf-8"))
    summary, paper, settings = result["summary"], result["paper"], result["settings"]

    def interval(d: dict, scale: float = 1.0, unit: str = "") -> str:
        return f"{scale * d['value']:.3g}{unit} [{scale * d['low']:.3g}, {scale * d['high']:.3g}]"

    return [f"{summary['n_trials']} trials on {summary['n_traces']} traces; rollout {settings['rollout_tokens']} "
            f"greedy tokens after the forced rank-{settings['rank']} token; ties {summary['ties']}.", "",
            "| figure | ours [95% interval] | paper |", "|---|---|---|",
            f"| mean content-word Jaccard, high-FAI positions | {interval(summary['jaccard_high'])} | "
            f"{paper.get('jaccard_high')} |",
            f"| mean content-word Jaccard, low-FAI positions | {interval(summary['jaccard_low'])} | "
            f"{paper.get('jaccard_low')} |",
            f"| high-FAI perturbation changes the continuation more | "
            f"{interval(summary['high_changes_more'], 100, '%')} | {paper.get('high_changes_more')} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analysis", type=Path, required=True)
    parser.add_argument("--perturb", type=Path, default=None)
    parser.add_argument("--title", required=True)
    parser.add_argument("--out", type=Path, default=None, help="append the section to this markdown file")
    args = parser.parse_args()
    rows, last = read_lines(args.analysis)
    settings = last["settings"]
    lines = [f"## {args.title}", "",
             f"{len(rows)} traces, {sum(len(r['tokens']) for r in rows)} response tokens; model {settings['model']}; "
             f"W={settings['window']}, band {settings['band_lo']}..{settings['band_hi'] or 'end'}, layers "
             f"{settings['layers'] or 'all'}.", "", "### WAAD and FAI over response tokens", "", *distribution(rows),
             "", "### Couplings (paper Table 2)", "", *couplings(last), "", "### Where peaks fall", "", "```",
             format_placements(all_placements([rhythm_of(r) for r in rows], CouplingConfig())), "```", "",
             f"Most frequent tokens at FAI peaks: {top_tokens(rows, 'fai')}.", "",
             f"Most frequent tokens at WAAD peaks: {top_tokens(rows, 'waad')}.", ""]
    if args.perturb is not None:
        lines += ["### Perturbation test (paper Table 1)", "", *perturbation(args.perturb), ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
