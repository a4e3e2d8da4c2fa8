"""The literature's circuits as head sets, and reference circuits made from patching scores.

Context:
    A circuit-discovery method is judged by how well its per-head scores separate the heads of a
    circuit someone found by hand from the rest (methods dossier section i). Three hand-found
    circuits are stored under ``data/circuits/`` as JSON, with their citations:

    - ``ioi``: indirect object identification in GPT-2 small (Wang et al. 2022), the 26 heads of
      ACDC's ``IOI_CIRCUIT`` in seven classes;
    - ``greater_than``: GPT-2 small (Hanna et al. 2023), the 9 heads of ACDC's canonical graph;
    - ``docstring``: TransformerLens's ``attn-only-4l`` (4 layers x 8 heads, attention only; not
      GPT-2), Heimersheim & Janiak's 6 heads as ACDC's manual graph holds them.

    Sources disagree at the edges. Each file keeps that disagreement as data:

    - ``ambiguous``: heads outside the canonical list that a source includes or that the canonical
      source names as a candidate (IOI's commented-out previous-token heads, the SAE repo's
      ``(11, 3)``, ...), each with its reason. They are never in ``heads``, so scoring with
      ambiguous heads as negatives reproduces the canonical list exactly.
    - ``variants``: another source's whole list as an edit of the canonical one (``remove`` and
      ``add``), e.g. O'Neill & Bui's IOI list with ``(11, 3)`` in place of ``(9, 0)``. A variant's
      removed heads become ambiguous in turn. Score against one list or the other, never a mix.

    Models the literature has not studied (SmolLM2, Gemma-3) get a *reference* circuit from
    activation-patching scores with :func:`circuit_from_scores` and its stated threshold rule.

Example:
    >>> truth = load_ground_truth("ioi")
    >>> len(truth.heads), truth.model
    (26, 'gpt2-small')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

import torch
from jaxtyping import Float
from torch import Tensor

Head = tuple[int, int]
"""A head as ``(layer, head)``, both 0-indexed (TransformerLens numbering)."""

DATA_FOLDER = Path(__file__).resolve().parents[2] / "data" / "circuits"

TASK_FILES: Mapping[str, str] = MappingProxyType({
    "ioi": "gpt2_small_ioi.json",
    "greater_than": "gpt2_small_greater_than.json",
    "docstring": "attn_only_4l_docstring.json",
})
"""The stored circuits: task name -> file in :data:`DATA_FOLDER`."""


@dataclass(frozen=True)
class GroundTruth:
    """A circuit as a set of heads of one model, with what its sources disagree on.

    Attributes:
        task: the task's name (``ioi``, ``greater_than``, ``docstring``, or a caller's own).
        model: the model the circuit belongs to (``gpt2-small``, ``attn-only-4l``, ...).
        n_layers: the model's number of layers; score tensors must be ``[n_layers, n_heads]``.
        n_heads: the model's number of heads per layer.
        heads: the circuit's heads (the positives).
        classes: class name -> its heads, in the source's order (empty when the source has no
            classes); when given, their union is ``heads``.
        ambiguous: head -> why some source counts it and the list does not. Disjoint from
            ``heads``; scoring leaves these out of both classes by default.
        variant: ``"canonical"``, or the name of the other source's list this is.
        source: where the list comes from.
        citations: the papers and code behind it.
        notes: anything a user should know before comparing numbers.
    """

    task: str
    model: str
    n_layers: int
    n_heads: int
    heads: frozenset[Head]
    classes: Mapping[str, tuple[Head, ...]] = field(default_factory=dict)
    ambiguous: Mapping[Head, str] = field(default_factory=dict)
    variant: str = "canonical"
    source: str = ""
    citations: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        heads = frozenset(self._checked(head, "heads") for head in self.heads)
        if not heads:
            raise ValueError(f"the ground truth for {self.task!r} has no heads: a circuit needs at least one")
        classes = {name: tuple(self._checked(h, f"class {name!r}") for h in members)
                   for name, members in self.classes.items()}
        if classes and frozenset(h for members in classes.values() for h in members) != heads:
            raise ValueError("the classes' heads must together be exactly the circuit's heads")
        ambiguous = {self._checked(h, "ambiguous"): str(why) for h, why in self.ambiguous.items()}
        if both := sorted(heads & ambiguous.keys()):
            raise ValueError(f"heads {both} are both in the circuit and ambiguous")
        object.__setattr__(self, "heads", heads)
        object.__setattr__(self, "classes", MappingProxyType(classes))
        object.__setattr__(self, "ambiguous", MappingProxyType(ambiguous))

    def _checked(self, head: object, where: str) -> Head:
        ok = (isinstance(head, (tuple, list)) and len(head) == 2
              and all(isinstance(i, int) and not isinstance(i, bool) for i in head))
        if not ok:
            raise ValueError(f"{where}: a head is a pair of integers (layer, head), got {head!r}")
        layer, index = head
        if not (0 <= layer < self.n_layers and 0 <= index < self.n_heads):
            raise ValueError(f"{where}: head {tuple(head)} is outside {self.model}'s "
                             f"{self.n_layers} layers x {self.n_heads} heads")
        return (layer, index)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_layers, n_heads)``: the shape a score tensor for this model must have."""
        return (self.n_layers, self.n_heads)

    def class_of(self, head: Head) -> str | None:
        """The class a head of the circuit belongs to (``None`` outside the circuit or unclassed)."""
        return next((name for name, members in self.classes.items() if tuple(head) in members), None)


def load_ground_truth(task: str, variant: str | None = None, *, folder: Path = DATA_FOLDER) -> GroundTruth:
    """Load a stored circuit.

    Args:
        task: one of :data:`TASK_FILES` (``ioi``, ``greater_than``, ``docstring``).
        variant: ``None`` for the canonical (ACDC) list, or a variant the file names
            (``sae_circuits`` for IOI and docstring, ``hanna_et_al`` for greater-than).
        folder: where the JSON files are.

    Returns:
        The circuit as a frozen :class:`GroundTruth`.
    """
    if task not in TASK_FILES:
        raise ValueError(f"unknown ground-truth task {task!r}; known: {', '.join(TASK_FILES)}")
    return read_ground_truth(Path(folder) / TASK_FILES[task], variant)


def read_ground_truth(path: Path, variant: str | None = None) -> GroundTruth:
    """Read a ground-truth JSON file (the format of ``data/circuits/*.json``, see its README)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    classes = {name: [tuple(h) for h in members] for name, members in raw["classes"].items()}
    ambiguous = {tuple(entry["head"]): entry["reason"] for entry in raw.get("ambiguous", [])}
    source = raw["source"]
    if variant is not None:
        variants = raw.get("variants", {})
        if variant not in variants:
            raise ValueError(f"{raw['task']} has no variant {variant!r}; known: {', '.join(variants) or 'none'}")
        classes, ambiguous = _apply_variant(classes, ambiguous, variants[variant], variant)
        source = variants[variant]["source"]
    heads = frozenset(h for members in classes.values() for h in members)
    return GroundTruth(task=raw["task"], model=raw["model"], n_layers=raw["n_layers"], n_heads=raw["n_heads"],
                       heads=heads, classes=classes, ambiguous=ambiguous, variant=variant or "canonical",
                       source=source, citations=tuple(raw.get("citations", ())), notes=tuple(raw.get("notes", ())))


def _apply_variant(classes: dict[str, list[Head]], ambiguous: dict[Head, str], edit: dict,
                   variant: str) -> tuple[dict[str, list[Head]], dict[Head, str]]:
    """Edit the canonical list into a variant: removed heads become ambiguous, added ones stop being."""
    removed = {tuple(h) for h in edit.get("remove", [])}
    classes = {name: [h for h in members if h not in removed] for name, members in classes.items()}
    for name, members in edit.get("add", {}).items():
        classes.setdefault(name, []).extend(tuple(h) for h in members)
    added = {h for members in edit.get("add", {}).values() for h in map(tuple, members)}
    ambiguous = {h: why for h, why in ambiguous.items() if h not in added}
    ambiguous.update({h: f"in the canonical list, not in the {variant!r} list" for h in removed})
    return {name: members for name, members in classes.items() if members}, ambiguous


def circuit_from_scores(
    scores: Float[Tensor, "layer head"],
    *,
    task: str,
    model: str,
    threshold: float | None = None,
    top_k: int | None = None,
    absolute: bool = True,
    margin: float = 0.0,
) -> GroundTruth:
    """A reference circuit from per-head patching scores, by a stated rule.

    The rule, on each head's magnitude ``m = |score|`` (``score`` itself with ``absolute=False``):

    - ``threshold=t`` (``0 < t <= 1``): the heads with ``m >= t * max(m)``, i.e. carrying at least a
      fraction ``t`` of the largest head's effect. Relative, so it does not depend on the metric's
      scale (logit difference, normalised recovery, KL).
    - ``top_k=k``: the ``k`` heads of largest ``m``; heads tied with the ``k``-th all enter, so the
      circuit may hold more than ``k``. (Merullo et al. keep the top 2% of heads of each
      path-patching stage, ``top_k=ceil(0.02 * n_heads_total)`` per stage, and take the union.)
    - ``margin=r`` (``0 <= r < 1``): heads just below the cut, ``(1 - r) * cut <= m < cut``, are
      recorded as ambiguous (left out of scoring by default) instead of as negatives.
    - A head with ``m <= 0`` is never in the circuit (``top_k`` may then return fewer than ``k``).

    Magnitudes are the default because a head that works against the task is part of the circuit
    (IOI's negative name movers have negative patching effects and are among its 26 heads).

    Args:
        scores: ``[layer, head]`` patching effects (any sign), all finite.
        task: the task's name, recorded in the result.
        model: the model's name, recorded in the result.
        threshold: the relative cut; give exactly one of ``threshold`` and ``top_k``.
        top_k: the number of heads to keep.
        absolute: rank heads by ``|score|`` (default) or by ``score``.
        margin: the relative width of the ambiguous band below the cut.

    Returns:
        A :class:`GroundTruth` with the class ``"patching"``, ``variant="canonical"`` and the
        rule in ``source``.
    """
    scores = _as_scores(scores)
    if (threshold is None) == (top_k is None):
        raise ValueError("give exactly one of threshold and top_k")
    if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
        raise ValueError(f"margin must lie in [0, 1), got {margin!r}")
    magnitude = scores.abs() if absolute else scores
    cut, rule = _cut(magnitude, threshold, top_k)
    inside = (magnitude >= cut) & (magnitude > 0)
    near = (magnitude >= (1 - margin) * cut) & (magnitude > 0) & ~inside
    heads = [tuple(int(i) for i in h) for h in inside.nonzero().tolist()]
    ambiguous = {tuple(int(i) for i in h): f"within {margin:g} (relative) below the cut"
                 for h in near.nonzero().tolist()}
    n_layers, n_heads = scores.shape
    return GroundTruth(task=task, model=model, n_layers=n_layers, n_heads=n_heads, heads=frozenset(heads),
                       classes={"patching": tuple(sorted(heads))}, ambiguous=ambiguous,
                       source=f"activation patching, {rule}" + (f", margin {margin:g}" if margin else ""))


def _as_scores(scores: object) -> Tensor:
    scores = torch.as_tensor(scores).detach().to("cpu", torch.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [layer, head], got shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    return scores


def _cut(magnitude: Tensor, threshold: float | None, top_k: int | None) -> tuple[float, str]:
    """The value a head's magnitude must reach, and the rule in words."""
    if threshold is not None:
        if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
            raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}")
        top = float(magnitude.max())
        if top <= 0:
            raise ValueError("no head has a positive score: a relative threshold needs one")
        return threshold * top, f"heads with score >= {threshold:g} x the largest ({top:.6g})"
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= magnitude.numel():
        raise ValueError(f"top_k must be an integer in [1, {magnitude.numel()}], got {top_k!r}")
    if float(magnitude.max()) <= 0:
        raise ValueError("no head has a positive score: top_k would pick among zeros")
    cut = float(magnitude.flatten().topk(top_k).values[-1])
    return cut, f"the top {top_k} heads by score (ties with the {top_k}th included)"


def heads_of(circuit: GroundTruth | Iterable[Head]) -> frozenset[Head]:
    """The heads of a circuit given as a :class:`GroundTruth` or as ``(layer, head)`` pairs."""
    if isinstance(circuit, GroundTruth):
        return circuit.heads
    return frozenset((int(layer), int(head)) for layer, head in circuit)
