"""The synthetic world as evaluation sets: annotations and POPE question files, on disk.

Context:
    ``headscope vlm eval`` reads POPE question files and CHAIR annotations; for the world these
    name scenes by reference (``world:heldout:17``, re-drawn on demand through the ``world`` image
    source), so a set is a few kB of text and no images. :func:`write_world_sets` writes, for one
    split,

    - ``world-SPLIT_annotations.jsonl``: ``{"image": REF, "objects": [...]}`` per scene (CHAIR's
      ground truth, the ``jsonl`` annotation format);
    - ``world-SPLIT_pope_{random,popular,adversarial}.json``: POPE's three splits over those scenes
      (:func:`~circuits.hallucination.question_sets.build_pope_questions`), ``popular`` and
      ``adversarial`` ranked by the object statistics of the *training* scenes, the prior the model
      learnt. On the ``broken`` split the adversarial question after a pair member is its absent
      partner: the question the planted pairs make a model get wrong;
    - ``world_chair_vocabulary.json``: CHAIR's word lists for the world's 36 categories (each its
      own only synonym) with the corrected singular rules. CHAIR's COCO lists would read the colour
      "orange" as the fruit and, with the reference's singular rules, "bus" as "bu"; the world's
      captions name objects by their category alone, so its own vocabulary counts exactly them.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from circuits.hallucination.question_sets import ObjectStatistics, build_pope_questions
from circuits.hallucination.questions import write_pope_questions
from circuits.hallucination.pope import SPLITS as POPE_SPLITS
from circuits.vision.world import CATEGORIES, WorldConfig, scenes
from probe.files import write_text_atomic

TRAIN_STATISTICS_SCENES = 5000


def world_annotations(split: str, count: int, config: WorldConfig = WorldConfig(), start: int = 0) -> dict[str, frozenset[str]]:
    """Scene reference -> its object names, for ``count`` scenes of ``split``."""
    return {scene.reference: scene.names for scene in scenes(split, count, config, start)}


def training_statistics(config: WorldConfig = WorldConfig(), count: int = TRAIN_STATISTICS_SCENES) -> ObjectStatistics:
    """Object frequencies and co-occurrences of the first ``count`` training scenes."""
    return ObjectStatistics.of(world_annotations("train", count, config))


def write_world_sets(folder: str | os.PathLike, split: str, count: int, *, per_image: int = 3, seed: int = 0,
                     config: WorldConfig = WorldConfig()) -> dict[str, Path]:
    """Write the annotations and the three POPE files of ``count`` scenes of ``split`` into ``folder``.

    ``seed`` draws the questions; ``config.seed`` draws the scenes (another world seed gives another,
    independent scene set of the same split). Popular and adversarial questions are ranked by the
    statistics of the training scenes synth-llava learnt from (world seed 0) whatever the scenes' seed.

    Returns ``{"annotations": path, "vocabulary": path, "random": path, "popular": path, "adversarial": path}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    annotations = world_annotations(split, count, config)
    stem = f"world-{split}"
    paths = {"annotations": folder / f"{stem}_annotations.jsonl"}
    lines = [json.dumps({"image": ref, "objects": sorted(objects)}) for ref, objects in annotations.items()]
    write_text_atomic(paths["annotations"], "\n".join(lines) + "\n")
    paths["vocabulary"] = folder / "world_chair_vocabulary.json"
    write_text_atomic(paths["vocabulary"], json.dumps(world_vocabulary(), indent=1) + "\n")
    statistics = training_statistics(replace(config, seed=WorldConfig().seed))
    for pope_split in POPE_SPLITS:
        questions = build_pope_questions(annotations, pope_split, per_image=per_image, seed=seed, statistics=statistics)
        paths[pope_split] = write_pope_questions(questions, folder / f"{stem}_pope_{pope_split}.json")
    return paths


def world_vocabulary() -> dict:
    """CHAIR's lists (the reference's field names) for the world's categories."""
    return {
        "mscoco_objects": list(CATEGORIES),
        "inverse_synonym_dict": {name: name for name in CATEGORIES},
        "double_word_dict": {name: name for name in CATEGORIES if " " in name},
        "singular": "keep_known",
    }
