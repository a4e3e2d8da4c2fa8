"""Metrics over a data set of prompts: averages over prompts, positions aligned by named roles.

Context:
    A single prompt shows what one input does; a claim about a head needs many. A data set here
    is a file of prompts (:func:`read_prompt_set`):

    - ``.txt``: one prompt per line (``data/prompts/*.txt``), no roles;
    - ``.jsonl``: one JSON object per line with a ``prompt``; items with IOI's ``answer`` and
      ``subject`` fields (``data/ioi.jsonl``) get IOI's roles IO, S1, S2 and END
      (:mod:`circuits.heads.roles`).

    Its prompts are captured as one record (left-padded; :func:`probe.capture`), in prompt
    order. :func:`averaged_attention` then reads, per prompt, the attention from a query to a
    key given either as **role names** (``"END"`` to ``"IO"``; the data set must name them) or as
    **positions from the end** (``-1`` the last token, ``-3`` the third from last), and averages
    over prompts for every head: a layers x heads matrix, as the heatmap shows. Prompts where a
    position does not exist (too short) or a key comes after the query are left out and counted.
    :func:`averaged_metric` averages any registered per-head metric over the prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from apps.heads_dashboard.metrics import metric_grid
from circuits.heads.roles import RoleSpec, find_roles, ioi_role_spec
from probe.capture.record import AttentionRecord
from probe.errors import InputError

Position = str | int
"""A role name, or a negative position counted from each prompt's end."""


@dataclass(frozen=True)
class PromptSet:
    """Prompts read from one file, with their roles when the file names them.

    Attributes:
        name: the file's stem.
        prompts: the prompts, in file order.
        roles: per prompt, role name -> where (:mod:`circuits.heads.roles`); None without roles.
    """

    name: str
    prompts: tuple[str, ...]
    roles: tuple[RoleSpec, ...] | None = None

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(self.roles[0]) if self.roles else ()


def read_prompt_set(path: str | Path) -> PromptSet:
    """A ``.txt`` (one prompt a line) or ``.jsonl`` (objects with ``prompt``) file of prompts.

    Raises:
        InputError: a missing or unreadable file, another suffix, a bad line, no prompts.
    """
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise InputError(f"{path}: a prompt set is a .txt file (one prompt a line) or a .jsonl file (one "
                         "{\"prompt\": ...} object a line); rename it or convert it")
    if not path.is_file():
        raise InputError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}; give a prompt-set file")
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path} ({err}); give a UTF-8 text file") from None
    if not lines:
        raise InputError(f"{path} holds no prompts")
    if path.suffix == ".txt":
        return PromptSet(path.stem, tuple(lines))
    items = [_json_item(path, number, line) for number, line in enumerate(lines, start=1)]
    prompts = tuple(item["prompt"] for item in items)
    has_roles = [isinstance(item.get("answer"), str) and isinstance(item.get("subject"), str) for item in items]
    roles = tuple(ioi_role_spec(item["answer"], item["subject"]) for item in items) if all(has_roles) else None
    return PromptSet(path.stem, prompts, roles)


def _json_item(path: Path, number: int, line: str) -> dict:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} line {number} is not JSON ({err.msg}); write one object a line") from None
    if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
        raise InputError(f"{path} line {number}: each line needs a non-empty text field \"prompt\"")
    return item


def role_positions(record: AttentionRecord, prompt_set: PromptSet) -> list[dict[str, int]]:
    """Each prompt's role positions in the record's tokens (the record holds the set's prompts in order).

    Raises:
        InputError: a set without roles, a record of another size, a prompt whose roles it lacks.
    """
    if prompt_set.roles is None:
        raise InputError(f"the prompt set {prompt_set.name!r} names no roles; align positions from the end "
                         "(e.g. query -1, key -3) instead")
    if record.batch_size != len(prompt_set.prompts):
        raise InputError(f"the record holds {record.batch_size} prompts and the set {prompt_set.name!r} "
                         f"{len(prompt_set.prompts)}; capture the set's prompts in order")
    return [find_roles(record.tokens[p], spec) for p, spec in enumerate(prompt_set.roles)]


def aligned_position(position: Position, n_tokens: int, roles: dict[str, int] | None) -> int | None:
    """A role's position, or a from-the-end position as an index; None when the prompt is too short."""
    if isinstance(position, str):
        if roles is None or position not in roles:
            known = ", ".join(roles) if roles else "none"
            raise InputError(f"unknown role {position!r}; this data set's roles: {known}")
        return roles[position]
    if isinstance(position, bool) or not isinstance(position, int) or position >= 0:
        raise InputError(f"across prompts of different lengths a position counts from the end: give a negative "
                         f"integer (-1 is the last token) or a role name, got {position!r}")
    return n_tokens + position if -position <= n_tokens else None


@dataclass(frozen=True)
class AveragedAttention:
    """Mean attention from one aligned query to one aligned key, per head.

    Attributes:
        values: ``[layer, head]`` mean over the prompts used (rows follow ``record.layers``).
        used: prompts averaged.
        skipped: prompts left out (a position missing, or the key after the query).
        label: what the heatmap's colour bar says.
    """

    values: Float[Tensor, "layer head"]
    used: int
    skipped: int
    label: str


def averaged_attention(record: AttentionRecord, query: Position, key: Position,
                       roles: list[dict[str, int]] | None = None) -> AveragedAttention:
    """Mean over prompts of the attention from ``query`` to ``key`` (module docstring).

    Raises:
        InputError: a statistics-only record, an unknown role, a non-negative position, no
            prompt where both positions exist.
    """
    if not record.patterns:
        raise InputError("averaged attention needs full patterns; capture the data set in pattern mode")
    total = torch.zeros(len(record.layers), record.n_heads, dtype=torch.float64)
    used = 0
    for prompt in range(record.batch_size):
        n = len(record.tokens[prompt])
        mine = roles[prompt] if roles is not None else None
        q, k = aligned_position(query, n, mine), aligned_position(key, n, mine)
        if q is None or k is None or k > q:
            continue
        total += torch.stack([record.pattern(layer, prompt)[:, q, k].double() for layer in record.layers])
        used += 1
    if used == 0:
        raise InputError(f"no prompt has both the query {query!r} and the key {key!r} with the key at or before "
                         "the query; choose other positions")
    label = f"mean attention {query} → {key} over {used} prompts"
    return AveragedAttention((total / used).float(), used, record.batch_size - used, label)


def averaged_metric(record: AttentionRecord, name: str) -> Float[Tensor, "layer head"]:
    """A registered per-head metric averaged over the record's prompts (NaNs of a prompt left out)."""
    grids = torch.stack([metric_grid(record, name, prompt) for prompt in range(record.batch_size)])
    return grids.nanmean(0)
