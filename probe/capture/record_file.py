"""The attention record's file: one safetensors file whose header describes it, read and checked.

Context:
    :class:`~probe.capture.record.AttentionRecord` saves itself through :func:`write_record` and
    loads through :func:`read_stored`, :func:`check_metadata`, :func:`check_config`,
    :func:`checked_fields` and :func:`check_digest` (the layout and the checks are described in
    :mod:`probe.capture.record`). Every check raises one ``ValueError`` naming the file, the
    problem and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from probe.capture.config import CaptureConfig
from probe.files import atomic_path

FORMAT = "headscope.attention_record"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
METADATA_KEY = "headscope"
DIGEST_KEY = "headscope.digest"
SUFFIX = ".safetensors"
REQUIRED_METADATA = {"format": str, "version": int, "model": str, "config": dict, "tokens": list, "n_heads": int,
                     "layers": list}
JSON_KINDS = {str: "a string", int: "an integer", dict: "a JSON object", list: "a JSON list"}

# Axes of each stored tensor (probe.attention.spec); "query"/"key" span input_ids' width.
PER_QUERY = ("batch", "head", "query")
PER_KEY = ("batch", "head", "key")
BLOCKS = ("batch", "head", "block", "block")
STAT_AXES = {
    "lse": PER_QUERY, "entropy": PER_QUERY, "distance": PER_QUERY, "first_token": PER_QUERY,
    "received_sum": PER_KEY, "received_mean": PER_KEY, "received_max": PER_KEY,
    "visible_count": ("batch", "key"),
    "block_sum": BLOCKS, "block_max": BLOCKS,
    "lookback": PER_QUERY, "band_sum": PER_KEY, "band_mean": PER_KEY, "band_count": ("batch", "key"),
    "span_mass": PER_QUERY,
}
PATTERN_AXES = ("batch", "head", "query", "key")
HEAD_OUTPUT_AXES = ("batch", "position", "head", "head_dim")
LOGIT_AXES = ("batch", "vocab")
RECAPTURE = "capture it again"


@dataclass(frozen=True)
class StoredRecord:
    """A record's file as read, not yet checked.

    Attributes:
        source: how errors name it (the tensor file, plus the ``.json`` for old records).
        meta_text: the JSON description.
        digest: the stored checksum (None in version-1 records).
        tensors: every tensor, by key.
    """

    source: str
    meta_text: str
    digest: str | None
    tensors: dict[str, Tensor]


def record_file(path: str | os.PathLike) -> Path:
    """The ``.safetensors`` path of a record given as that file, its stem, or an old ``.json``."""
    path = Path(path)
    if path.suffix == SUFFIX:
        return path
    if path.suffix == ".json":
        return path.with_suffix(SUFFIX)
    return path.with_name(path.name + SUFFIX)


def content_digest(meta_text: str, tensors: dict[str, Tensor]) -> str:
    """``blake2b:<hex>`` over the description and every tensor's key, dtype, shape and bytes (sorted keys)."""
    digest = hashlib.blake2b(digest_size=32)
    digest.update(meta_text.encode("utf-8"))
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"\0{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())
    return f"blake2b:{digest.hexdigest()}"


def read_stored(path: str | os.PathLike) -> StoredRecord:
    """Read a record's tensors and description (header first, else an old ``.json`` beside it)."""
    given, tensor_path = Path(path), record_file(path)
    if not tensor_path.exists() and given.is_file() and given.suffix != ".json":
        tensor_path = given  # a record renamed to another suffix
    if not tensor_path.exists():
        raise ValueError(f"attention record {tensor_path} does not exist; pass the .safetensors file "
                         "that `headscope capture --out` or AttentionRecord.save wrote")
    if not tensor_path.is_file():
        raise ValueError(f"attention record {tensor_path} is a folder, not a file; pass the .safetensors file "
                         "that `headscope capture --out` or AttentionRecord.save wrote")
    try:
        with safe_open(str(tensor_path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"cannot read attention record {tensor_path}: it is not a complete safetensors file ({err}), "
                         "so it is truncated, damaged or not a record; copy it again or " + RECAPTURE) from err
    if METADATA_KEY in header:
        return StoredRecord(str(tensor_path), header[METADATA_KEY], header.get(DIGEST_KEY), tensors)
    return read_old_sidecar(tensor_path, tensors)


def read_old_sidecar(tensor_path: Path, tensors: dict[str, Tensor]) -> StoredRecord:
    """A version-1 record whose description is only in ``NAME.json`` beside the tensors."""
    json_path = tensor_path.with_suffix(".json")
    if not json_path.is_file():
        raise ValueError(f"{tensor_path} is not a headscope attention record: its header has no {METADATA_KEY!r} "
                         f"metadata and there is no {json_path.name} beside it; pass a file written by "
                         "`headscope capture` or AttentionRecord.save")
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read attention record {tensor_path} + {json_path}: {err}; " + RECAPTURE) from err
    return StoredRecord(f"{tensor_path} + {json_path}", text, None, tensors)


def check_metadata(stored: StoredRecord) -> dict:
    """The parsed description, with its format, version and field types checked."""
    source = stored.source
    try:
        meta = json.loads(stored.meta_text)
    except ValueError as err:
        raise ValueError(f"attention record {source}: its metadata is not valid JSON ({err}); {RECAPTURE}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"attention record {source}: its metadata is a {type(meta).__name__}, not a JSON object; "
                         + RECAPTURE)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{source} is not a headscope attention record (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r}); pass a file written by `headscope capture` or AttentionRecord.save")
    if meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"attention record {source} has format version {meta.get('version')!r}; this headscope reads "
                         f"versions {list(READABLE_VERSIONS)}: upgrade headscope or {RECAPTURE} with this one")
    check_metadata_fields(meta, source)
    return meta


def check_metadata_fields(meta: dict, source: str) -> None:
    """Every field of the description is present, of its JSON type, and sensible (tokens, layers, heads)."""
    missing = [key for key in REQUIRED_METADATA if key not in meta]
    if missing:
        raise ValueError(f"attention record {source}: its metadata lacks {', '.join(map(repr, missing))}; {RECAPTURE}")
    for key, kind in REQUIRED_METADATA.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ValueError(f"attention record {source}: its metadata's {key!r} is {meta[key]!r:.60}, expected "
                             f"{JSON_KINDS[kind]}; {RECAPTURE}")
    if not all(isinstance(tokens, list) and all(isinstance(t, str) for t in tokens) for tokens in meta["tokens"]):
        raise ValueError(f"attention record {source}: its metadata's 'tokens' must be one list of strings per prompt; "
                         + RECAPTURE)
    layers = meta["layers"]
    if not all(isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0 for layer in layers) \
            or len(set(layers)) != len(layers):
        raise ValueError(f"attention record {source}: its metadata's 'layers' {layers} must be distinct layer "
                         f"indices; {RECAPTURE}")
    if meta["n_heads"] < 1:
        raise ValueError(f"attention record {source}: its metadata says n_heads={meta['n_heads']}; {RECAPTURE}")


def check_config(meta: dict, source: str) -> CaptureConfig:
    """The capture settings of the description, or one error naming the bad setting."""
    try:
        return CaptureConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        reason = " ".join(str(err).split())  # one line, whatever raised it
        raise ValueError(f"attention record {source}: its capture settings are invalid ({reason}); "
                         + RECAPTURE) from err


def checked_fields(meta: dict, config: CaptureConfig, stored: StoredRecord) -> dict:
    """The record's fields from its checked description and its tensors (keys, dtypes, layers,
    prompts and shapes checked here): the keyword arguments of ``AttentionRecord``."""
    tensors = dict(stored.tensors)
    stats: dict[int, dict[str, Tensor]] = {layer: {} for layer in meta["layers"]}
    patterns, head_outputs = {}, {}
    base = {key: tensors.pop(key, None) for key in ("input_ids", "attention_mask", "last_logits", "image_mask")}
    for key in ("input_ids", "attention_mask"):
        if base[key] is None:
            raise _inconsistent(stored.source, f"it has no {key!r} tensor")
    for key, value in tensors.items():
        kind, layer, name = parse_key(key, stored.source)
        if kind == "stats":
            stats.setdefault(layer, {})[name] = value
        else:
            (patterns if kind == "patterns" else head_outputs)[layer] = value
    check_dtypes(stored.source, base, stats, patterns, head_outputs)
    check_layers(meta["layers"], stats, patterns, head_outputs, stored.source)
    check_prompts(meta["tokens"], base["input_ids"], base["attention_mask"], stored.source)
    check_image_mask(base["image_mask"], base["input_ids"], base["attention_mask"], stored.source)
    check_shapes(meta, config, base, stats, patterns, head_outputs, stored.source)
    return dict(
        model=meta["model"], config=config, tokens=meta["tokens"], n_heads=meta["n_heads"],
        input_ids=base["input_ids"], attention_mask=base["attention_mask"], last_logits=base["last_logits"],
        stats=stats, patterns=patterns, head_outputs=head_outputs, image_mask=base["image_mask"],
    )


def parse_key(key: str, source: str) -> tuple[str, int, str]:
    """``stats.L.NAME`` / ``patterns.L`` / ``head_outputs.L`` -> (kind, layer, name)."""
    kind, _, rest = key.partition(".")
    layer, _, name = rest.partition(".") if kind == "stats" else (rest, "", "")
    if kind not in ("stats", "patterns", "head_outputs") or not (layer.isascii() and layer.isdigit()):
        raise _inconsistent(source, f"it holds a tensor {key!r} that is not part of an attention record")
    if kind == "stats" and name not in STAT_AXES:
        raise _inconsistent(source, f"it holds an unknown statistic {name!r} ({key}); known: {', '.join(STAT_AXES)}")
    return kind, int(layer), name


def check_dtypes(source: str, base: dict, stats: dict, patterns: dict, head_outputs: dict) -> None:
    """Token ids and mask are integers; every other tensor is floating point."""
    for key in ("input_ids", "attention_mask"):
        value = base[key]
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise _inconsistent(source, f"{key} has dtype {value.dtype}, expected an integer type")
    floats = {"last_logits": base["last_logits"]} if base["last_logits"] is not None else {}
    floats.update({f"stats.{layer}.{name}": v for layer, named in stats.items() for name, v in named.items()})
    floats.update({f"patterns.{layer}": v for layer, v in patterns.items()})
    floats.update({f"head_outputs.{layer}": v for layer, v in head_outputs.items()})
    for key, value in floats.items():
        if not value.dtype.is_floating_point:
            raise _inconsistent(source, f"{key} has dtype {value.dtype}, expected a floating-point type")


def check_layers(listed: list[int], stats: dict, patterns: dict, head_outputs: dict, source: str) -> None:
    """The layers of the tensors are the listed ones (none at all when nothing per layer was asked)."""
    present = sorted({layer for layer, named in stats.items() if named} | set(patterns) | set(head_outputs))
    if present and present != sorted(listed):
        raise _inconsistent(source, f"the metadata lists layers {sorted(listed)} but the tensors hold {present}")


def check_shapes(meta: dict, config: CaptureConfig, base: dict, stats: dict, patterns: dict, head_outputs: dict,
                 source: str) -> None:
    """Every tensor's shape against the prompts, the heads and the settings of the description."""
    batch, width = base["input_ids"].shape
    n_heads = meta["n_heads"]
    sizes = {"batch": batch, "head": n_heads, "query": width, "key": width,
             "position": len(config.head_output_positions)}
    for layer, named in stats.items():
        for name, value in named.items():
            check_axes(f"stats.{layer}.{name}", value, STAT_AXES[name], sizes, n_heads, source)
    for layer, value in patterns.items():
        check_axes(f"patterns.{layer}", value, PATTERN_AXES, sizes, n_heads, source)
    for layer, value in head_outputs.items():
        check_axes(f"head_outputs.{layer}", value, HEAD_OUTPUT_AXES, sizes, n_heads, source)
    if base["last_logits"] is not None:
        check_axes("last_logits", base["last_logits"], LOGIT_AXES, sizes, n_heads, source)


def check_prompts(tokens: list[list[str]], ids: Tensor, mask: Tensor, source: str) -> None:
    """batch = len(tokens) = input_ids rows = attention_mask rows; each prompt's tokens = its 1s, left-padded."""
    if ids.ndim != 2:
        raise _inconsistent(source, f"input_ids has shape {tuple(ids.shape)}, expected (batch, pos)")
    if len(tokens) != ids.shape[0]:
        raise _inconsistent(source, f"the metadata lists {len(tokens)} prompts but input_ids has {ids.shape[0]} rows")
    if mask.shape != ids.shape:
        raise _inconsistent(source, f"attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}")
    if not ((mask == 0) | (mask == 1)).all():
        raise _inconsistent(source, "attention_mask holds values other than 0 and 1")
    for prompt, (words, ones) in enumerate(zip(tokens, mask.sum(1).tolist())):
        if len(words) != ones:
            raise _inconsistent(source, f"prompt {prompt} has {len(words)} tokens in the metadata but {ones} in "
                                        "attention_mask")
        if ones and not mask[prompt, ids.shape[1] - ones :].all():
            raise _inconsistent(source, f"attention_mask row {prompt} is not left-padded")


def check_image_mask(image_mask: Tensor | None, ids: Tensor, mask: Tensor, source: str) -> None:
    """A VLM capture's image mask: boolean, shaped like input_ids, True only on real tokens."""
    if image_mask is None:
        return
    if image_mask.dtype != torch.bool:
        raise _inconsistent(source, f"image_mask has dtype {image_mask.dtype}, expected bool")
    if image_mask.shape != ids.shape:
        raise _inconsistent(source, f"image_mask has shape {tuple(image_mask.shape)} but input_ids {tuple(ids.shape)}")
    if bool((image_mask & (mask == 0)).any()):
        raise _inconsistent(source, "image_mask marks padding positions as image tokens")


def check_axes(key: str, value: Tensor, axes: tuple[str, ...], sizes: dict[str, int], n_heads: int,
               source: str) -> None:
    """``value``'s shape against ``axes``: named sizes must match, a repeated free axis must repeat its size."""
    if value.ndim != len(axes):
        raise _inconsistent(source, f"{key} has {value.ndim} dimensions, expected {len(axes)} ({', '.join(axes)})")
    if "head" in axes and value.shape[axes.index("head")] != n_heads:
        raise _inconsistent(source, f"{key} has {value.shape[axes.index('head')]} heads but the metadata says "
                                    f"n_heads={n_heads}")
    expected: dict[str, int] = dict(sizes)
    want = tuple(expected.setdefault(axis, actual) for axis, actual in zip(axes, value.shape))
    if tuple(value.shape) != want:
        raise _inconsistent(source, f"{key} has shape {tuple(value.shape)}, expected {want} ({', '.join(axes)})")


def check_digest(stored: StoredRecord, meta: dict) -> None:
    """From version 2 on, the stored checksum must match the description and the tensors."""
    if meta["version"] < 2:
        return
    if stored.digest is None:
        raise ValueError(f"attention record {stored.source} has no checksum ({DIGEST_KEY!r} is missing from its "
                         f"header), so it may have been changed after it was written; {RECAPTURE}")
    if content_digest(stored.meta_text, stored.tensors) != stored.digest:
        raise ValueError(f"attention record {stored.source} was changed after it was written (checksum mismatch); "
                         + RECAPTURE)


def _inconsistent(source: str, problem: str) -> ValueError:
    return ValueError(f"attention record {source} is inconsistent: {problem}; it was edited or mixed up with "
                      f"another capture's files, {RECAPTURE}")


def write_record(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict) -> Path:
    """Write ``tensors`` with ``meta`` and its digest in the header to one file, atomically."""
    target = record_file(path)
    meta_text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    header = {METADATA_KEY: meta_text, DIGEST_KEY: content_digest(meta_text, tensors)}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return target
