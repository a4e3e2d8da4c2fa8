"""The reasoning-rhythm panel without a browser: its callback function on the tiny random model.

Generation is capped at :data:`NEW_TOKENS` tokens and cached in one module-wide bench, so the
module runs in seconds on CPU.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from apps.heads_dashboard.app import create_app
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.panels import rhythm
from apps.heads_dashboard.panels.rhythm import RID, RhythmBench, rhythm_view
from apps.heads_dashboard.settings import DashboardSettings
from apps.heads_dashboard.state import ModelHolder
from apps.heads_dashboard.workbench import Workbench
from circuits.rhythm.traces import Trace

QUESTION = rhythm.EXAMPLE_QUESTION
NEW_TOKENS = 24
PASTED = "In April she sold 48 clips.\nIn May she sold 48 / 2 = 24 clips.\nSo 48 + 24 = 72 in all: \\boxed{72}"


def _bench(model) -> RhythmBench:
    holder = ModelHolder(model.name, lambda _: model).start()
    assert holder.wait(30).state == "ready"
    return RhythmBench(Workbench(DashboardSettings(), holder))


@pytest.fixture(scope="module")
def bench(tiny) -> RhythmBench:
    return _bench(tiny)


def _token_texts(tokenizer, ids) -> list[str]:
    """Each id as the capture names it (byte-level markers turned back into text)."""
    return [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def _span_texts(spans) -> list[str]:
    return [span.children.replace("↵", "") for span in spans]


def _generated(bench: RhythmBench, model, max_new_tokens: int = NEW_TOKENS) -> Trace:
    trace = bench.cache.get((model.name, "trace", QUESTION, max_new_tokens))
    assert trace is not None
    return trace


def test_a_generated_response_gives_one_point_and_one_span_per_token(bench, tiny):
    waad, fai, info, spans, roles, peaks, message = rhythm_view(bench, "generate", QUESTION, max_new_tokens=NEW_TOKENS)
    assert message == ""
    trace = _generated(bench, tiny)
    n = len(trace.response_ids)
    assert n == NEW_TOKENS and f"{n} response tokens" in info and "W=10, band 10..end" in info
    assert len(waad.data[0].x) == len(waad.data[0].y) == n  # the WAAD line; data[1] its peaks
    assert [len(line.y) for line in fai.data[::2]] == [n, n]  # FAI and receiver FAI
    assert fai.data[0].y[-1] is None  # the last H_lo tokens have no band: a gap
    assert _span_texts(spans) == _token_texts(tiny.tokenizer, trace.response_ids)
    assert all("-" not in key for span in spans for key in span.style)  # React's camelCase style keys
    assert sum("background" in span.style for span in spans) == n - 10 and spans[-1].style == {"color": "#888"}
    shown = str(roles)
    assert "local heads" in shown and "global heads" in shown and "L" in shown and ".H" in shown
    assert "top FAI tokens" in str(peaks) and "top WAAD peaks" in str(peaks)


def test_new_settings_reanalyse_the_cached_generation(bench, tiny):
    rhythm_view(bench, "generate", QUESTION, max_new_tokens=NEW_TOKENS)
    hits = bench.cache.hits
    first = bench.cache.get((tiny.name, "trace", QUESTION, NEW_TOKENS))
    waad, fai, info, spans, _, _, message = rhythm_view(bench, "generate", QUESTION, max_new_tokens=NEW_TOKENS,
                                                        window=3, band_lo=2, band_hi=6)
    assert message == "" and "W=3, band 2..6" in info
    assert bench.cache.get((tiny.name, "trace", QUESTION, NEW_TOKENS)) is first
    assert bench.cache.hits >= hits + 1  # the trace came from the cache, not from a new generation
    assert max(waad.data[0].y) <= 3  # WAAD caps each distance at W
    assert sum(y is None for y in fai.data[0].y) == 2 and len(spans) == NEW_TOKENS


def test_a_pasted_response_is_analysed_as_tokenized(bench, tiny):
    waad, fai, info, spans, _, _, message = rhythm_view(bench, "pasted", QUESTION, PASTED, max_new_tokens=None,
                                                        band_lo=4, band_hi=20)
    assert message == ""
    ids = tiny.tokenizer(PASTED, add_special_tokens=False)["input_ids"]
    assert len(waad.data[0].x) == len(fai.data[0].x) == len(spans) == len(ids)
    assert "".join(_span_texts(spans)) == PASTED  # the spans are the response, token by token
    assert sum(span.children.count("↵") for span in spans) == 2
    assert "(pasted)" in info and "final number: 72" in info


BAD_INPUT = [
    ("generate", {"question": "   "}, "the question is empty"),
    ("pasted", {"response": " "}, "the response box is empty"),
    ("generate", {"window": 0}, "W (the lookback window) must be a whole number from 1 to"),
    ("generate", {"window": None}, "got nothing"),
    ("generate", {"window": 2.5}, "W (the lookback window) must be a whole number"),
    ("generate", {"band_lo": 10, "band_hi": 5}, "H_hi (5) is below H_lo (10)"),
    ("generate", {"band_lo": -1}, "H_lo (the band's first look-ahead) must be a whole number"),
    ("generate", {"max_new_tokens": 513}, "max new tokens must be a whole number from 1 to 512"),
    ("generate", {"max_new_tokens": 10}, "max new tokens is 10, not more than H_lo=10"),
    ("generate", {"max_new_tokens": 400}, "exceed the model's context of 300 tokens"),
    ("pasted", {"response": "72"}, "the pasted response has 1 tokens, not more than H_lo=10"),
    ("pasted", {"response": "word " * 400}, "exceed the model's context of 300 tokens"),
    ("generate", {"local_share": 0.7, "global_share": 0.5}, "the local and global shares add up to 1.2"),
    ("generate", {"local_share": 0.5, "global_share": 0.5}, "15 heads cannot hold 8 local and 8 global heads"),
    ("generate", {"receiver_share": 0}, "the receiver heads' share must be a share of the heads in (0, 1]"),
]


class _ForbiddenLock:
    """Stands in for the model lock: taking it fails the test (bad input must be refused first)."""

    def __enter__(self):
        raise AssertionError("the model lock was taken")

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(("mode", "changes", "expected"), BAD_INPUT, ids=[row[2][:40] for row in BAD_INPUT])
def test_bad_input_is_one_message_before_the_model_lock(tiny, monkeypatch, mode, changes, expected):
    bench = _bench(tiny)  # its own, so nothing is cached
    monkeypatch.setattr(bench.workbench.holder, "lock", _ForbiddenLock())
    values = {"question": QUESTION, "response": None, "max_new_tokens": NEW_TOKENS, **changes}
    waad, fai, info, spans, roles, peaks, message = rhythm_view(bench, mode, **values)
    assert expected in message and "internal error" not in message
    assert (info, spans, roles, peaks) == ("", "", "", "")
    assert message in waad.layout.annotations[0].text and message in fai.layout.annotations[0].text


def test_a_response_that_ends_inside_the_band_is_a_message(tiny, monkeypatch):
    bench = _bench(tiny)
    eos_early = Trace(index=0, question=QUESTION, prompt="p", prompt_ids=(1, 2), response=" a b", response_ids=(3, 4),
                      reference=None, predicted=None, correct=None, stopped_at_eos=True, generation=None)
    monkeypatch.setattr(rhythm, "generate_batch", lambda *args: [eos_early])
    *_, message = rhythm_view(bench, "generate", QUESTION, max_new_tokens=NEW_TOKENS)
    assert "the model stopped after 2 tokens, not more than H_lo=10" in message


def test_no_model_or_a_loading_model_is_a_message(tiny):
    *_, message = rhythm_view(RhythmBench(Workbench(DashboardSettings(), holder=None)), "generate", QUESTION)
    assert "runs without a model" in message
    release = threading.Event()
    holder = ModelHolder("tiny", lambda _: (release.wait(30), tiny)[1]).start()
    *_, message = rhythm_view(RhythmBench(Workbench(DashboardSettings(), holder)), "generate", QUESTION)
    release.set()
    assert "loading model tiny" in message


def test_the_page_holds_the_panel_and_no_id_twice(tiny):
    app = create_app(DashboardSettings(model="tiny"), loader=lambda _: tiny)
    components = {}
    ids = []
    for component in (app.layout, *app.layout._traverse()):
        if getattr(component, "id", None) is not None:
            ids.append(component.id)
            components[component.id] = component
    assert [i for i, count in Counter(ids).items() if count > 1] == []
    panel_ids = {value for name, value in vars(RID).items() if name.isupper()}
    assert panel_ids <= set(ids) and ID.GRID in ids
    defaults = {i: components[i].value for i in (RID.MAX_NEW_TOKENS, RID.WINDOW, RID.BAND_LO, RID.BAND_HI)}
    assert defaults == {RID.MAX_NEW_TOKENS: 160, RID.WINDOW: 10, RID.BAND_LO: 10, RID.BAND_HI: None}  # section 4
    assert components[RID.QUESTION].value == QUESTION
    wired = " ".join(app.callback_map)
    assert all(i in wired for i in (RID.WAAD, RID.FAI, RID.ANCHORS, RID.MESSAGE))
