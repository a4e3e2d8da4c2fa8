"""Annotation sources: the CHAIR file, a YOLO folder and JSON lines give the same object sets."""

from __future__ import annotations

import gzip
import json

import pytest

from circuits.hallucination.annotations import (ANNOTATION_FORMATS, AnnotationFormat, coco_file_name, image_key,
                                                 keyed, load_annotations, register_annotation_format)
from probe.errors import InputError
from tests.hallucination.metric_fixtures import write_chair_file


def yolo_folder(root, names="names:\n  0: person\n  1: dog\n  2: dining table\n", config="config.yaml"):
    labels = root / "object_detection" / "labels" / "train2017"
    labels.mkdir(parents=True)
    (root / "object_detection" / config).write_text(f"path: .\n{names}")
    (labels / "000000000009.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n1 0.3 0.3 0.1 0.1\n")
    (labels / "000000000025.txt").write_text("2 0.5 0.5 0.9 0.9\n")
    (labels / "000000000030.txt").write_text("")
    return root / "object_detection"


def test_three_sources_agree(tmp_path):
    chair = write_chair_file(tmp_path, {"9": ["dog", "person"], "25": ["dining table"], "30": []})
    jsonl = tmp_path / "objects.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image": "COCO_val2014_000000000009.jpg", "objects": ["Dog", "person", "dog"]},
        {"image": "000000000025.jpg", "objects": ["dining table"]}, {"image": "30.png", "objects": []}]))
    sources = [load_annotations(chair), load_annotations(yolo_folder(tmp_path)), load_annotations(f"jsonl:{jsonl}")]
    assert sources[0] == {"9": {"dog", "person"}, "25": {"dining table"}, "30": frozenset()}
    assert sources[1]["000000000009"] == {"dog", "person"}
    assert sources[2]["COCO_val2014_000000000009.jpg"] == {"dog", "person"}
    assert keyed(sources[0]) == keyed(sources[1]) == keyed(sources[2])


def test_format_is_guessed_or_named(tmp_path):
    folder = yolo_folder(tmp_path)
    assert load_annotations(tmp_path) == load_annotations(folder) == load_annotations(f"yolo:{folder}")
    (tmp_path / "o.jsonl.gz").write_bytes(gzip.compress(b'{"image": "a.png", "objects": ["cat"]}\n'))
    assert load_annotations(tmp_path / "o.jsonl.gz") == {"a.png": {"cat"}}
    assert list(ANNOTATION_FORMATS) == ["yolo", "jsonl", "chair"]


def test_yolo_names_as_a_list_in_data_yaml(tmp_path):
    folder = yolo_folder(tmp_path, names="names: [person, dog, dining table]\n", config="data.yaml")
    assert load_annotations(folder)["000000000025"] == {"dining table"}


def test_image_keys():
    assert image_key("COCO_val2014_000000310196.jpg") == image_key("000000310196.txt") == image_key(310196) == "310196"
    assert image_key("images/cat_01.png") == "cat_01"
    assert coco_file_name("9") == "COCO_val2014_000000000009.jpg"
    with pytest.raises(InputError, match="share the key"):
        keyed({"009.png": frozenset({"dog"}), "9.jpg": frozenset({"cat"})})


def test_registry_refuses_a_second_format_of_one_name():
    with pytest.raises(ValueError, match="already registered"):
        register_annotation_format(AnnotationFormat("yolo", dict, bool, "again"))


@pytest.mark.parametrize("write, spec, word", [
    (lambda p: p.write_bytes(b"\x1f\x8b garbage"), "{p}", "not a readable gzip file"),
    (lambda p: p.write_text("[1, 2]"), "{p}", "imid_to_objects"),
    (lambda p: p.write_text('{"images": {}}'), "{p}", "imid_to_objects"),
    (lambda p: p.write_text("{not json"), "{p}", "not valid JSON"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00"), "{p}", "UTF-8"),
    (lambda p: p.write_text('{"imid_to_objects": {"1": "dog"}}'), "{p}", "list of object names"),
    (lambda p: p.write_text('{"image": "a.png", "objects": [], "box": 1}\n'), "jsonl:{p}", "unknown field 'box'"),
    (lambda p: p.write_text('{"image": "a.png"}\n'), "jsonl:{p}", "no field 'objects'"),
    (lambda p: p.write_text('{"image": "a.png", "objects": []}\n' * 2), "jsonl:{p}", "twice"),
    (lambda p: p.write_text("{}"), "xml:{p}", "unknown annotation format 'xml'"),
    (lambda p: None, "{p}", "does not exist"),
])
def test_bad_sources(tmp_path, write, spec, word):
    path = tmp_path / "annotations.json"
    write(path)
    with pytest.raises(InputError, match=word):
        load_annotations(spec.format(p=path))


def test_bad_yolo_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.yaml"):
        load_annotations(tmp_path / "empty")
    folder = yolo_folder(tmp_path / "one")
    (folder / "labels" / "train2017" / "000000000031.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match="class 7 has no name"):
        load_annotations(folder)
    folder = yolo_folder(tmp_path / "two")
    (folder / "labels" / "train2017" / "000000000031.txt").write_text("dog 0.5\n")
    with pytest.raises(InputError, match="not 'class x y w h'"):
        load_annotations(folder)
