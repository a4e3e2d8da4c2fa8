"""Greater-than prompts (Hanna, Liu and Variengien 2023, "How does GPT-2 compute greater-than?").

Context:
    After "The war lasted from the year 1732 to the year 17", a model that knows how time runs
    puts its probability on the years after 32. The corrupted prompt starts the span at "01"
    ("... from the year 1701 to the year 17"), which leaves every two-digit year possible, so the
    difference between the two runs isolates the heads and MLPs that read the start year and
    push the later years up (methods dossier sections c and i).

    The start years YY run from 02 to 98 (01 is the corruption; after 99 nothing is greater),
    each ``--per-yy`` times, so every YY is equally frequent; the century is drawn per item from
    12 to 19 (years 1200-1999), among those that suit the tokens (below).

Answer and contrast:
    The task's own metric is the probability difference over all two-digit years,
    ``sum_{y > YY} p(y) - sum_{y <= YY} p(y)``; circuit discovery here reads one logit difference,
    so each item names two tokens on either side of the start year: ``answer`` is YY + 1 (the
    first year that is greater) and ``contrast`` is YY - 1 (the last one that is smaller). Both
    follow the century with no space ("17" then "33"), as GPT-2 writes "1733". ``yy`` and
    ``century`` are kept, so the probability difference can be computed from the file too.

Tokens:
    GPT-2 writes most years as a century token and a two-digit token (" 17", "32"), the form the
    task needs, but 145 of the years from 1200 to 1999 otherwise: as one token (" 1440", " 1850",
    every year from 1895 on) or as " 150" + "8" (:data:`GPT2_SPLIT_OTHERWISE`). For each YY the
    century is drawn among those where none of the years XX01, XX(YY-1), XXYY, XX(YY+1) is one
    of them, so every item keeps its shape for GPT-2 (Hanna et al. kept only such years too).
    The effect: the 1900s are never drawn, the 1800s only for YY up to 28, the 1300s and 1500s
    only from YY 11 on. Tokenizers that split numbers into digits (SmolLM2, Gemma) have
    no two-digit tokens; the task does not apply to them (:mod:`circuits.discovery.tasks` says
    so).

Output:
    ``data/greater_than.jsonl``: one JSON object per line, ``{"prompt", "corrupted", "answer",
    "contrast", "yy", "century", "noun"}``. ``python data/make_greater_than.py`` rewrites it.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from circuits.discovery.draws import index, shuffled
from probe.files import write_text_atomic

TEMPLATE = "The {noun} lasted from the year {century}{yy:02d} to the year {century}"
NOUNS = ("war", "siege", "journey", "reign", "trial", "voyage", "project", "study", "campaign", "drought",
         "famine", "strike", "treaty", "expedition", "dynasty", "pilgrimage", "plague", "rebellion",
         "occupation", "construction", "conflict", "festival", "tour", "alliance", "marriage")
START_YEARS = range(2, 99)  # YY = 02 .. 98
CORRUPT_YY = 1
DEFAULT_CENTURIES = (12, 19)
# The years 1200-1999 that GPT-2's tokenizer does not write as " XX" + "YY" after a space: one token
# (" 1440", " 1850", 1895 on) or " 130" + "5" (1302-1309, 1502-1509). Read from its vocab.json and merges.txt.
GPT2_SPLIT_OTHERWISE = frozenset(
    {1200, 1280, 1300, 1400, 1440, 1500, 1600, 1700, 1800, 1830, 1840, 1850, 1865, 1870, 1880, 1886, 1893}
    | {*range(1302, 1310), *range(1502, 1510), *range(1860, 1864), *range(1888, 1891), *range(1895, 2000)})
DEFAULT_PER_YY = 2
DEFAULT_SEED = 0


@dataclass(frozen=True)
class GreaterThanItem:
    """One greater-than prompt and its "01" twin.

    Attributes:
        prompt: ends after the century of the end year ("... to the year 17").
        corrupted: the same prompt with the start year's last two digits "01".
        answer: YY + 1 as two digits, the first end year that is greater.
        contrast: YY - 1 as two digits, the last end year that is smaller.
        yy: the start year's last two digits (2 to 98).
        century: the first two digits of both years.
        noun: what lasted.
    """

    prompt: str
    corrupted: str
    answer: str
    contrast: str
    yy: int
    century: int
    noun: str


def greater_than_items(per_yy: int = DEFAULT_PER_YY, centuries: tuple[int, int] = DEFAULT_CENTURIES,
                       seed: int = DEFAULT_SEED) -> list[GreaterThanItem]:
    """``per_yy`` items for each start year YY in 02..98, in an order shuffled with ``seed``; each
    century is drawn from ``centuries`` (inclusive) among those that keep the years in two tokens.

    Raises:
        ValueError: no century in ``centuries`` suits some YY.
    """
    low, high = centuries
    if per_yy < 1:
        raise ValueError(f"per_yy must be at least 1, got {per_yy}")
    if not 10 <= low <= high <= 99:
        raise ValueError(f"centuries must be two-digit numbers, low <= high, got {centuries}")
    rng = random.Random(seed)
    items = []
    for yy in START_YEARS:
        suited = [c for c in range(low, high + 1) if not {c * 100 + y for y in (CORRUPT_YY, yy - 1, yy, yy + 1)}
                  & GPT2_SPLIT_OTHERWISE]
        if not suited:
            raise ValueError(f"no century in {low}..{high} keeps the years around YY = {yy:02d} in two tokens")
        for _ in range(per_yy):
            century = suited[index(rng, len(suited))]
            noun = NOUNS[index(rng, len(NOUNS))]
            items.append(GreaterThanItem(
                prompt=TEMPLATE.format(noun=noun, century=century, yy=yy),
                corrupted=TEMPLATE.format(noun=noun, century=century, yy=CORRUPT_YY),
                answer=f"{yy + 1:02d}",
                contrast=f"{yy - 1:02d}",
                yy=yy,
                century=century,
                noun=noun,
            ))
    return shuffled(rng, items)


def write_file(items: list[GreaterThanItem], path: Path) -> Path:
    """Write ``items`` to ``path`` as JSON lines, atomically."""
    return write_text_atomic(path, "".join(json.dumps(asdict(item)) + "\n" for item in items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-yy", type=int, default=DEFAULT_PER_YY, help="items per start year YY (02..98)")
    parser.add_argument("--centuries", type=int, nargs=2, default=DEFAULT_CENTURIES, metavar=("LOW", "HIGH"),
                        help="first two digits of the years, inclusive (default 12 19)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "greater_than.jsonl")
    args = parser.parse_args(argv)
    path = write_file(greater_than_items(args.per_yy, tuple(args.centuries), args.seed), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
