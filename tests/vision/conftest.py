"""Tiny random VLMs (session-scoped: built once) and small synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.vision.tiny_vlms import TINY_VLMS, tiny_vlm_loaded


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict:
    """Family -> a tiny random VLM as ``load_model`` returns it (LLaVA, Qwen2-VL, Idefics3, SmolVLM)."""
    root = tmp_path_factory.mktemp("tiny-vlms")
    return {family: tiny_vlm_loaded(family, root / family) for family in TINY_VLMS}


@pytest.fixture(params=sorted(TINY_VLMS))
def vlm(request, tiny_vlms):
    return tiny_vlms[request.param]


def synthetic_image(seed: int, size: tuple[int, int] = (47, 35)) -> Image.Image:
    """A small random RGB image (odd sizes: the processors resize it)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def images() -> list:
    return [synthetic_image(1), synthetic_image(2, (29, 53))]
