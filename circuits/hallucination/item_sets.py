"""Evaluation items from files: POPE question files and CHAIR caption sets.

Context:
    A POPE set is a question file read by :func:`circuits.hallucination.questions.load_pope_questions`
    (``{question_id, image, text, label}`` per line; the real COCO files of POPE, the synthetic
    world's own, any other): one item per question, id ``pope/SPLIT/QUESTION_ID``. A split name
    (``random``, ``popular``, ``adversarial``) stands for ``coco_pope_NAME.json`` in the POPE folder.

    A CHAIR set is one caption request per annotated image, id ``chair/SPLIT/KEY``. With an image
    folder, its image files are matched to the annotation keys (the file name, its stem, or the
    COCO id in it: ``COCO_val2014_000000000042.jpg`` is key ``42`` of the CHAIR COCO file); without
    one, the annotation keys themselves are the image references (``world:heldout:17``, paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from circuits.hallucination.items import EvalItem
from probe.cli_options import UsageError

POPE_SPLITS = ("random", "popular", "adversarial")
POPE_FILE = "coco_pope_{split}.json"
POPE_DIR_VARIABLE = "HEADSCOPE_POPE_DIR"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CHAIR_SPLIT = "captions"


@dataclass(frozen=True)
class Prompts:
    """The text put to the model.

    Attributes:
        pope_suffix: appended to each POPE question (empty: the question as the file has it).
        caption: the CHAIR request.
    """

    pope_suffix: str = ""
    caption: str = "Please describe this image in detail."


def pope_path(name: str, pope_dir: Path | None) -> tuple[str, Path]:
    """The split name and file of ``--pope NAME``: an existing path, or a split in the POPE folder."""
    path = Path(name).expanduser()
    if name not in POPE_SPLITS or path.exists():
        return split_name(path), path
    folder = pope_dir or (Path(os.environ[POPE_DIR_VARIABLE]) if os.environ.get(POPE_DIR_VARIABLE) else None)
    if folder is None:
        raise UsageError(f"--pope {name}: a split name needs the folder of the POPE files; pass --pope-dir DIR "
                         f"(or set ${POPE_DIR_VARIABLE}), or pass the file's path")
    return name, folder / POPE_FILE.format(split=name)


def split_name(path: Path) -> str:
    """The split a POPE file holds, from its name ``{set}_pope_{split}.json`` (as POPE and
    :func:`~circuits.hallucination.question_sets.write_pope_splits` name them): ``random`` for
    COCO's, ``world-random`` for another set's; any other file: its name without suffixes."""
    stem = path.name.split(".")[0]
    name, marker, split = stem.partition("_pope_")
    if not (marker and name and split):
        return stem
    return split if name == "coco" else f"{name}-{split}"


def pope_items(path: Path, split: str, prompts: Prompts, limit: int | None = None) -> list[EvalItem]:
    """The items of one POPE question file (the first ``limit``)."""
    from circuits.hallucination.questions import load_pope_questions

    questions = load_pope_questions(path)[:limit]
    return [EvalItem(item_id=f"pope/{split}/{q.question_id}", image=q.image, prompt=q.text + prompts.pope_suffix,
                     kind="pope", split=split, label=q.label) for q in questions]


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def annotation_key(image: Path, annotations: Mapping[str, object]) -> str | None:
    """The key of ``annotations`` that names ``image``: its name, its stem, or its
    :func:`~circuits.hallucination.annotations.image_key` (the COCO id without zeros)."""
    from circuits.hallucination.annotations import image_key

    return next((key for key in (image.name, image.stem, image_key(image.name)) if key in annotations), None)


def chair_items(annotations: Mapping[str, frozenset[str]], images_dir: Path | None, prompts: Prompts,
                limit: int | None = None) -> tuple[list[EvalItem], int]:
    """One caption item per annotated image (the first ``limit``), and the number of images in
    ``images_dir`` that have no annotation (left out)."""
    if images_dir is None:
        pairs = [(key, key) for key in sorted(annotations)]
        unmatched = 0
    else:
        files = image_files(images_dir)
        keyed = [(path.name, annotation_key(path, annotations)) for path in files]
        pairs = [(name, key) for name, key in keyed if key is not None]
        unmatched = len(files) - len(pairs)
    items = [EvalItem(item_id=f"chair/{CHAIR_SPLIT}/{key}", image=reference, prompt=prompts.caption, kind="chair",
                      split=CHAIR_SPLIT, truth=tuple(sorted(annotations[key]))) for reference, key in pairs[:limit]]
    return items, unmatched
