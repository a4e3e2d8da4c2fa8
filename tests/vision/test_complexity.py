"""CARVE's analyses: Canny edges of a square, hue entropy, attention entropy."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from circuits.vision.complexity import (attention_entropy, canny, colour_complexity, hue_entropy, opencv_hue,
                                        texture_complexity)


def square(size: int = 40, low: int = 10, high: int = 30) -> np.ndarray:
    picture = np.zeros((size, size))
    picture[low:high, low:high] = 255.0
    return picture


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_canny_of_a_square_is_its_outline(sigma):
    edges = canny(square(), sigma=sigma)
    rows, cols = np.nonzero(edges)
    # every edge pixel lies on the square's border, one pixel either side of the step
    on_border = ((np.isin(rows, [9, 10, 29, 30]) & (cols >= 9) & (cols <= 30))
                 | (np.isin(cols, [9, 10, 29, 30]) & (rows >= 9) & (rows <= 30)))
    assert on_border.all()
    # each side is covered along its straight part, one pixel thick (non-maximum suppression)
    for side in (edges[9:11, 12:28], edges[29:31, 12:28], edges[12:28, 9:11].T, edges[12:28, 29:31].T):
        assert (side.sum(axis=0) == 1).all()
    assert not edges[12:28, 12:28].any() and not edges[:8].any()


def test_canny_thresholds_and_flat_image():
    assert not canny(np.full((20, 20), 77.0)).any()
    faint = square() * 0.1  # a step of 25.5 grey levels: Sobel L1 magnitude ~100, below high = 200
    assert not canny(faint, sigma=0.0).any() and canny(faint, sigma=0.0, low=10, high=50).any()
    image = Image.fromarray(square().astype(np.uint8)).convert("RGB")
    assert texture_complexity(image, sigma=0.0) == pytest.approx(canny(square(), sigma=0.0).mean())


def hue_image(degrees: np.ndarray) -> Image.Image:
    rgb = [colorsys.hsv_to_rgb(d / 360.0, 1.0, 1.0) for d in degrees]
    pixels = np.round(np.asarray(rgb) * 255).astype(np.uint8).reshape(1, -1, 3)
    return Image.fromarray(pixels)


def test_hue_entropy_of_one_hue_is_zero_and_of_uniform_hues_is_one():
    assert colour_complexity(Image.new("RGB", (9, 7), (215, 40, 40))) == 0.0
    assert hue_entropy(np.arange(180)) == pytest.approx(1.0)
    uniform = hue_image(np.arange(180) * 2.0)
    np.testing.assert_array_equal(opencv_hue(uniform)[0], np.arange(180))
    assert colour_complexity(uniform) == pytest.approx(1.0)
    assert hue_entropy(np.array([0, 90])) == pytest.approx(np.log(2) / np.log(180))


def test_opencv_hue_scale():
    # red 0, green 120 degrees -> 60, blue 240 -> 120, grey -> 0 (OpenCV's 8-bit hue)
    picture = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], dtype=np.uint8))
    np.testing.assert_array_equal(opencv_hue(picture)[0], [0, 60, 120, 0])


def test_attention_entropy_final_step_mean_over_layers():
    maps = np.zeros((2, 2, 4))
    maps[0] = 0.25                       # an earlier step is ignored
    maps[1, 0] = [0.5, 0.5, 0.0, 0.0]    # entropy ln 2
    maps[1, 1] = [0.1, 0.1, 0.1, 0.1]    # not renormalised: -4 * 0.1 ln 0.1
    expected = (np.log(2) - 0.4 * np.log(0.1)) / 2
    assert attention_entropy(maps) == pytest.approx(expected)
