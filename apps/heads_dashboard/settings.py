"""Frozen settings: how the app runs, and the edits a user asked for in the UI."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from probe.capture.inputs import InputError
from probe.edits import ScaleHeads, act_calibration
from probe.edits.spec import MAX_HEAD_FACTOR, Edit
from probe.models import DEFAULT_MODEL

EXAMPLE_PROMPTS = (
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is Paris. The capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
)


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard runs.

    Attributes:
        model: model name for :func:`probe.load_model` (registered name, folder or hub id).
        host, port: where the server listens; localhost by default because the app runs
            arbitrary prompts through a model and has no authentication.
        record: a saved :class:`~probe.AttentionRecord` (either file or the stem) to show
            besides live prompts.
        long_input_tokens: prompts longer than this are captured in statistics mode and shown
            as summaries (attention received per key, entropy per query): full patterns grow as
            ``layers x heads x tokens^2`` and a 512x512 heatmap is unreadable anyway.
        cache_entries: captures kept in the LRU cache (a 256-token pattern capture of
            SmolLM2 holds about 70 MB of patterns).
        top_tokens: next-token candidates shown in the edits panel.
        vision_model: the vision panel's own vision-language model (loaded on its first run, not
            at start-up; the main ``model`` stays a text LM).
        max_prompt_tokens: longest prompt the dashboard captures (the model's context window may
            be smaller; both are checked before any work is queued).
        job_poll_ms: how often the page asks a background job for progress and its result.
        abandon_after_s: a background job that no page has asked about for this long ends
            itself (the page was closed or reloaded; Dash cancels on a new run and on Cancel,
            not on unload). Chrome slows timers of hidden tabs to about once a second (once a
            minute after five hidden minutes), so keep this well above that.
        job_threads: torch threads of each background job. 1 by default: jobs of several
            sessions then share the CPU without OpenMP oversubscription (SmolLM2, 2 cores: a
            20-token job beside a 1,500-token one took 0.28 s with 1 thread each, 1.42 s with 2),
            and a job forked from a server that already ran a multi-threaded OpenMP region hangs
            unless it stays on one thread (:func:`.app.serve` keeps the server on one thread when
            this is above 1).
        stored_captures: captures kept on disk for the server to read jobs' results from.
        sync_tokens: prompts of at most this many tokens (and their edits) are captured in the
            server itself, under a lock that only such short requests and job forks take, instead
            of in a background job: no fork, record write or poll (about 0.3 to 0.4 s of a new
            64-token prompt's 1.4 s in Chromium). A short request then waits for at most one
            other short forward; 0 sends everything to jobs.
    """

    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 8050
    record: Path | None = None
    long_input_tokens: int = 256
    cache_entries: int = 8
    top_tokens: int = 10
    vision_model: str = "synth-llava"
    max_prompt_tokens: int = 4096
    job_poll_ms: int = 250
    abandon_after_s: float = 30.0
    job_threads: int = 1
    stored_captures: int = 64
    sync_tokens: int = 128

    def __post_init__(self) -> None:
        for name in ("long_input_tokens", "cache_entries", "max_prompt_tokens", "job_poll_ms", "job_threads",
                     "stored_captures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sync_tokens < 0:
            raise ValueError(f"sync_tokens must be 0 or more, got {self.sync_tokens}")
        if not self.abandon_after_s > 0:
            raise ValueError(f"abandon_after_s must be positive, got {self.abandon_after_s}")


ACT_FIRST_LAYER = 2
ACT_DEFAULT = "every head of layers 2 and up (ACT's default on Llama-2)"
MAX_FACTOR = MAX_HEAD_FACTOR
Heads = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class EditSettings:
    """The edits chosen in the edits panel; hashable, so it can key the capture cache.

    Attributes:
        act: apply ACT calibration (Yu et al. 2024) with its default tau and beta.
        act_heads: the ``(layer, head)`` pairs ACT calibrates (typed, or the heads an
            ``act search`` kept); empty: every head of layers ``ACT_FIRST_LAYER`` and up, as
            ACT's code does on Llama-2. That default moves a small model's prediction a lot (IOI
            on SmolLM2-135M: p(" Mary") 0.92 -> 5e-5); ACT itself calibrates searched heads.
        scaled_heads: ``(layer, head)`` pairs whose outputs are multiplied by ``factor``.
        factor: head-output multiplier (0 ablates the heads), finite, ``|factor| <= MAX_FACTOR``.
    """

    act: bool = False
    scaled_heads: Heads = ()
    factor: float = 0.0
    act_heads: Heads = ()

    def __post_init__(self) -> None:
        ScaleHeads(self.factor)  # the edit's own check: a finite factor of sensible size (InputError)

    @property
    def is_empty(self) -> bool:
        return not self.act and not self.scaled_heads

    def to_edits(self, n_layers: int) -> list[Edit]:
        """The :mod:`probe.edits` edits these settings stand for, on a model of ``n_layers``."""
        edits: list[Edit] = []
        if self.act and not self.act_heads:
            edits.append(act_calibration(layers=range(ACT_FIRST_LAYER, n_layers)))
        elif self.act:
            by_layer: dict[int, list[int]] = {}
            for layer, head in self.act_heads:
                by_layer.setdefault(layer, []).append(head)
            edits += [act_calibration(layers=[layer], heads=heads) for layer, heads in sorted(by_layer.items())]
        edits += [ScaleHeads(self.factor, layers=[layer], heads=[head]) for layer, head in self.scaled_heads]
        return edits

    def describe(self) -> str:
        parts = []
        if self.act:
            parts.append(f"ACT on {_head_list(self.act_heads)}" if self.act_heads else "ACT calibration")
        if self.scaled_heads:
            parts.append(f"heads {_head_list(self.scaled_heads)} x {self.factor:g}")
        return " + ".join(parts) or "no edit"

    def check(self, n_layers: int, n_heads: int) -> None:
        """Raise :class:`InputError` if a scaled or calibrated head does not exist in the model."""
        for layer, head in (*self.scaled_heads, *(self.act_heads if self.act else ())):
            if not 0 <= layer < n_layers:
                raise InputError(f"layer {layer} does not exist: the model has {n_layers} layers (0..{n_layers - 1})")
            if not 0 <= head < n_heads:
                raise InputError(f"head {head} does not exist: each layer has {n_heads} heads (0..{n_heads - 1})")

    def to_store(self) -> dict:
        return {"act": self.act, "scaled_heads": [list(h) for h in self.scaled_heads], "factor": self.factor,
                "act_heads": [list(h) for h in self.act_heads]}

    @classmethod
    def from_store(cls, data: dict) -> "EditSettings":
        return cls(act=bool(data["act"]), scaled_heads=tuple(tuple(h) for h in data["scaled_heads"]),
                   factor=float(data["factor"]), act_heads=tuple(tuple(h) for h in data["act_heads"]))

    @classmethod
    def from_ui(cls, act: list[str] | None, heads_text: str | None, factor: str | float | None,
                act_heads_text: str | None = None) -> "EditSettings":
        """Parse the panel's widgets; a malformed head list or factor raises :class:`InputError`.

        An empty factor box means 0 (ablate) only when no head is scaled; with heads it is an error."""
        scaled = parse_heads(heads_text or "")
        return cls(
            act=bool(act),
            scaled_heads=scaled,
            factor=parse_factor(factor, required=bool(scaled)),
            act_heads=parse_heads(act_heads_text or ""),
        )


def _head_list(heads: Heads) -> str:
    return ", ".join(f"L{layer}.H{head}" for layer, head in heads)


def parse_factor(value: str | float | None, required: bool = True) -> float:
    """The head factor box: a finite number of magnitude at most ``MAX_FACTOR``.

    ``"nan"``, ``"inf"``, ``1e308`` and words all give one :class:`InputError` naming the range.
    An empty box is 0 when ``required`` is False (no head to scale)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InputError("type a factor for the scaled heads, e.g. 0 to ablate them or 2 to double them")
        return 0.0
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or abs(number) > MAX_FACTOR:
        raise InputError(f"the factor must be a finite number of magnitude at most {MAX_FACTOR:g} "
                         f"(0 ablates, 2 doubles), got {value!r}")
    return number


def act_search_heads(text: str, name: str = "the file") -> Heads:
    """The heads an ``headscope act search --out FILE`` result kept (its ``"selected"`` line).

    The file is JSON lines: a ``baseline`` record, one record per searched head and a
    ``{"kind": "selected", "heads": [[layer, head], ...]}`` record. Raises :class:`InputError`
    naming the problem when ``text`` is not such a file or it kept no head."""
    selected = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{name} line {number} is not JSON: load the JSON-lines file written by "
                             "`headscope act search --out FILE`") from None
        if isinstance(record, dict) and record.get("kind") == "selected":
            selected = record.get("heads")
    if selected is None:
        raise InputError(f"{name} has no 'selected' record: load the file written by `headscope act search --out FILE`")
    if not isinstance(selected, list) or not all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(v, int) and v >= 0 for v in h) for h in selected):
        raise InputError(f"{name}: 'heads' of the selected record must be [layer, head] pairs of whole numbers")
    if not selected:
        raise InputError(f"{name}: the search kept no head (none beat the baseline), so ACT would change nothing")
    return tuple(dict.fromkeys((int(l), int(h)) for l, h in selected))


_HEAD = re.compile(r"^\s*L?(\d+)\s*[.:]\s*H?(\d+)\s*$", re.IGNORECASE)


def parse_heads(text: str) -> Heads:
    """``"3.4, L5.H1"`` -> ``((3, 4), (5, 1))``; empty text -> no heads."""
    pairs = []
    for part in filter(str.strip, text.split(",")):
        match = _HEAD.match(part)
        if match is None:
            raise InputError(f"cannot read head {part.strip()!r}: write heads as LAYER.HEAD, e.g. 3.4, 5.1")
        pairs.append((int(match.group(1)), int(match.group(2))))
    return tuple(dict.fromkeys(pairs))
