"""The synthetic world: scenes are pure functions of their reference, pairs are planted as
declared, renders put each object's colour inside its box, and the evaluation sets agree with it."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from circuits.hallucination.questions import load_pope_questions
from circuits.vision.glyphs import MIN_DISTANCE, glyph_table
from circuits.vision.item_sets import write_world_sets
from circuits.vision.language import caption, question
from circuits.vision.render import BACKGROUND, render_array
from circuits.vision.world import CATEGORIES, COLOURS, PARTNER, PLANTED_PAIRS, WorldConfig, parse_reference, scene_at, scenes


def test_a_reference_redraws_the_same_scene_and_image():
    scene = scene_at("heldout", 17)
    again = parse_reference(scene.reference)
    assert again == scene
    assert np.array_equal(render_array(again), render_array(scene))
    assert scene_at("heldout", 18) != scene
    other_seed = scene_at("heldout", 17, WorldConfig(seed=3))
    assert other_seed.reference == "world:heldout:17:3" and parse_reference(other_seed.reference) == other_seed


@pytest.mark.parametrize("reference", ["world:heldout", "world:nowhere:3", "world:heldout:x", "earth:heldout:3"])
def test_bad_references_are_refused(reference):
    with pytest.raises(ValueError, match="world"):
        parse_reference(reference)


def test_glyphs_are_pairwise_distinct():
    table = glyph_table(len(CATEGORIES))
    distances = (table[:, None] != table[None]).sum((-1, -2))
    assert distances[~np.eye(len(table), dtype=bool)].min() >= MIN_DISTANCE


def test_planted_pairs_come_together_in_training_scenes_and_never_in_broken_ones():
    together, alone = Counter(), Counter()
    for scene in scenes("train", 1500):
        for name in scene.names & PARTNER.keys():
            (together if PARTNER[name] in scene.names else alone)[name] += 1
    rate = sum(together.values()) / (sum(together.values()) + sum(alone.values()))
    assert 0.85 <= rate <= 1.0  # 0.95 drawn; a partner that finds no room on the canvas is dropped
    for scene in scenes("broken", 300):
        members = scene.names & PARTNER.keys()
        assert len(members) == 1 and PARTNER[next(iter(members))] not in scene.names


def test_render_draws_each_object_in_its_colour_inside_its_box_and_nothing_outside_on_a_clean_scene():
    scene = next(s for s in scenes("heldout", 50) if s.clutter == 0 and len(s.objects) >= 2)
    image = render_array(scene)
    outside = np.ones(image.shape[:2], dtype=bool)
    for obj in scene.objects:
        left, top, right, bottom = obj.box
        patch = image[top:bottom, left:right].reshape(-1, 3)
        assert (patch == COLOURS[obj.colour]).all(-1).sum() >= 12 * (right - left) ** 2 // 36
        outside[top:bottom, left:right] = False
    assert (image[outside] == BACKGROUND).all()


def test_captions_and_questions_read_as_written():
    scene = scene_at("heldout", 0)
    text = caption(scene)
    assert text.endswith(".") and all(obj.name in text for obj in scene.objects)
    positions = [text.index(f"{obj.colour} {obj.name}") for obj in scene.objects]
    assert positions == sorted(positions)  # left to right
    assert question("elephant") == "Is there an elephant in the image?"
    assert question("sports ball") == "Is there a sports ball in the image?"


def test_world_sets_ask_broken_scenes_about_the_absent_partner(tmp_path):
    paths = write_world_sets(tmp_path, "broken", 40)
    truth = {json.loads(line)["image"]: set(json.loads(line)["objects"]) for line in paths["annotations"].read_text().splitlines()}
    assert len(truth) == 40 and all(ref.startswith("world:broken:") for ref in truth)
    questions = load_pope_questions(paths["adversarial"])
    asked_partner = 0
    for yes, no in zip(questions[::2], questions[1::2]):
        assert yes.label == "yes" and yes.object in truth[yes.image]
        assert no.label == "no" and no.object not in truth[no.image]
        asked_partner += PARTNER.get(yes.object) == no.object
    members = sum(len(objects & PARTNER.keys()) for objects in truth.values())
    assert asked_partner >= 0.8 * members  # adversarial: ranked by what the training scenes pair


def test_the_world_vocabulary_counts_true_captions_without_hallucination(tmp_path):
    paths = write_world_sets(tmp_path, "heldout", 60)
    vocabulary = ChairVocabulary.from_file(paths["vocabulary"])
    sample = scenes("heldout", 60)
    metrics = chair_metrics(vocabulary, [caption(s) for s in sample], [set(s.names) for s in sample])
    assert metrics.chair_s == 0 and metrics.chair_i == 0 and metrics.recall == 1
    wrong = chair_metrics(vocabulary, ["A small red knife and a large orange bus."], [{"bus"}])
    assert wrong.chair_s == 1 and wrong.chair_i == 0.5  # the colour orange is no object here; the knife is


def test_every_pair_member_is_a_category():
    assert all(a in CATEGORIES and b in CATEGORIES for a, b in PLANTED_PAIRS)


def test_world_sets_take_their_per_image_count_and_seed(tmp_path):
    one = load_pope_questions(write_world_sets(tmp_path / "a", "heldout", 30, per_image=1, seed=3)["random"])
    per_scene = Counter(q.image for q in one)
    assert set(per_scene.values()) == {2}  # one present, one absent object per scene
    other = load_pope_questions(write_world_sets(tmp_path / "b", "heldout", 30, per_image=1, seed=4)["random"])
    assert [q.object for q in one] != [q.object for q in other]
    assert [q.image for q in one] == [q.image for q in other]  # the scenes are the split's, whatever the seed


def test_another_world_seed_gives_other_scenes_ranked_by_the_same_training_statistics(tmp_path):
    base = write_world_sets(tmp_path / "a", "broken", 40)
    other = write_world_sets(tmp_path / "b", "broken", 40, config=WorldConfig(seed=2))
    base_questions = load_pope_questions(base["adversarial"])
    other_questions = load_pope_questions(other["adversarial"])
    assert all(q.image.endswith(":2") for q in other_questions)
    assert all(parse_reference(q.image).config.seed == 2 for q in other_questions)
    assert {q.image for q in base_questions}.isdisjoint({q.image for q in other_questions})
    # adversarial questions after a pair member still ask about its absent partner (training statistics of seed 0)
    partner_asks = [q for q in other_questions if q.label == "no" and
                    any(PARTNER.get(name) == q.object for name in parse_reference(q.image).names)]
    assert len(partner_asks) >= 20
