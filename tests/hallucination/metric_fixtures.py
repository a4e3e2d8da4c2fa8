"""Small fixtures for the CHAIR and POPE tests: a CHAIR vocabulary in the CHAIR file's shape.

:data:`MINI_LISTS` holds, verbatim, the entries of ``chair_coco2014.json.gz`` (the reference's
``chair.pkl``) that the parser cases need, quirks included: ``" motor bike"`` is listed with a
leading space, as the reference's synonym list splits it, so "motor bike" never matches; the
merges "home plate" and "train track" map to words that are no objects.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.helpers import SHARED

CHAIR_FILE = SHARED / "data" / "chair" / "chair_coco2014.json.gz"
POPE_DIR = SHARED / "data" / "pope"
COCO128 = SHARED / "data" / "coco128" / "object_detection"

SYNONYMS = {
    "person": ["person", "man", "woman", "people", "child", "children", "baby", "adult", "skier", "policeman",
               "player"],
    "dog": ["dog", "puppy", "doggie"], "cat": ["cat", "kitten"], "bus": ["bus"], "knife": ["knife", "knive"],
    "mouse": ["mouse"], "cell phone": ["cell phone", "phone"], "teddy bear": ["teddy bear", "teddybear"],
    "hot dog": ["hot dog"], "dining table": ["dining table", "table", "desk"], "fire hydrant": ["fire hydrant",
    "hydrant"], "motorcycle": ["motorcycle", " motor bike", "motor cycle", "motorbike"], "tie": ["tie", "bow",
    "bow tie"], "toilet": ["toilet"], "chair": ["chair", "seat"], "wine glass": ["wine glass"],
    "elephant": ["elephant"], "train": ["train"], "airplane": ["airplane", "air plane", "jet"], "sheep": ["sheep"],
    "skis": ["skis", "ski"], "scissors": ["scissors"], "couch": ["couch", "sofa"], "donut": ["donut", "doughnut"],
    "cow": ["cow", "ox", "oxen"], "bowl": ["bowl"], "bird": ["bird"], "car": ["car"],
}
DOUBLE_WORDS = {
    "baby elephant": "elephant", "adult dog": "dog", "passenger train": "train", "passenger jet": "jet",
    "toilet seat": "toilet", "bow tie": "tie", "wine glas": "wine glass", "wine glass": "wine glass",
    "teddy bear": "teddy bear", "hot dog": "hot dog", "cell phone": "cell phone", "fire hydrant": "fire hydrant",
    "motor bike": "motor bike", "motor cycle": "motor cycle", "air plane": "air plane", "home plate": "home plate",
    "train track": "train track",
}
MINI_LISTS = {
    "mscoco_objects": [word for words in SYNONYMS.values() for word in words],
    "inverse_synonym_dict": {word: category for category, words in SYNONYMS.items() for word in words},
    "double_word_dict": DOUBLE_WORDS,
}


def write_chair_file(folder: Path, imid_to_objects: dict[str, list[str]] | None = None) -> Path:
    """:data:`MINI_LISTS` (and ``imid_to_objects``) as a gzip CHAIR file in ``folder``."""
    path = folder / "chair_mini.json.gz"
    path.write_bytes(gzip.compress(json.dumps({**MINI_LISTS, "imid_to_objects": imid_to_objects or {}}).encode()))
    return path
