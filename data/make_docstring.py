"""Docstring-completion prompts (Heimersheim and Janiak 2023, "A circuit for Python docstrings in a
4-layer attention-only transformer").

Context:
    A Python function whose docstring documents its arguments in the order of the ``def``:

        def load(self, mode, port, value, size, file, node):
            \"\"\"item answer table

            :param value: shape count
            :param size: user label
            :param

    The next token is `` file``, the argument after the last documented one, found by matching
    the docstring's names against the ``def`` line. The corrupted prompt (the reference's
    ``random_random``) gives the three matching ``def`` arguments and the two documented ones
    new, unrelated names, so nothing in it says which name comes next.

    The shape is the one O'Neill and Bui use (methods dossier section c):
    ``docstring_ind_prompt_gen("rest", n_matching_args=3, n_def_prefix_args=2,
    n_def_suffix_args=1, n_doc_prefix_args=0, met_desc_len=3, arg_desc_len=2)``: two arguments
    before the matching three, one after, three words of description, two per argument. The
    name and word lists are this project's, chosen so that each is one token with its leading
    space for GPT-2's and SmolLM2's tokenizers.

Answer and contrast:
    ``answer`` is the next argument with its leading space. ``contrast`` is the argument after
    it in the ``def`` (the one never documented, which a model matching positions loosely
    picks); it is in both prompts. ``wrong`` lists every other argument name of both prompts,
    for metrics that take the best wrong answer (the reference's).

Output:
    ``data/docstring.jsonl``: one JSON object per line, ``{"prompt", "corrupted", "answer",
    "contrast", "wrong"}``. ``python data/make_docstring.py`` rewrites it.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from circuits.discovery.draws import distinct
from probe.files import write_text_atomic

NAMES = ("data", "name", "file", "value", "key", "path", "size", "mode", "text", "user", "item", "index", "count",
         "config", "state", "model", "node", "line", "url", "port", "host", "label", "query", "token", "field",
         "table", "target", "source", "result", "output", "input", "format", "message", "status", "title", "color",
         "order", "group", "event", "option", "shape", "length", "limit", "offset", "timeout", "parent", "child",
         "request", "response", "context", "version", "number", "date", "image", "style", "root", "prefix",
         "suffix", "filename", "default", "options", "values", "start", "end", "callback", "buffer", "header",
         "body", "params", "args", "flag", "level", "step", "scale", "weight", "bias", "seed", "device", "stream",
         "channel", "client", "server", "session", "column", "row", "frame", "layer", "batch", "rate")
WORDS = ("price", "control", "action", "cost", "issue", "process", "position", "course", "type", "research",
         "subject", "age", "force", "matter", "health", "street", "class", "mind", "paper", "bank", "section",
         "activity", "building", "sense", "staff", "team", "student", "language", "town", "plan", "morning",
         "product", "practice", "evidence", "ground", "letter", "game", "food", "role", "land", "art", "support",
         "range", "stage", "trade", "voice", "club", "history", "account", "material", "care", "project", "record",
         "example", "window", "air", "light", "quality", "rule", "story", "tax", "worker", "nature", "method",
         "unit", "detail", "wall", "computer", "amount", "chapter", "property", "board", "share", "picture",
         "test", "security", "future", "site", "loss", "shop", "animal", "heart", "purpose", "standard", "page")
N_MATCHING, N_PREFIX, N_SUFFIX = 3, 2, 1
METHOD_WORDS, ARG_WORDS = 3, 2
DEFAULT_COUNT = 120
DEFAULT_SEED = 0


@dataclass(frozen=True)
class DocstringItem:
    """One docstring prompt and its corrupted twin.

    Attributes:
        prompt: ends with ``:param`` where the next argument's name comes.
        corrupted: the same prompt with the matching ``def`` arguments and the documented ones
            renamed to unrelated names (``random_random``).
        answer: the next argument, with its leading space.
        contrast: the argument after it in the ``def``, with its leading space.
        wrong: every other argument name of both prompts, each with its leading space.
    """

    prompt: str
    corrupted: str
    answer: str
    contrast: str
    wrong: tuple[str, ...]


def render(method: str, def_args: list[str], doc_args: list[str], method_words: list[str],
           arg_words: list[list[str]]) -> str:
    """A ``def`` line, a reST docstring documenting ``doc_args`` and an open ``:param``."""
    lines = [
        "",
        f"def {method}(self, {', '.join(def_args)}):",
        f'    """{" ".join(method_words)}',
        "",
        *(f"    :param {arg}: {' '.join(words)}" for arg, words in zip(doc_args, arg_words)),
        "    :param",
    ]
    return "\n".join(lines)


def docstring_item(rng: random.Random) -> DocstringItem:
    """One item, all names different from one another."""
    n_doc = N_MATCHING - 1
    method, *names = distinct(rng, NAMES, 1 + N_PREFIX + N_MATCHING + N_SUFFIX + N_MATCHING + n_doc)
    prefix, names = names[:N_PREFIX], names[N_PREFIX:]
    matching, names = names[:N_MATCHING], names[N_MATCHING:]
    suffix, names = names[:N_SUFFIX], names[N_SUFFIX:]
    other_def, other_doc = names[:N_MATCHING], names[N_MATCHING:]
    method_words = distinct(rng, WORDS, METHOD_WORDS)
    arg_words = [distinct(rng, WORDS, ARG_WORDS) for _ in range(n_doc)]
    clean = render(method, prefix + matching + suffix, matching[:n_doc], method_words, arg_words)
    corrupted = render(method, prefix + other_def + suffix, other_doc, method_words, arg_words)
    wrong = prefix + matching[:-1] + suffix + other_def + other_doc
    return DocstringItem(
        prompt=clean,
        corrupted=corrupted,
        answer=" " + matching[-1],
        contrast=" " + suffix[0],
        wrong=tuple(" " + name for name in wrong),
    )


def docstring_items(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[DocstringItem]:
    """``count`` items drawn with ``seed``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = random.Random(seed)
    return [docstring_item(rng) for _ in range(count)]


def write_file(items: list[DocstringItem], path: Path) -> Path:
    """Write ``items`` to ``path`` as JSON lines, atomically."""
    return write_text_atomic(path, "".join(json.dumps(asdict(item)) + "\n" for item in items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "docstring.jsonl")
    args = parser.parse_args(argv)
    print(f"wrote {write_file(docstring_items(args.count, args.seed), args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
