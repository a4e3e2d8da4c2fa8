"""CARVE on synth-llava: one held-out scene, with the model's own request forms."""

from __future__ import annotations

import pytest

from circuits.vision.carve_pipeline import carve
from circuits.vision.language import caption, question
from circuits.vision.render import render
from circuits.vision.world import scene_at

pytestmark = pytest.mark.real_model


def test_carve_on_a_heldout_scene():
    from probe.models import load_model

    model = load_model("synth-llava")
    scene = scene_at("heldout", 3)
    result = carve(model, render(scene), question(scene.objects[0].name))
    assert result.general.text == caption(scene)          # G is synth-llava's trained caption request
    assert result.query.grid == (8, 8) and result.query.layers == (19, 20, 21, 22, 23)
    assert result.plain_answer == "Yes" and result.answer  # two images: synth-llava may answer in a sentence
    assert result.maps.shape == (112, 112) and result.mask.any()
