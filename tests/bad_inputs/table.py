"""Rows of the bad-input table and the environment they run in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Env:
    """What a row may use: a scratch folder, a tiny HF model folder, and the tiny model loaded.

    Attributes:
        tmp: an empty folder for this row's files.
        tiny_folder: a tiny random Llama saved as an HF folder (``--model`` of CLI rows).
        tiny: the same model loaded (:class:`probe.models.LoadedModel`), for API rows.
        record: a small saved attention record of the tiny model (its ``.safetensors`` path).
    """

    tmp: Path
    tiny_folder: Path
    tiny: object
    record: Path
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        name: the row's id in the test report.
        run: ``cli``: a function of :class:`Env` returning the argument list of ``headscope``;
            ``api``: a function of :class:`Env` that makes the bad call.
        kind: ``"cli"`` or ``"api"``.
        code: the exit status expected (2 for every error a user can fix).
        word: a word the one-line message must contain (case-insensitive).
    """

    name: str
    run: Callable[[Env], object]
    kind: str
    code: int
    word: str


def cli(name: str, argv: Callable[[Env], list[str]], word: str, code: int = 2) -> Case:
    return Case(name, argv, "cli", code, word)


def api(name: str, call: Callable[[Env], object], word: str, code: int = 2) -> Case:
    return Case(name, call, "api", code, word)
