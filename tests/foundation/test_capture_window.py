"""A windowed capture's rows equal the same rows of a full pattern capture, edits included."""

from __future__ import annotations

import pytest
import torch

from probe import CaptureConfig, capture
from probe.capture.window import capture_window, window_bounds
from probe.edits import BoostKeys, Positions, ScaleHeads, act_calibration, apply_edits
from probe.errors import InputError
from tests.helpers import tiny_loaded

PROMPT = "When Mary and John went to the store, John gave a drink to Mary and"


@pytest.fixture(scope="module")
def model():
    return tiny_loaded("llama")


def _full(model, edits):
    with apply_edits(model, edits):
        return capture(model, PROMPT, CaptureConfig(mode="pattern"))


ACT = [act_calibration(tau=0.05, layers=[1, 2])]
BOOST = [BoostKeys(Positions([2]), 0.7, layers=[0, 2]), ScaleHeads(0.0, layers=[1], heads=[0])]


@pytest.mark.parametrize("edits, start, stop", [
    ([], 3, 9), (ACT, -4, None), (ACT, 3, 9), (BOOST, -4, None), (BOOST, 3, 9),
], ids=["plain", "act-end", "act-middle", "boost-end", "boost-middle"])
def test_window_rows_equal_the_full_pattern(model, edits, start, stop):
    full = _full(model, edits)
    window = capture_window(model, PROMPT, start, stop, edits=edits)
    n = len(full.tokens[0])
    lo, hi = window_bounds(start, stop, n)
    assert (window.start, window.stop, window.layers) == (lo, hi, full.layers)
    for layer in full.layers:
        assert window.rows[layer].shape == (full.n_heads, hi - lo, n)
        torch.testing.assert_close(window.rows[layer], full.pattern(layer)[:, lo:hi], rtol=1e-5, atol=1e-6)
    assert window.row(2, 1, hi - 1).sum() == pytest.approx(1.0, abs=1e-5)


def test_act_changes_the_rows_it_should(model):
    edits = [act_calibration(tau=0.05, layers=[2])]
    plain = capture_window(model, PROMPT, -3, layers=[2])
    edited = capture_window(model, PROMPT, -3, layers=[2], edits=edits)
    assert edited.layers == [2]
    assert not torch.allclose(plain.rows[2], edited.rows[2])  # the sinks found on the whole layer were scaled


@pytest.mark.parametrize("start, stop, message", [
    (5, 5, "is empty or outside"),
    (0, 17, "is empty or outside"),
    (-99, None, "is empty or outside"),
    (1.5, None, "must be an integer"),
    (0, "end", "must be an integer"),
])
def test_bad_windows(start, stop, message):
    with pytest.raises(InputError, match=message):
        window_bounds(start, stop, 16)


def test_a_window_over_the_memory_limit_is_refused(model):
    with pytest.raises(InputError, match="over the .* limit; choose fewer queries or layers"):
        capture_window(model, PROMPT, 0, bytes_limit=1000)
    with pytest.raises(InputError, match="outside the window"):
        capture_window(model, PROMPT, 0, 2, layers=[0]).row(0, 0, 5)
