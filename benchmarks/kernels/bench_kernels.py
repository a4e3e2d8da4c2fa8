"""The kernel benchmark, one command for the lent GPU, in named sections.

    PYTHONUNBUFFERED=1 python benchmarks/kernels/bench_kernels.py --out $OUT
    python benchmarks/kernels/bench_kernels.py --section head-dim-64 --section k1-distance --out $OUT
    python benchmarks/kernels/bench_kernels.py --list-sections

With no ``--section`` it runs the default sections (env, tune, check, dense, sparse, edits) in
one process, so their ratios share the machine state; ``--sections a,b`` (a comma list, as in the
stored run logs) is the same as ``--section a --section b``. The sections and what each measures
are in :mod:`benchmarks.kernels.sections` (``--list-sections``). Times are medians of
``triton.testing.do_bench``; nothing here asserts a timing. Results go to ``<out>/results.jsonl``
and ``<out>/log.txt``; when a section of the report ran, the rendered report goes to
``<out>/kernels.md`` and into ``notes/kernels.md`` of the checkout the script runs in, between
its generated-block markers (copy it back from ``<out>`` when the run was on a lent machine).
Imports nothing of the kernels until a section runs: listing and checking names needs no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.kernels.sections import DEFAULT_SECTIONS, SECTIONS  # noqa: E402


class BadInput(Exception):
    """A command-line mistake, reported as one ``error:`` line and exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "out"), help="folder for results.jsonl, log.txt, "
                        "kernels.md")
    parser.add_argument("--section", action="append", default=[], metavar="NAME",
                        help="a section to run (repeatable; default: " + ",".join(DEFAULT_SECTIONS) + ")")
    parser.add_argument("--sections", default="", help="comma-separated sections (the same as repeating --section)")
    parser.add_argument("--list-sections", action="store_true", help="print every section with what it measures")
    parser.add_argument("--notes", default=str(REPO / "notes" / "kernels.md"),
                        help="notes file whose generated block the report replaces")
    return parser.parse_args(argv)


def chosen_sections(args: argparse.Namespace) -> list[str]:
    """The sections asked for, in order (the default ones if none); every name checked first."""
    names = [name for name in args.sections.split(",") if name] + list(args.section)
    for name in names:
        if name not in SECTIONS:
            raise BadInput(f"unknown section {name!r}; run with --list-sections to see the {len(SECTIONS)} names")
    return names or list(DEFAULT_SECTIONS)


def list_sections() -> str:
    width = max(len(name) for name in SECTIONS)
    return "\n".join(f"{name:<{width}}  {'[default] ' if name in DEFAULT_SECTIONS else ''}{section.description}"
                     for name, section in SECTIONS.items())


def output_folder(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {path} is a file; give a folder (it is created if missing)")
    return out


def run_sections(names: list[str], out: Path) -> list[dict]:
    """Run each section, recording its time or its error; results and log rewritten after each."""
    from benchmarks.kernels.common import LINES, RESULTS, record

    for name in names:
        start = time.perf_counter()
        try:
            SECTIONS[name].load()()
        except Exception:
            record("error", part=name, trace=traceback.format_exc()[-1500:])
        record("time", part=name, seconds=time.perf_counter() - start)
        (out / "results.jsonl").write_text("\n".join(json.dumps(r) for r in RESULTS) + "\n")
        (out / "log.txt").write_text("\n".join(LINES) + "\n")
    return RESULTS


def write_report(results: list[dict], out: Path, notes: Path, argv: list[str]) -> None:
    """The rendered report into ``<out>/kernels.md`` and into the notes' generated block."""
    from benchmarks.kernels.report import render, write_notes

    out_dir = os.environ.get("OUT")
    argv = ["$OUT" if out_dir and a == out_dir else a for a in argv]  # no machine paths in notes
    text = render(results, command=" ".join(["python3", "benchmarks/kernels/bench_kernels.py", *argv]))
    (out / "kernels.md").write_text(text)
    write_notes(text, notes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.list_sections:
        print(list_sections())
        return 0
    try:
        names = chosen_sections(args)
        out = output_folder(args.out)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    results = run_sections(names, out)
    if any(SECTIONS[name].report for name in names):
        write_report(results, out, Path(args.notes), argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
