"""Indirect-object identification (IOI) prompts: the standard task of attention-circuit analyses.

Context:
    In "When Mary and John went to the store, John gave a drink to", the next name is the
    *indirect object* (Mary, named once), not the *subject* (John, named twice). Wang et al. (2022,
    "Interpretability in the Wild") found the GPT-2 heads that do this by comparing each prompt
    with a *corrupted* one in which the second mention of the subject is a third name ("... Lisa
    gave a drink to"): that removes the cue saying which name to skip, so the difference between
    the two runs isolates the heads that carry it. SmolLM2-135M does the task
    (``tests/foundation/test_data_files.py`` measures how often).

    Each item has both orders of the opening pair (ABBA: "Mary and John ..., John"; BABA:
    "John and Mary ..., John") in equal numbers, so position alone never gives the answer away.
    The templates and name lists are this project's; the items are drawn with a fixed seed, so the
    files in ``data/`` are reproducible: ``python data/make_ioi.py`` rewrites them.

Outputs:
    ``data/prompts/ioi.txt``: the prompts, one per line (``headscope capture --prompts-file``).
    ``data/ioi.jsonl``: one JSON object per line, ``{"prompt", "answer", "subject", "corrupted",
    "third", "order", "template"}``; ``answer`` and ``subject`` carry the leading space that the
    model predicts (``" Mary"``).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from circuits.discovery.draws import distinct as _distinct, index as _index
from probe.files import write_text_atomic

# {a} and {b}: the opening pair (indirect object and subject, in either order); {s2}: the subject's second mention.
TEMPLATES = (
    "When {a} and {b} went to the {place}, {s2} gave a {thing} to",
    "After {a} and {b} arrived at the {place}, {s2} handed a {thing} to",
    "While {a} and {b} were working at the {place}, {s2} passed a {thing} to",
    "Then, {a} and {b} went to the {place}. {s2} gave a {thing} to",
    "Yesterday {a} and {b} had lunch at the {place}, and {s2} offered a {thing} to",
    "Later, {a} and {b} found a {thing} at the {place}. {s2} gave it to",
)
NAMES = ("Mary", "John", "Tom", "James", "Sarah", "Anna", "David", "Paul", "Lisa", "Mark", "Emma", "Peter",
         "Laura", "Kevin", "Alice", "Daniel")
PLACES = ("store", "park", "school", "office", "station", "restaurant", "garden", "hospital")
THINGS = ("drink", "book", "ring", "letter", "bag", "key", "ball", "gift")
DEFAULT_COUNT = 48
DEFAULT_SEED = 0


@dataclass(frozen=True)
class IoiItem:
    """One IOI prompt with its answer and its corrupted counterpart.

    Attributes:
        prompt: ends where the indirect object's name comes next.
        answer: the indirect object with a leading space (named once in the prompt).
        subject: the subject with a leading space (named twice; the wrong answer).
        corrupted: the same prompt with the subject's second mention replaced by ``third``.
        third: the name used in ``corrupted``.
        order: ``"ABBA"`` (indirect object named first) or ``"BABA"``.
        template: index into :data:`TEMPLATES`.
    """

    prompt: str
    answer: str
    subject: str
    corrupted: str
    third: str
    order: str
    template: int


def ioi_items(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[IoiItem]:
    """``count`` items (an even number: half ABBA, half BABA), drawn with ``seed``."""
    if count < 2 or count % 2:
        raise ValueError(f"count must be an even number >= 2 (half ABBA, half BABA), got {count}")
    rng = random.Random(seed)
    items = []
    for index in range(count):
        io, s, third = _distinct(rng, NAMES, 3)
        template = _index(rng, len(TEMPLATES))
        place, thing = PLACES[_index(rng, len(PLACES))], THINGS[_index(rng, len(THINGS))]
        order = "ABBA" if index % 2 == 0 else "BABA"
        a, b = (io, s) if order == "ABBA" else (s, io)
        fill = TEMPLATES[template].format
        items.append(IoiItem(
            prompt=fill(a=a, b=b, s2=s, place=place, thing=thing),
            answer=" " + io,
            subject=" " + s,
            corrupted=fill(a=a, b=b, s2=third, place=place, thing=thing),
            third=third,
            order=order,
            template=template,
        ))
    return items


def write_files(items: list[IoiItem], data_dir: Path) -> tuple[Path, Path]:
    """Write ``prompts/ioi.txt`` and ``ioi.jsonl`` under ``data_dir``, each atomically."""
    prompts = data_dir / "prompts" / "ioi.txt"
    records = data_dir / "ioi.jsonl"
    write_text_atomic(prompts, "".join(item.prompt + "\n" for item in items))
    write_text_atomic(records, "".join(json.dumps(asdict(item)) + "\n" for item in items))
    return prompts, records


def read_items(path: Path) -> list[IoiItem]:
    """Items back from an ``ioi.jsonl`` file.

    Raises:
        ValueError: a line that is not a JSON object with exactly :class:`IoiItem`'s fields.
    """
    fields = set(IoiItem.__dataclass_fields__)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err}); regenerate with python data/make_ioi.py") from err
        if not isinstance(record, dict) or set(record) != fields:
            raise ValueError(f"{path}:{number}: expected an object with the fields {sorted(fields)}")
        items.append(IoiItem(**record))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="items (even: half ABBA, half BABA)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="data folder to write")
    args = parser.parse_args(argv)
    for path in write_files(ioi_items(args.count, args.seed), args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
