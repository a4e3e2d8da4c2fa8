"""The circuit-discovery tasks: their data files, read and tokenized into a :class:`ContrastSet`.

Context:
    Each task is a JSON-lines file written by a generator in ``data/`` (a fixed seed, so the
    shipped files are reproducible), one item per line with at least ``prompt``, ``corrupted``,
    ``answer`` and a contrast field:

    - ``ioi``: ``data/ioi.jsonl``; answer the indirect object, contrast the subject; corrupted
      with a third name in place of the subject's second mention.
    - ``greater_than``: ``data/greater_than.jsonl``; answer YY + 1, contrast YY - 1; corrupted
      with the start year "01".
    - ``docstring``: ``data/docstring.jsonl``; answer the next argument, contrast the one after
      it; corrupted with other argument names.
    - ``colored_objects``: ``data/colored_objects.jsonl``; answer the asked object's colour,
      contrast another object's; corrupted by swapping the two colours.

    The text is the same for every model; whether an item can be used depends on the tokenizer.
    An item is kept when its answer and its contrast each continue the prompt (clean and
    corrupted) as exactly one token, so "the model's next token" is one logit, and when the
    corrupted prompt has as many tokens as the clean one, so positions line up. Items that fail
    are dropped and counted (:class:`TaskContrast`), never silently; when none is left the error
    names the task, the tokenizer and the fix.

Example:
    >>> from probe import load_model
    >>> model = load_model("smollm2-135m")
    >>> task = load_task("ioi", model.tokenizer)
    >>> task.summary()
    'ioi: 48 of 48 items kept'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from circuits.discovery.contrast import ContrastSet
from probe.errors import InputError

DATA = Path(__file__).resolve().parents[2] / "data"
FIELDS = ("prompt", "corrupted", "answer")


@dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
        name: the task's name (``load_task(name, ...)``).
        file: its shipped file, relative to ``data/``.
        generator: the command that writes the file.
        contrast_field: the item field holding the contrast token's text.
        hint: what to try when no item fits a tokenizer (added to the error).
    """

    name: str
    file: str
    generator: str
    contrast_field: str = "contrast"
    hint: str = ""


@dataclass(frozen=True)
class TaskItem:
    """One item as text: the prompts end where the answer comes."""

    prompt: str
    corrupted: str
    answer: str
    contrast: str


@dataclass(frozen=True)
class TaskContrast:
    """A task tokenized for one tokenizer, with the items it had to leave out.

    Attributes:
        contrast: the kept items.
        total: items in the file.
        kept: each row's index among the file's items.
        not_one_token: items whose answer or contrast is not one token after the prompt.
        length_mismatch: items whose clean and corrupted prompts differ in token count.
        same_token: items whose answer and contrast are the same token.
    """

    contrast: ContrastSet
    total: int
    kept: tuple[int, ...]
    not_one_token: tuple[int, ...] = ()
    length_mismatch: tuple[int, ...] = ()
    same_token: tuple[int, ...] = ()

    @property
    def dropped(self) -> int:
        return self.total - len(self.kept)

    def summary(self) -> str:
        """``"greater_than: 190 of 194 items kept (4 dropped: ...)"``."""
        counts = _counts(self.total, len(self.kept), self.not_one_token, self.length_mismatch, self.same_token)
        return f"{self.contrast.task}: {counts}"


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> None:
    """Add a task to the registry.

    Raises:
        ValueError: a task of that name is registered already.
    """
    if spec.name in _TASKS:
        raise ValueError(f"a task named {spec.name!r} is registered already")
    _TASKS[spec.name] = spec


def task_names() -> tuple[str, ...]:
    return tuple(sorted(_TASKS))


def task_spec(name: str) -> TaskSpec:
    """The registered task ``name``.

    Raises:
        InputError: no task of that name.
    """
    if name not in _TASKS:
        raise InputError(f"unknown task {name!r}; the tasks are {', '.join(task_names())}")
    return _TASKS[name]


def read_items(name: str, path: str | Path | None = None) -> list[TaskItem]:
    """The items of task ``name`` from ``path`` (default: its shipped file in ``data/``).

    Raises:
        InputError: an unknown task, a missing or unreadable file, a line that is not a JSON
            object with string ``prompt``, ``corrupted``, ``answer`` and contrast fields, or
            a file without items; each names the file (and line) and the fix.
    """
    spec = task_spec(name)
    path = Path(path) if path is not None else DATA / spec.file
    fields = (*FIELDS, spec.contrast_field)
    fix = f"write it with {spec.generator}"
    if not path.is_file():
        raise InputError(f"task {name!r}: {path} {'is a folder' if path.is_dir() else 'does not exist'}; {fix}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"task {name!r}: cannot read {path} ({err}); {fix}") from err
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path} line {number} is not JSON ({err.msg}); {fix}") from err
        if not isinstance(record, dict) or not all(isinstance(record.get(f), str) for f in fields):
            raise InputError(f"{path} line {number}: a {name} item is a JSON object with the text fields "
                             f"{', '.join(fields)}; {fix}")
        items.append(TaskItem(record["prompt"], record["corrupted"], record["answer"], record[spec.contrast_field]))
    if not items:
        raise InputError(f"task {name!r}: {path} holds no items; {fix}")
    return items


def load_task(name: str, tokenizer, path: str | Path | None = None) -> TaskContrast:
    """Task ``name`` (its shipped file, or ``path``) tokenized for ``tokenizer``.

    Raises:
        InputError: as :func:`read_items`, or no item fits the tokenizer.
    """
    return tokenize_items(name, read_items(name, path), tokenizer)


def tokenize_items(name: str, items: list[TaskItem], tokenizer) -> TaskContrast:
    """``items`` as a left-padded :class:`ContrastSet`, leaving out (and counting) those that do
    not fit ``tokenizer``.

    Raises:
        InputError: no item fits, or the tokenizer has neither a pad nor an end-of-text token.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise InputError(f"the tokenizer {_tokenizer_name(tokenizer)!r} has no pad or end-of-text token; "
                         "load it with probe.load_model, or set tokenizer.pad_token")
    rows, reasons = [], {"not_one_token": [], "length_mismatch": [], "same_token": []}
    for index, item in enumerate(items):
        row, reason = _tokenize(tokenizer, item)
        if reason:
            reasons[reason].append(index)
        else:
            rows.append((index, *row, item.prompt))
    dropped = {key: tuple(value) for key, value in reasons.items()}
    if not rows:
        counts = _counts(len(items), 0, *dropped.values())
        hint = task_spec(name).hint if name in _TASKS else ""
        raise InputError(
            f"task {name!r}: no item fits the tokenizer {_tokenizer_name(tokenizer)!r} ({counts}); an item needs "
            "its answer and contrast to be one token each after the prompt, and its corrupted prompt as many tokens "
            f"as the clean one. {hint + ' ' if hint else ''}Fix: give items written for this tokenizer "
            "(--task-file FILE on the command line, path= in Python; each generator in data/ takes --help)")
    kept, clean, corrupted, answer, contrast, texts = zip(*rows)
    contrast_set = ContrastSet.left_padded(name, clean, corrupted, answer, contrast, texts, pad_id)
    return TaskContrast(contrast_set, len(items), tuple(kept), **dropped)


def _tokenize(tokenizer, item: TaskItem) -> tuple[tuple, str]:
    """``((clean ids, corrupted ids, answer id, contrast id), "")``, or ``((), reason)``."""
    clean, corrupted = _ids(tokenizer, item.prompt), _ids(tokenizer, item.corrupted)
    if len(clean) != len(corrupted):
        return (), "length_mismatch"
    # The token each continuation adds, after the clean and after the corrupted prompt: one token, the same one.
    prompts = ((clean, item.prompt), (corrupted, item.corrupted))
    answer = {_next_token(tokenizer, ids, text + item.answer) for ids, text in prompts}
    contrast = {_next_token(tokenizer, ids, text + item.contrast) for ids, text in prompts}
    if len(answer) != 1 or len(contrast) != 1 or None in answer | contrast:
        return (), "not_one_token"
    if answer == contrast:
        return (), "same_token"
    return (clean, corrupted, answer.pop(), contrast.pop()), ""


def _next_token(tokenizer, prompt: list[int], text: str) -> int | None:
    """The one token that ``text`` (the prompt and a continuation) adds to the prompt's tokens
    ``prompt``; None if the continuation takes more than one token or changes the prompt's."""
    ids = _ids(tokenizer, text)
    return ids[-1] if len(ids) == len(prompt) + 1 and ids[:-1] == prompt else None


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def _tokenizer_name(tokenizer) -> str:
    """The tokenizer's name: a hub id as it is, a folder by its last part (the model's name in
    headscope's cache; a message should not carry a machine's paths)."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return Path(name).name if Path(name).is_absolute() else name


def _counts(total: int, kept: int, not_one_token, length_mismatch, same_token) -> str:
    text = f"{kept} of {total} items kept"
    parts = [f"{len(ids)} {why}" for ids, why in (
        (not_one_token, "with an answer or contrast of more than one token"),
        (length_mismatch, "whose clean and corrupted prompts differ in length"),
        (same_token, "whose answer and contrast are the same token"),
    ) if ids]
    return text + (f" ({total - kept} dropped: {'; '.join(parts)})" if parts else "")


register_task(TaskSpec("ioi", "ioi.jsonl", "python data/make_ioi.py", contrast_field="subject",
                       hint="Use names that are one token for this tokenizer (make_ioi.py's NAMES)."))
register_task(TaskSpec("greater_than", "greater_than.jsonl", "python data/make_greater_than.py",
                       hint="Greater-than needs two-digit year tokens (as GPT-2's); tokenizers that split numbers "
                            "into digits (SmolLM2's, Gemma's) cannot run it."))
register_task(TaskSpec("docstring", "docstring.jsonl", "python data/make_docstring.py",
                       hint="Use argument names that are one token for this tokenizer (make_docstring.py's NAMES)."))
register_task(TaskSpec("colored_objects", "colored_objects.jsonl", "python data/make_colored_objects.py",
                       hint="Use colours that are one token for this tokenizer (make_colored_objects.py's COLOURS)."))
