"""A small evaluation set on disk for the ``vlm eval`` tests: images, a POPE file, annotations.

Six 16 x 16 images of distinct colours, one corrupt image file (bytes that are no image) and one
POPE question about an image that does not exist; a CHAIR vocabulary of ten COCO words; JSON-lines
annotations of every image in the folder. With ``--edit act`` that is (16 POPE + 7 CHAIR items)
x 2 conditions = 46 records, of which 2 x (4 + 1) fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

WORDS = ("person", "dog", "cat", "car", "chair", "cup", "fork", "knife", "bicycle", "boat")
GOOD_IMAGES = tuple(f"img{i}.png" for i in range(6))
CORRUPT_IMAGE = "corrupt.png"
MISSING_IMAGE = "missing.png"
POPE_ITEMS = 16
CHAIR_ITEMS = 7
FAILED_ITEMS = 5  # four POPE questions (2 of the missing image, 2 of the corrupt one) and one caption


@dataclass(frozen=True)
class EvalFixture:
    """Paths of the fixture; :meth:`argv` is a ``headscope vlm eval`` command line over all of it."""

    root: Path
    images: Path
    pope: Path
    annotations: Path
    vocabulary: Path

    def argv(self, out: Path, *extra: str, answerer: str = "fake-hash", batch_size: int = 3) -> list[str]:
        return ["vlm", "eval", "--answerer", answerer, "--out", str(out), "--pope", str(self.pope),
                "--chair-captions", "--annotations", str(self.annotations), "--chair-vocabulary", str(self.vocabulary),
                "--images", str(self.images), "--batch-size", str(batch_size), "--edit", "act", "--no-progress",
                *extra]


def write_image(path: Path, colour: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (16, 16), colour).save(path)
    return path


def write_fixture(root: Path) -> EvalFixture:
    images = root / "images"
    images.mkdir(parents=True)
    for i, name in enumerate(GOOD_IMAGES):
        write_image(images / name, (40 * i, 255 - 30 * i, (70 * i) % 256))
    (images / CORRUPT_IMAGE).write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    questions = []
    for i, image in enumerate([*GOOD_IMAGES, CORRUPT_IMAGE, MISSING_IMAGE]):
        for j, label in enumerate(("yes", "no")):
            word = WORDS[(i + 3 * j) % len(WORDS)]
            questions.append({"question_id": 2 * i + j + 1, "image": image,
                              "text": f"Is there a {word} in the image?", "label": label})
    pope = root / "coco_pope_fixture.json"
    pope.write_text("".join(json.dumps(q) + "\n" for q in questions))
    annotations = root / "objects.jsonl"
    annotations.write_text("".join(json.dumps({"image": name, "objects": [WORDS[i % 10], WORDS[(i + 4) % 10]]}) + "\n"
                                   for i, name in enumerate([*GOOD_IMAGES, CORRUPT_IMAGE])))
    vocabulary = root / "chair_words.json"
    vocabulary.write_text(json.dumps({"mscoco_objects": list(WORDS), "inverse_synonym_dict": {w: w for w in WORDS},
                                      "double_word_dict": {}}))
    return EvalFixture(root, images, pope, annotations, vocabulary)
