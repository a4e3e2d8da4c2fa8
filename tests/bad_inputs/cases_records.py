"""Bad-input rows: records.

Each row builds a damaged, edited or mismatched copy of ``env.record`` under ``env.tmp`` and reads
it through :meth:`probe.AttentionRecord.load` or through ``headscope dashboard --no-model --record``
(which reads the record before it starts a server).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from probe.capture.record import AttentionRecord
from tests.bad_inputs.table import Case, Env, api, cli


def copy(env: Env, name: str = "rec.safetensors") -> Path:
    target = env.tmp / name
    shutil.copyfile(env.record, target)
    return target


def header(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def edited(env: Env, edit) -> Path:
    """A copy whose header description went through ``edit`` (checksum left as it was)."""
    path = copy(env)
    tensors, meta = load_file(str(path)), header(path)
    meta["headscope"] = json.dumps(edit(json.loads(meta["headscope"])))
    save_file(tensors, str(path), metadata=meta)
    return path


def truncated(env: Env) -> Path:
    path = copy(env)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def garbage(env: Env) -> Path:
    path = env.tmp / "garbage.safetensors"
    path.write_bytes(b"this is not a safetensors file at all")
    return path


def garbage_header(env: Env) -> Path:
    path = env.tmp / "header.safetensors"
    path.write_bytes((16).to_bytes(8, "little") + b"{not json at all" + bytes(64))
    return path


def flipped(env: Env, at) -> Path:
    path = copy(env)
    data = bytearray(path.read_bytes())
    data[at(bytes(data))] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def flipped_tensor_byte(env: Env) -> Path:
    return flipped(env, lambda data: len(data) - 3)


def flipped_header_byte(env: Env) -> Path:
    return flipped(env, lambda data: data.index(b"Hello"))


def not_a_record(env: Env) -> Path:
    path = env.tmp / "weights.safetensors"
    save_file({"weight": torch.zeros(2, 3)}, str(path))
    return path


def old_pair(env: Env, edit_json) -> Path:
    """The old two-file format: header-less tensors beside a ``.json`` that ``edit_json`` rewrote."""
    path = env.tmp / "old.safetensors"
    save_file(load_file(str(env.record)), str(path))
    meta = {**json.loads(header(env.record)["headscope"]), "version": 1}
    path.with_suffix(".json").write_text(edit_json(json.dumps(meta)))
    return path


def another_capture(text: str) -> str:
    """The description of a capture of three prompts (the tensors hold two)."""
    meta = json.loads(text)
    return json.dumps({**meta, "tokens": [*meta["tokens"], ["Bye"]]})


def load(build):
    return lambda env: AttentionRecord.load(build(env))


def dashboard(build):
    return lambda env: ["dashboard", "--no-model", "--record", str(build(env))]


CASES: list[Case] = [
    api("record-missing", lambda env: AttentionRecord.load(env.tmp / "nope.safetensors"), "does not exist"),
    api("record-missing-stem", lambda env: AttentionRecord.load(env.tmp / "nope"), "does not exist"),
    api("record-truncated", load(truncated), "truncated"),
    api("record-garbage-bytes", load(garbage), "not a complete safetensors file"),
    api("record-garbage-header", load(garbage_header), "not a complete safetensors file"),
    api("record-not-a-record", load(not_a_record), "not a headscope attention record"),
    api("record-metadata-list", load(lambda env: edited(env, lambda meta: [meta])), "not a JSON object"),
    api("record-metadata-without-layers",
        load(lambda env: edited(env, lambda meta: {k: v for k, v in meta.items() if k != "layers"})), "lacks 'layers'"),
    api("record-unknown-config-key",
        load(lambda env: edited(env, lambda meta: {**meta, "config": {**meta["config"], "colour": "red"}})),
        "unknown capture setting"),
    api("record-wrong-n-heads", load(lambda env: edited(env, lambda meta: {**meta, "n_heads": meta["n_heads"] + 1})),
        "n_heads"),
    api("record-shortened-tokens",
        load(lambda env: edited(env, lambda meta: {**meta, "tokens": [meta["tokens"][0][:-1], *meta["tokens"][1:]]})),
        "tokens in the metadata"),
    api("record-newer-version", load(lambda env: edited(env, lambda meta: {**meta, "version": 3})), "format version 3"),
    api("record-flipped-tensor-byte", load(flipped_tensor_byte), "checksum mismatch"),
    api("record-flipped-header-byte", load(flipped_header_byte), "checksum mismatch"),
    api("record-old-pair-mismatch", load(lambda env: old_pair(env, another_capture)), "3 prompts"),
    api("record-old-json-garbage", load(lambda env: old_pair(env, lambda text: "{not json")), "not valid JSON"),
    api("record-old-json-a-list", load(lambda env: old_pair(env, lambda text: "[1, 2]")), "not a JSON object"),
    cli("dashboard-record-missing", lambda env: ["dashboard", "--no-model", "--record", str(env.tmp / "nope")],
        "does not exist"),
    cli("dashboard-record-truncated", dashboard(truncated), "truncated"),
    cli("dashboard-record-flipped-byte", dashboard(flipped_tensor_byte), "checksum mismatch"),
    cli("dashboard-record-old-pair-mismatch", dashboard(lambda env: old_pair(env, another_capture)), "3 prompts"),
]
