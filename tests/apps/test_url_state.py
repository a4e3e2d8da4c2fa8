"""The page state in the URL: round trips, short URLs, and bad parameters refused in one line."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from apps.heads_dashboard.settings import EditSettings
from apps.heads_dashboard.url_state import DEFAULT, MAX_URL_PROMPT, PageState, decode, encode
from probe.errors import InputError

STATES = [
    PageState(),
    PageState(prompt="When Mary and John went to the store, John gave a drink to", metric="mean_entropy",
              layer=3, head=4, target=" Mary", foil=" John"),
    PageState(prompt="def f(x):\n    return x  # ü & = ? + %20", act=True, heads=((3, 4), (5, 1)), factor=0.25,
              query=-1, key=2, view="diff", scale="log", hide_first=True),
    PageState(record=7, layer=0, head=0, view="layer", factor=-2.0, act=True, act_heads=((2, 1), (3, 0))),
    PageState(prompt="a", shade="to", window="100:140", dataset="ioi"),
]


@pytest.mark.parametrize("state", STATES)
def test_round_trip(state):
    assert decode(encode(state)) == state
    assert decode(encode(state).lstrip("?")) == state


def test_only_changed_fields_are_written():
    assert encode(DEFAULT) == "" and decode("") == DEFAULT and decode(None) == DEFAULT
    written = parse_qs(encode(PageState(layer=2, head=1, act=True)).lstrip("?"))
    assert written == {"layer": ["2"], "head": ["1"], "act": ["1"]}


def test_edits_become_the_panels_settings():
    state = decode("?act=1&heads=L3.H4,5.1&factor=0.5")
    assert state.heads == ((3, 4), (5, 1))
    assert state.edit_settings() == EditSettings(act=True, scaled_heads=((3, 4), (5, 1)), factor=0.5)


@pytest.mark.parametrize("search, message", [
    ("?layer=x", "URL parameter 'layer' must be a whole number, got 'x'"),
    ("?head=-1", "URL parameter 'head' must be 0 or more, got -1"),
    ("?factor=nan", "URL parameter 'factor' must be finite"),
    ("?factor=1e308", "URL parameter 'factor' must be finite and at most 1000"),
    ("?factor=big", "URL parameter 'factor' must be a number"),
    ("?act=yes", "URL parameter 'act' must be 1 or 0"),
    ("?heads=3-4", "URL parameter 'heads': cannot read head '3-4'"),
    ("?view=table", "URL parameter 'view' must be one of pattern, layer, diff"),
    ("?scale=sqrt", "URL parameter 'scale' must be one of linear, log"),
    ("?colour=red", "unknown URL parameter 'colour'; known: prompt, record"),
    ("?act_heads=2", "URL parameter 'act_heads': cannot read head '2'"),
    ("?layer=1&layer=2", "URL parameter 'layer' is given 2 times"),
    ("?layer", "the URL's query string 'layer' is malformed"),
    ("?prompt=a&record=1", "not both"),
    ("?shade=all", "URL parameter 'shade' must be one of received, from, to"),
    ("?window=5-9", "URL parameter 'window' must be a query range START:STOP"),
    ("?dataset=squad", "URL parameter 'dataset' must be one of ioi"),
    ("?prompt=" + "a" * (MAX_URL_PROMPT + 1), f"over the {MAX_URL_PROMPT} a link can carry"),
])
def test_bad_parameters(search, message):
    with pytest.raises(InputError, match=message.replace("?", r"\?").replace("(", r"\(")) as caught:
        decode(search)
    assert "\n" not in str(caught.value)
