"""The page's state in its URL query string, so a view can be shared and reloaded.

Context:
    :class:`PageState` is what a view depends on: the source (a typed prompt or a prompt of the
    saved record), the heatmap's metric, the selected head, the edits, the target/foil pair,
    the query/key tokens of token-conditioned views, the display options, the strip's shading, the
    long-input query window and the data set (a bundled example; uploads are not in links). :func:`encode`
    writes only the fields that differ from their defaults (short URLs; a default added later
    does not change old links), :func:`decode` reads them back with ``urllib.parse``.

    ``decode`` refuses, with one :class:`~probe.errors.InputError` line naming the parameter
    and what it takes: unknown parameters, repeated ones, numbers that do not parse, negative
    layers or heads, non-finite or oversized factors, malformed head lists, unknown views or
    scales. Ranges that depend on the model (layer 40 of a 30-layer model) are checked where
    the model is known (:func:`apps.heads_dashboard.workbench.check_head`).

Parameters (all optional):
    ``prompt``, ``record`` (index into the saved record), ``metric``, ``layer``, ``head``,
    ``act`` (``1``), ``act_heads`` (the heads ACT calibrates, ``2.1,3.0``), ``heads`` (``3.4,5.1``), ``factor``, ``target``, ``foil``, ``query``,
    ``key`` (token positions, negative from the end), ``view`` (``pattern``, ``layer``,
    ``diff``), ``scale`` (``linear``, ``log``), ``hide_first`` (``1``), ``shade`` (``received``,
    ``from``, ``to``), ``window`` (the query range, ``START:STOP``), ``dataset`` (``ioi``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from urllib.parse import parse_qs, urlencode

from apps.heads_dashboard.settings import EditSettings, parse_heads
from apps.heads_dashboard.views.dataset import EXAMPLES
from apps.heads_dashboard.views.tokens import SHADINGS
from apps.heads_dashboard.views.window import DEFAULT_RANGE, RANGE
from probe.edits.spec import MAX_HEAD_FACTOR
from probe.errors import InputError

VIEWS = ("pattern", "layer", "diff")
SCALES = ("linear", "log")
MAX_URL_PROMPT = 4000  # characters: longer prompts make URLs servers and browsers refuse


@dataclass(frozen=True)
class PageState:
    """Everything a shared link restores (see the module docstring for the URL names)."""

    prompt: str | None = None
    record: int | None = None
    metric: str = "first_token_share"
    layer: int | None = None
    head: int | None = None
    act: bool = False
    act_heads: tuple[tuple[int, int], ...] = ()
    heads: tuple[tuple[int, int], ...] = ()
    factor: float = 0.0
    target: str | None = None
    foil: str | None = None
    query: int | None = None
    key: int | None = None
    view: str = "pattern"
    scale: str = "linear"
    hide_first: bool = False
    shade: str = "received"
    window: str = DEFAULT_RANGE
    dataset: str | None = None

    def edit_settings(self) -> EditSettings:
        """The edits as the edits panel holds them (``act_heads`` passed only when set, so links
        without it work with settings that predate it)."""
        chosen = {"act_heads": self.act_heads} if self.act_heads else {}
        return EditSettings(act=self.act, scaled_heads=self.heads, factor=self.factor, **chosen)


DEFAULT = PageState()


def _text(name: str, value: str) -> str:
    if name == "prompt" and len(value) > MAX_URL_PROMPT:
        raise InputError(f"URL parameter 'prompt' is {len(value)} characters, over the {MAX_URL_PROMPT} a link "
                         "can carry; share a record file instead")
    return value


def _whole(name: str, value: str, signed: bool = False) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"URL parameter {name!r} must be a whole number, got {value!r}") from None
    if number < 0 and not signed:
        raise InputError(f"URL parameter {name!r} must be 0 or more, got {number}")
    return number


def _flag(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise InputError(f"URL parameter {name!r} must be 1 or 0, got {value!r}")
    return value == "1"


def _factor(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"URL parameter {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number) or abs(number) > MAX_HEAD_FACTOR:
        raise InputError(f"URL parameter {name!r} must be finite and at most {MAX_HEAD_FACTOR:g} in magnitude, "
                         f"got {value!r}")
    return number


def _heads(name: str, value: str) -> tuple[tuple[int, int], ...]:
    try:
        return parse_heads(value)
    except InputError as err:
        raise InputError(f"URL parameter {name!r}: {err}") from None


def _choice(choices: tuple[str, ...]):
    def read(name: str, value: str) -> str:
        if value not in choices:
            raise InputError(f"URL parameter {name!r} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return read


def _range(name: str, value: str) -> str:
    if not RANGE.match(value):
        raise InputError(f"URL parameter {name!r} must be a query range START:STOP (e.g. -32: or 100:140), "
                         f"got {value!r}")
    return value


READERS = {
    "prompt": _text, "record": _whole, "metric": _text, "layer": _whole, "head": _whole,
    "act": _flag, "act_heads": _heads, "heads": _heads, "factor": _factor, "target": _text, "foil": _text,
    "query": lambda n, v: _whole(n, v, signed=True), "key": lambda n, v: _whole(n, v, signed=True),
    "view": _choice(VIEWS), "scale": _choice(SCALES), "hide_first": _flag,
    "shade": _choice(tuple(SHADINGS)), "window": _range, "dataset": _choice(tuple(EXAMPLES)),
}
"""URL parameter -> ``reader(name, text)`` returning the field's value or raising InputError."""


def _written(name: str, value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if name in ("heads", "act_heads"):
        return ",".join(f"{layer}.{head}" for layer, head in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def encode(state: PageState) -> str:
    """The query string (with its leading ``?``; empty for the default state) of ``state``."""
    pairs = [(f.name, _written(f.name, getattr(state, f.name))) for f in fields(PageState)
             if getattr(state, f.name) != getattr(DEFAULT, f.name)]
    return "?" + urlencode(pairs) if pairs else ""


def decode(search: str | None) -> PageState:
    """The state a query string (``location.search``, with or without its ``?``) describes.

    Raises:
        InputError: one line naming the first bad parameter and what it takes.
    """
    text = (search or "").lstrip("?")
    if not text:
        return DEFAULT
    try:
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InputError(f"the URL's query string {text[:80]!r} is malformed; write name=value pairs joined "
                         "by &") from None
    changes = {}
    for name, values in parsed.items():
        if name not in READERS:
            raise InputError(f"unknown URL parameter {name!r}; known: {', '.join(READERS)}")
        if len(values) > 1:
            raise InputError(f"URL parameter {name!r} is given {len(values)} times; give it once")
        changes[name] = READERS[name](name, values[0])
    if changes.get("prompt") is not None and changes.get("record") is not None:
        raise InputError("a URL names a typed prompt or a record prompt, not both: drop 'prompt' or 'record'")
    return replace(DEFAULT, **changes)
