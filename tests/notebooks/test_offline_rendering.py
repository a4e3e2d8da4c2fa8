"""show_record's circuitsvis HTML is self-contained also when the kernel is online (fast: a tiny model).

circuitsvis' ``RenderedHTML`` displays its CDN version (an import from unpkg) whenever it can reach
the internet, so a notebook executed online and saved showed nothing offline.
"""

from __future__ import annotations

import pytest

pytest.importorskip("circuitsvis")

import circuitsvis.utils.render as cv_render  # noqa: E402

from apps.heads_dashboard.notebook import show_record  # noqa: E402
from probe import CaptureConfig, capture  # noqa: E402
from tests.apps.conftest import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def records():
    model = tiny_model()
    return (capture(model, "When Mary and John went to the store, John gave", CaptureConfig(mode="pattern")),
            capture(model, "a long story " * 10, CaptureConfig(mode="stats")))


@pytest.mark.parametrize("online", [True, False], ids=["online", "offline"])
def test_show_record_inlines_the_circuitsvis_bundle(records, online, monkeypatch):
    monkeypatch.setattr(cv_render, "internet_on", lambda: online)
    pattern_record, stats_record = records
    for html, element in ((show_record(pattern_record, layer=1), "AttentionPatterns"),
                          (show_record(stats_record, layer=0), "ColoredTokens")):
        for shown in (html._repr_html_(), str(html)):
            assert "unpkg.com" not in shown and "jsdelivr" not in shown
            assert "var CircuitsVis=" in shown  # the bundle the package ships, inlined
            assert f"CircuitsVis.{element}" in shown
