"""CARVE on the synthetic world: per question, the answers with and without CARVE, where the contrast
map peaks, and the image's complexities.

Context:
    For each scene :func:`scene_questions` asks about one present object (for a ``broken`` scene the
    planted member it holds) and one absent object (for a ``broken`` scene the missing partner, the
    question synth-llava hallucinates on; else an absent category drawn with a seeded generator).
    :func:`study_scene` runs G once per scene and CARVE for each question, and records the answer
    without CARVE (the task query's own generation), the answer with it, the contrast map's peak and
    whether it falls in the asked object's box, the same for the plain query attention map (the
    baseline the contrast must beat) and for the contrast of the final step alone (the paper's
    ``t_end``), the box's share of the image (the hit rate of a uniformly random peak), the mask's
    box, the analyses of :mod:`circuits.vision.complexity`, and, since synth-llava never saw two
    images in one prompt, also its answer with the refined image alone (not CARVE: a diagnostic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits.vision.carve_maps import attention_map, fuse_contrast
from circuits.vision.carve_pipeline import CarveOptions, answer_with_images, carve, general_attention, resolved
from circuits.vision.complexity import attention_entropy, colour_complexity, texture_complexity
from circuits.vision.language import question
from circuits.vision.render import render
from circuits.vision.world import CATEGORIES, PARTNER, Scene


@dataclass(frozen=True)
class SceneQuestion:
    """One yes/no question about a scene: the object asked, the true label and its box (if present)."""

    name: str
    label: str
    box: tuple[int, int, int, int] | None


def scene_questions(scene: Scene, seed: int = 0) -> list[SceneQuestion]:
    """A present and an absent object of ``scene`` (see the module docstring)."""
    if scene.split == "broken":
        present = next(obj for obj in scene.objects if obj.name in PARTNER)
        absent = PARTNER[present.name]
    else:
        present = scene.objects[0]
        rng = np.random.default_rng([seed, scene.index])
        others = [name for name in CATEGORIES if name not in scene.names]
        absent = others[int(rng.integers(len(others)))]
    return [SceneQuestion(present.name, "yes", present.box), SceneQuestion(absent, "no", None)]


def peak_of(values: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the largest value."""
    y, x = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(x), int(y)


def inside(point: tuple[int, int], box: tuple[int, int, int, int] | None) -> bool | None:
    """Whether ``point`` lies in ``box`` (right and bottom exclusive); None without a box."""
    if box is None:
        return None
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def yes_no(answer: str) -> str:
    """``yes``, ``no`` or ``other`` from an answer's first word."""
    words = answer.strip().lower().replace(".", " ").replace(",", " ").split()
    return words[0] if words and words[0] in ("yes", "no") else "other"


def study_scene(model, scene: Scene, options: CarveOptions = CarveOptions(), seed: int = 0) -> list[dict]:
    """One record per question of ``scene`` (see the module docstring)."""
    image = render(scene)
    options = resolved(options, model)
    general = general_attention(model, image, options)
    complexity = {"texture": texture_complexity(image), "colour": colour_complexity(image)}
    records = []
    for asked in scene_questions(scene, seed):
        result = carve(model, image, question(asked.name), options, general=general)
        plain_peak = peak_of(attention_map(result.query, image.size))
        last_peak = peak_of(fuse_contrast(result.query, general, image.size, lam=options.lam, step_mode="last"))
        refined_only = answer_with_images(model, options.prompts.ask(question(asked.name)), [result.refined_image],
                                          options.answer_tokens)
        area = ((asked.box[2] - asked.box[0]) * (asked.box[3] - asked.box[1]) / (image.size[0] * image.size[1])
                if asked.box else None)
        records.append({
            "scene": scene.reference, "clutter": scene.clutter, "object": asked.name, "label": asked.label,
            "plain_answer": result.plain_answer, "carve_answer": result.answer,
            "plain_correct": yes_no(result.plain_answer) == asked.label,
            "carve_correct": yes_no(result.answer) == asked.label,
            "object_box": asked.box, "peak": result.peak, "peak_in_box": inside(result.peak, asked.box),
            "plain_peak": plain_peak, "plain_peak_in_box": inside(plain_peak, asked.box), "box_share": area,
            "last_step_peak_in_box": inside(last_peak, asked.box), "refined_only_answer": refined_only,
            "refined_only_correct": yes_no(refined_only) == asked.label,
            "mask_box": result.box, "mask_share": float(result.mask.mean()),
            "refined_size": result.refined_image.size, "general_text": result.general.text,
            "entropy": attention_entropy(result.query.maps), **complexity,
        })
    return records
