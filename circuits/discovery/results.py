"""The result file of ``headscope circuits discover``, as ``discover`` writes it and ``score``
and ``compare`` read it.

Format:
    One JSON object (indented, no NaN: a non-finite number is written as null):

    - ``kind``: ``"circuit-discovery"`` (:data:`RESULT_KIND`); a file without it is refused.
    - ``task``: the task's name (``ioi``, ``greater_than``, ...).
    - ``task_file``: the ``--task-file`` the items came from, or null for the shipped file.
    - ``model``: the model's name as loaded.
    - ``geometry``: ``{"n_layers": L, "n_heads": H}``.
    - ``method``: the discovery method's name (:mod:`circuits.discovery.methods`).
    - ``options``: every option of the run: the registry's
      (:class:`~circuits.discovery.methods.DiscoveryOptions`, the SAE's seed and training
      included), ``limit``, ``only_correct``, ``device``, ``load_sae`` and ``save_sae``.
    - ``behaviour``: the model's behaviour on the measured items
      (:meth:`~circuits.discovery.behaviour.TaskBehaviour.to_dict`: accuracies, mean and
      per-item logit differences, the items it gets wrong).
    - ``items``: ``in_file`` (how many items the task file holds), ``measured`` and ``used`` (the
      task file's indices, from 0, of the items whose behaviour was measured and of those the
      method ran on; fewer with ``--only-correct``).
    - ``scores``: ``[layer][head]`` scores (higher = more in the circuit).
    - ``top``: the :data:`TOP_SHOWN` heads of largest ``|score|`` as ``[layer, head, score]``,
      largest first (ties in (layer, head) order).
    - ``seconds``, ``forwards``: the method's wall-clock time and model forwards.
    - ``clean_logit_diff``, ``corrupted_logit_diff``: the method's mean logit differences.
    - ``sae``: the metadata of the SAE an SAE method trained or reused, or null.

    ``score`` and ``compare`` read only ``kind``, ``task``, ``model``, ``method``, ``scores`` and
    ``seconds`` (:func:`read_result`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.discovery.behaviour import TaskBehaviour
from circuits.discovery.circuit_run import top_heads
from circuits.discovery.patching import HeadScores
from probe.errors import InputError

RESULT_KIND = "circuit-discovery"
TOP_SHOWN = 10


@dataclass(frozen=True)
class ResultFile:
    """A ``circuits discover`` result as ``score`` and ``compare`` read it.

    Attributes:
        path: the file.
        task: the task it was run on.
        model: the model's name as loaded.
        method: the method's name.
        scores: ``[layer, head]`` scores (float64, finite).
        seconds: the method's wall-clock time.
    """

    path: Path
    task: str
    model: str
    method: str
    scores: Float[Tensor, "layer head"]
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.method} ({self.path.name})"


def read_result(path: Path) -> ResultFile:
    """Read a result file of ``circuits discover``; anything else is refused with the reason."""
    fix = "pass a file written by `headscope circuits discover --out FILE`"
    if not path.is_file():
        raise InputError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}; {fix}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not a JSON file ({err}); {fix}") from None
    if not isinstance(raw, dict) or raw.get("kind") != RESULT_KIND:
        raise InputError(f"{path} is not a circuit-discovery result (no \"kind\": \"{RESULT_KIND}\"); {fix}")
    texts = {key: raw.get(key) for key in ("task", "model", "method")}
    if not all(isinstance(value, str) for value in texts.values()):
        raise InputError(f"{path}: task, model and method must be strings; {fix}")
    seconds = raw.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise InputError(f"{path}: seconds must be a finite number >= 0, got {seconds!r}; {fix}")
    return ResultFile(path=path, scores=score_matrix(raw.get("scores"), path), seconds=float(seconds), **texts)


def score_matrix(rows: object, path: Path) -> Tensor:
    """``[layer][head]`` numbers as a float64 tensor; ragged, empty or non-finite scores are refused."""
    numeric = (isinstance(rows, list) and rows and all(isinstance(row, list) and row for row in rows)
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for row in rows for v in row))
    if not numeric or len({len(row) for row in rows}) != 1:
        raise InputError(f"{path}: scores must be a [layer][head] list of numbers, every layer as long")
    scores = torch.tensor(rows, dtype=torch.float64)
    if not torch.isfinite(scores).all():
        raise InputError(f"{path}: scores hold NaN or infinite values; rerun the method")
    return scores


def shape_text(scores: Tensor) -> str:
    return f"{scores.shape[0]} layers x {scores.shape[1]} heads"


def ranked(scores: Tensor, signed: bool) -> Tensor:
    """What heads are ranked by: ``|score|`` by default, since a head that works against the
    answer (IOI's negative name movers) is part of the circuit, as reference circuits are cut
    and as Syed et al. rank attribution patching; the signed score with ``--signed``."""
    return scores if signed else scores.abs()


def top_scored(scores: Float[Tensor, "layer head"], k: int = TOP_SHOWN) -> list[tuple[int, int, float]]:
    """The ``k`` heads of largest ``|score|`` (:func:`~circuits.discovery.circuit_run.top_heads`)
    as ``(layer, head, score)``, largest first: a head that works against the answer (a negative
    score) matters as much as one that helps."""
    return [(layer, head, float(scores[layer, head])) for layer, head in top_heads(scores, k)]


def finite(value: float) -> float | None:
    """A JSON-ready float: NaN and infinities as null."""
    return float(value) if math.isfinite(value) else None


def discovery_record(*, task: str, task_file: Path | None, model: str, method: str, options: dict,
                     behaviour: TaskBehaviour, items: dict, scores: HeadScores, sae: dict | None) -> dict:
    """The result file's one JSON object (module docstring): ``options`` every option of the run,
    ``items`` the task file's items counted, measured and used, ``sae`` the SAE's metadata."""
    geometry = {"n_layers": int(scores.scores.shape[0]), "n_heads": int(scores.scores.shape[1])}
    return {
        "kind": RESULT_KIND, "task": task, "task_file": str(task_file) if task_file else None,
        "model": model, "geometry": geometry, "method": method, "options": options,
        "behaviour": behaviour.to_dict(), "items": items,
        "scores": [[finite(v) for v in row] for row in scores.scores.double().tolist()],
        "top": [[layer, head, finite(value)] for layer, head, value in top_scored(scores.scores)],
        "seconds": scores.seconds, "forwards": scores.forwards,
        "clean_logit_diff": finite(scores.clean_logit_diff),
        "corrupted_logit_diff": finite(scores.corrupted_logit_diff),
        "sae": sae,
    }
