"""Ground-truth objects per image, from a registry of annotation formats.

Context:
    CHAIR needs the objects truly in each image, and POPE builds its questions from them. Three
    sources are registered (:data:`ANNOTATION_FORMATS`); each maps an image name to the frozenset
    of its objects, named by COCO category ("dog", "dining table"):

    - ``chair``: the CHAIR COCO-2014 file (``imid_to_objects``: image id -> objects, from the
      segmentations and the reference captions), keyed by the id ("310196");
    - ``yolo``: a YOLO-labelled folder (the coco128 layout: ``labels/**/*.txt`` of
      ``class x y w h`` rows and class names in ``config.yaml`` or ``data.yaml``, in the folder or
      one folder below it), keyed by the label file's stem ("000000000009");
    - ``jsonl``: JSON lines ``{"image": NAME, "objects": [...]}`` for any image folder (the
      synthetic world writes this form), keyed by ``image`` as written.

    A spec is a path, or ``FORMAT:PATH`` to name the format; without one a folder is read as
    ``yolo``, a ``*.jsonl`` file (gzip or not) as ``jsonl`` and any other file as ``chair``.
    Names differ between sources (POPE says "COCO_val2014_000000310196.jpg", CHAIR "310196",
    coco128 "000000000009"): :func:`image_key` reduces each to one key and :func:`keyed` re-keys
    annotations by it.

Example:
    >>> truth = load_annotations("yolo:../shared/data/coco128/object_detection")
    >>> sorted(truth["000000000009"])
    ['bowl', 'broccoli', 'orange']
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuits.hallucination.files import read_json, read_json_lines, read_text
from probe.errors import InputError

Annotations = dict[str, frozenset[str]]
"""Image name -> the objects in it."""

JSONL_FIELDS = ("image", "objects")
YOLO_CONFIGS = ("config.yaml", "data.yaml")
_COCO_NAME = re.compile(r"^(?:coco_[a-z]+\d*_)?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class AnnotationFormat:
    """A registered annotation source: ``load(path) -> Annotations``; ``suits(path)`` guesses it."""

    name: str
    load: Callable[[Path], Annotations]
    suits: Callable[[Path], bool]
    description: str


ANNOTATION_FORMATS: dict[str, AnnotationFormat] = {}
"""Formats by name, in the order a path without a ``FORMAT:`` prefix is matched against them."""


def register_annotation_format(fmt: AnnotationFormat) -> AnnotationFormat:
    """Add ``fmt`` to :data:`ANNOTATION_FORMATS`; a name can be registered once."""
    if fmt.name in ANNOTATION_FORMATS:
        raise ValueError(f"annotation format {fmt.name!r} is already registered")
    ANNOTATION_FORMATS[fmt.name] = fmt
    return fmt


def load_annotations(path_or_spec: str | os.PathLike) -> Annotations:
    """The objects of every annotated image in ``path_or_spec`` (``PATH`` or ``FORMAT:PATH``)."""
    fmt, path = _resolve(path_or_spec)
    return fmt.load(path)


def image_key(name: str | int) -> str:
    """One key for the names an image goes by: COCO names and ids become the id without zeros.

    Example:
        >>> [image_key(n) for n in ("COCO_val2014_000000310196.jpg", "000000000009.txt", 310196, "a/cat.png")]
        ['310196', '9', '310196', 'cat']
    """
    stem = Path(str(name)).stem if not isinstance(name, int) else str(name)
    match = _COCO_NAME.match(stem)
    return str(int(match.group(1))) if match else stem


def keyed(annotations: Mapping[str, frozenset[str]]) -> Annotations:
    """``annotations`` re-keyed by :func:`image_key`; two names of one key must agree."""
    result: Annotations = {}
    names: dict[str, str] = {}
    for name, objects in annotations.items():
        key = image_key(name)
        if key in result and result[key] != objects:
            raise InputError(f"images {names[key]!r} and {name!r} share the key {key!r} but not their objects; "
                             "rename one of them")
        result[key], names[key] = objects, name
    return result


def coco_file_name(image_id: str | int, split: str = "val2014") -> str:
    """The COCO-2014 file name of an image id, as POPE's questions name images.

    Example:
        >>> coco_file_name("310196")
        'COCO_val2014_000000310196.jpg'
    """
    return f"COCO_{split}_{int(image_key(image_id)):012d}.jpg"


def _resolve(path_or_spec: str | os.PathLike) -> tuple[AnnotationFormat, Path]:
    text = os.fspath(path_or_spec)
    prefix, _, rest = text.partition(":")
    if rest and prefix in ANNOTATION_FORMATS:
        return ANNOTATION_FORMATS[prefix], Path(rest)
    if rest and re.fullmatch(r"[a-z_]{2,}", prefix) and not Path(text).exists():
        raise InputError(f"unknown annotation format {prefix!r} in {text!r}; formats: {', '.join(ANNOTATION_FORMATS)}")
    path = Path(text)
    if not path.exists():
        raise InputError(f"annotation source {path} does not exist; pass an annotation file or a YOLO folder")
    for fmt in ANNOTATION_FORMATS.values():
        if fmt.suits(path):
            return fmt, path
    raise InputError(f"cannot tell the annotation format of {path}; write FORMAT:PATH with a format of "
                     f"{', '.join(ANNOTATION_FORMATS)}")


def _objects(values: Any, where: str) -> frozenset[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise InputError(f"{where}: objects must be a list of object names, got {str(values)[:60]!r}; "
                         "write e.g. [\"dog\", \"dining table\"]")
    return frozenset(v.strip().lower() for v in values)


def load_chair_objects(path: Path) -> Annotations:
    """``chair``: ``imid_to_objects`` of a CHAIR file."""
    data = read_json(path, "CHAIR annotation file")
    table = data.get("imid_to_objects") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        shape = "an object without 'imid_to_objects'" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise InputError(f"CHAIR annotation file {path} is {shape}, not an object with 'imid_to_objects'; pass the "
                         "CHAIR file (chair_coco2014.json.gz) or write jsonl:PATH for {image, objects} lines")
    return {image_key(k): _objects(v, f"{path} image {k}") for k, v in table.items()}


def load_jsonl_objects(path: Path) -> Annotations:
    """``jsonl``: one ``{"image": NAME, "objects": [...]}`` per line."""
    annotations: Annotations = {}
    for number, record in read_json_lines(path, "annotation file"):
        where = f"annotation file {path} line {number}"
        if not isinstance(record, dict):
            raise InputError(f"{where} is a JSON {type(record).__name__}; write {{\"image\": ..., \"objects\": [...]}}")
        unknown = sorted(set(record) - set(JSONL_FIELDS))
        missing = [name for name in JSONL_FIELDS if name not in record]
        if unknown or missing:
            problem = f"unknown field {unknown[0]!r}" if unknown else f"no field {missing[0]!r}"
            raise InputError(f"{where} has {problem}; the fields are {', '.join(JSONL_FIELDS)}")
        image = record["image"]
        if not isinstance(image, str) or not image.strip():
            raise InputError(f"{where}: 'image' must be a non-empty file name")
        if image in annotations:
            raise InputError(f"{where}: image {image!r} is annotated twice; merge its lines")
        annotations[image] = _objects(record["objects"], where)
    return annotations


def load_yolo_objects(path: Path) -> Annotations:
    """``yolo``: the class names of every ``labels/**/*.txt`` row, keyed by the file's stem."""
    root = _yolo_root(path)
    names = _yolo_names(root)
    annotations: Annotations = {}
    for label in sorted((root / "labels").rglob("*.txt")):
        objects = _yolo_label(label, names)
        if label.stem in annotations and annotations[label.stem] != objects:
            raise InputError(f"YOLO folder {path} has two label files named {label.name} with different objects; "
                             "give images unique names")
        annotations[label.stem] = objects
    if not annotations:
        raise InputError(f"YOLO folder {path} has no label files under labels/; pass a folder with labels/*.txt")
    return annotations


def _yolo_root(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(f"YOLO source {path} is not a folder; pass the folder that holds labels/ and config.yaml")
    for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (folder / "labels").is_dir() and any((folder / name).is_file() for name in YOLO_CONFIGS):
            return folder
    raise InputError(f"YOLO folder {path} holds no labels/ folder beside a {' or '.join(YOLO_CONFIGS)}; "
                     "pass the folder of a YOLO data set (as coco128/object_detection)")


def _yolo_names(root: Path) -> dict[int, str]:
    import yaml

    config = next(root / name for name in YOLO_CONFIGS if (root / name).is_file())
    try:
        data = yaml.safe_load(read_text(config, "YOLO config"))
    except yaml.YAMLError as err:
        raise InputError(f"YOLO config {config} is not valid YAML ({str(err).splitlines()[0]}); fix the file") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise InputError(f"YOLO config {config} has no 'names' list or mapping; add the class names")
    return {int(k): str(v).strip().lower() for k, v in names.items()}


def _yolo_label(label: Path, names: dict[int, str]) -> frozenset[str]:
    objects = set()
    for number, line in enumerate(read_text(label, "YOLO label file").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 5 or not fields[0].isdigit():
            raise InputError(f"YOLO label file {label} line {number} is not 'class x y w h'; fix or remove the line")
        if int(fields[0]) not in names:
            raise InputError(f"YOLO label file {label} line {number}: class {fields[0]} has no name in the config; "
                             "add it to 'names'")
        objects.add(names[int(fields[0])])
    return frozenset(objects)


def _is_jsonl(path: Path) -> bool:
    return path.is_file() and path.name.removesuffix(".gz").endswith(".jsonl")


register_annotation_format(AnnotationFormat("yolo", load_yolo_objects, Path.is_dir,
                                            "a YOLO folder: labels/**/*.txt and class names in config.yaml"))
register_annotation_format(AnnotationFormat("jsonl", load_jsonl_objects, _is_jsonl,
                                            "JSON lines {image, objects: [...]}"))
register_annotation_format(AnnotationFormat("chair", load_chair_objects, Path.is_file,
                                            "the CHAIR file: imid_to_objects (COCO id -> objects)"))
