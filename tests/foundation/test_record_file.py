"""An attention record on disk: one self-describing safetensors file, checked when it is read.

Every damaged, edited or mismatched record must be refused with one ``ValueError`` naming the
file, what is wrong and what to do; old two-file records (format version 1) still load.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from probe import CaptureConfig, capture
from probe.capture.record import AttentionRecord
from tests.helpers import tiny_loaded

PROMPTS = ["Hello there, general Kenobi, you are a bold one", "Hi"]
OTHER_PROMPTS = ["A completely different prompt", "of other lengths", "three of them"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")


@pytest.fixture(scope="module")
def record(tiny):
    config = CaptureConfig(mode="pattern", block_size=3, head_output_positions=(0, -1))
    return capture(tiny, PROMPTS, config)


@pytest.fixture(scope="module")
def other_record(tiny):
    return capture(tiny, OTHER_PROMPTS, CaptureConfig(mode="pattern", block_size=3, head_output_positions=(0, -1)))


@pytest.fixture
def saved(record, tmp_path) -> Path:
    path = record.save(tmp_path / "rec")
    return path[0] if isinstance(path, tuple) else path


def header_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def rewrite_metadata(path: Path, edit) -> None:
    """Rewrite the headscope JSON in the header (the tensors and the checksum left as they were)."""
    tensors, header = load_file(str(path)), header_metadata(path)
    meta = json.loads(header["headscope"])
    header["headscope"] = json.dumps(edit(meta))
    save_file(tensors, str(path), metadata=header)


def write_version_1(tensors_of: AttentionRecord, meta_of: AttentionRecord, stem: Path, header: bool) -> None:
    """The old two-file format: ``stem.safetensors`` (tensors, with or without header metadata) + ``stem.json``."""
    tensors_of.save(stem.parent / "scratch")
    tensors = load_file(str(stem.parent / "scratch.safetensors"))
    (stem.parent / "scratch.safetensors").unlink()
    old_meta = {**tensors_of.metadata(), "version": 1}
    metadata = {"headscope": json.dumps(old_meta)} if header else None
    save_file(tensors, str(stem.with_suffix(".safetensors")), metadata=metadata)
    (stem.with_suffix(".json")).write_text(json.dumps({**meta_of.metadata(), "version": 1}, indent=1))


def assert_same(loaded: AttentionRecord, record: AttentionRecord) -> None:
    assert loaded.tokens == record.tokens and loaded.config == record.config and loaded.n_heads == record.n_heads
    torch.testing.assert_close(loaded.input_ids, record.input_ids)
    for layer in record.layers:
        torch.testing.assert_close(loaded.patterns[layer], record.patterns[layer])
        torch.testing.assert_close(loaded.head_outputs[layer], record.head_outputs[layer])
        for name, value in record.stats[layer].items():
            torch.testing.assert_close(loaded.stats[layer][name], value, equal_nan=True)


# --- one self-describing file ------------------------------------------------------------------


def test_save_writes_one_file_and_returns_its_path(record, tmp_path):
    path = record.save(tmp_path / "rec")
    assert path == tmp_path / "rec.safetensors"
    assert [p.name for p in tmp_path.iterdir()] == ["rec.safetensors"], "no .json sidecar, no temporary"
    assert record.save(tmp_path / "other.safetensors") == tmp_path / "other.safetensors"


def test_the_header_describes_the_record_and_carries_a_checksum(saved, record):
    header = header_metadata(saved)
    meta = json.loads(header["headscope"])
    assert meta["format"] == "headscope.attention_record" and meta["version"] == 2
    assert meta["tokens"] == record.tokens and meta["layers"] == record.layers and meta["n_heads"] == record.n_heads
    assert header["headscope.digest"].startswith("blake2b:")


def test_the_record_file_gets_the_mode_a_plain_open_would_give(record, tmp_path):
    old = os.umask(0o022)
    try:
        path = record.save(tmp_path / "rec")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_stem_with_a_dot_keeps_its_whole_name(record, tmp_path):
    assert record.save(tmp_path / "run.v2") == tmp_path / "run.v2.safetensors"
    assert AttentionRecord.load(tmp_path / "run.v2").tokens == record.tokens


@pytest.mark.parametrize("spelling", ["rec.safetensors", "rec"])
def test_load_accepts_the_file_or_its_stem(saved, record, spelling):
    assert_same(AttentionRecord.load(saved.parent / spelling), record)


def test_a_record_with_no_statistics_round_trips(tiny, tmp_path):
    bare = capture(tiny, PROMPTS, CaptureConfig(received=False, entropy=False, distance=False, first_token=False))
    loaded = AttentionRecord.load(bare.save(tmp_path / "bare"))
    assert loaded.layers == bare.layers and loaded.tokens == bare.tokens


# --- the old two-file format -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["old.json", "old.safetensors", "old"])
def test_old_two_file_records_still_load(record, tmp_path, spelling):
    write_version_1(record, record, tmp_path / "old", header=False)
    assert_same(AttentionRecord.load(tmp_path / spelling), record)


def test_an_old_record_prefers_the_metadata_in_its_tensor_file(record, other_record, tmp_path):
    """An interrupted old save left new tensors (header included) beside the old .json: the header wins."""
    write_version_1(record, other_record, tmp_path / "old", header=True)
    assert_same(AttentionRecord.load(tmp_path / "old.json"), record)


def test_new_tensors_beside_old_metadata_are_refused(record, other_record, tmp_path):
    write_version_1(record, other_record, tmp_path / "old", header=False)
    with pytest.raises(ValueError, match=r"old\.safetensors.*3 prompts.*input_ids has 2 rows.*capture it again"):
        AttentionRecord.load(tmp_path / "old.safetensors")


# --- damaged, edited or foreign files: one clear ValueError each -------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_tensor_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def flip_header_byte(path: Path) -> None:
    data = path.read_bytes()
    at = data.index(b"Kenobi")
    path.write_bytes(data[:at] + b"X" + data[at + 1 :])


def shorten_first_prompt(meta: dict) -> dict:
    return {**meta, "tokens": [meta["tokens"][0][:-1], *meta["tokens"][1:]]}


def garbage_header(path: Path) -> None:
    path.write_bytes((16).to_bytes(8, "little") + b"{not json at all" + b"\0" * 64)


def drop_metadata(path: Path) -> None:
    save_file(load_file(str(path)), str(path))


CHANGED = r"rec\.safetensors was changed after it was written \(checksum mismatch\)"
INCONSISTENT = r"rec\.safetensors is inconsistent: "

DAMAGE = {
    "truncated": (truncate, r"cannot read attention record .*rec\.safetensors.*truncated"),
    "garbage bytes": (lambda p: p.write_bytes(b"garbage"), r"cannot read attention record .*rec\.safetensors"),
    "garbage header": (garbage_header, r"cannot read attention record .*rec\.safetensors.*invalid JSON"),
    "flipped tensor byte": (flip_tensor_byte, CHANGED + "; capture it again"),
    "flipped header byte": (flip_header_byte, CHANGED),
    "missing": (lambda p: p.unlink(), r"rec\.safetensors does not exist"),
    "no headscope metadata": (drop_metadata, r"rec\.safetensors is not a headscope attention record"),
    "metadata a list": (lambda p: rewrite_metadata(p, lambda m: [m]),
                        r"rec\.safetensors.*metadata is a list, not a JSON object"),
    "metadata without layers": (lambda p: rewrite_metadata(p, lambda m: {k: v for k, v in m.items() if k != "layers"}),
                                r"rec\.safetensors.*metadata lacks 'layers'"),
    "unknown config key": (lambda p: rewrite_metadata(p, lambda m: {**m, "config": {**m["config"], "colour": "red"}}),
                           r"rec\.safetensors.*unknown capture setting.*colour"),
    "wrong n_heads": (lambda p: rewrite_metadata(p, lambda m: {**m, "n_heads": m["n_heads"] + 1}),
                      INCONSISTENT + r".* 6 heads but the metadata says n_heads=7"),
    "shortened tokens": (lambda p: rewrite_metadata(p, shorten_first_prompt),
                         INCONSISTENT + r"prompt 0 has \d+ tokens in the metadata but \d+ in attention_mask"),
    "layer not listed": (lambda p: rewrite_metadata(p, lambda m: {**m, "layers": m["layers"][:-1]}),
                         INCONSISTENT + r"the metadata lists layers \[0, 1\] but the tensors hold \[0, 1, 2\]"),
    "newer version": (lambda p: rewrite_metadata(p, lambda m: {**m, "version": 99}), r"format version 99"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_record_gives_one_clear_error(saved, damage):
    spoil, message = DAMAGE[damage]
    spoil(saved)
    with pytest.raises(ValueError, match=message) as caught:
        AttentionRecord.load(saved)
    assert type(caught.value) is ValueError
    assert "\n" not in str(caught.value)


def test_a_hand_edited_old_sidecar_is_refused(record, tmp_path):
    write_version_1(record, record, tmp_path / "old", header=False)
    meta = json.loads((tmp_path / "old.json").read_text())
    (tmp_path / "old.json").write_text(json.dumps({**meta, "n_heads": 2}))
    with pytest.raises(ValueError, match=r"old\.json.*inconsistent.*n_heads=2"):
        AttentionRecord.load(tmp_path / "old")


def test_a_tensor_of_the_wrong_shape_is_refused(saved):
    tensors, header = load_file(str(saved)), header_metadata(saved)
    tensors["stats.1.entropy"] = tensors["stats.1.entropy"][:, :, :-1].contiguous()
    save_file(tensors, str(saved), metadata=header)
    with pytest.raises(ValueError, match=r"stats\.1\.entropy has shape \(2, 6, \d+\), expected \(2, 6, \d+\)"):
        AttentionRecord.load(saved)


def test_capture_config_from_dict_names_unknown_settings():
    with pytest.raises(ValueError, match=r"unknown capture setting.*'colour'.*known settings"):
        CaptureConfig.from_dict({"mode": "stats", "colour": "red"})
