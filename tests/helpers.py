"""Builders for tiny random models (distinct odd sizes so shape bugs cannot hide), and a loader for
the repository's scripts (benchmarks, data generators), which are files, not installed packages."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import jaxtyping
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    Gemma3TextConfig,
    Gemma3ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from probe.models.loading import LoadedModel, prepare_tokenizer

SHARED = Path(os.environ.get("HEADSCOPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
"""The project's ``../shared`` folder ($HEADSCOPE_SHARED elsewhere, e.g. a copy on the GPU machine)."""
REPO = Path(__file__).resolve().parents[1]
VOCAB = 113


def _llama() -> torch.nn.Module:
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=84, intermediate_size=50, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=14, max_position_embeddings=160)
    return LlamaForCausalLM(cfg)


def _gemma3() -> torch.nn.Module:
    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=60, intermediate_size=38, num_hidden_layers=4,
                           num_attention_heads=3, num_key_value_heads=1, head_dim=20, max_position_embeddings=160,
                           sliding_window=7, layer_types=["sliding_attention", "full_attention"] * 2,
                           query_pre_attn_scalar=20)
    return Gemma3ForCausalLM(cfg)


def _gpt2() -> torch.nn.Module:
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=60, n_layer=3, n_head=5, n_positions=160)
    return GPT2LMHeadModel(cfg)


def _qwen2() -> torch.nn.Module:
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=90, intermediate_size=44, num_hidden_layers=3,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=160)
    return Qwen2ForCausalLM(cfg)


TINY_BUILDERS = {"llama": _llama, "gemma3": _gemma3, "gpt2": _gpt2, "qwen2": _qwen2}


def build_tiny(arch: str) -> torch.nn.Module:
    torch.manual_seed(1234)
    model = TINY_BUILDERS[arch]()
    model.set_attn_implementation("eager")
    return model.eval()


def gpt2_tokenizer():
    folder = SHARED / "data" / "gpt2-tokenizer"
    # transformers 5: GPT2TokenizerFast(vocab_file=..., merges_file=...) silently builds an empty
    # vocabulary; from_pretrained on the folder reads vocab.json + merges.txt correctly.
    tok = GPT2Tokenizer.from_pretrained(str(folder))
    prepare_tokenizer(tok)
    return tok


def random_batch(batch: int = 3, length: int = 19, pad: tuple[int, ...] = (0, 4, 9)):
    """Random token ids with left padding of ``pad[i]`` tokens in row ``i``."""
    ids = torch.randint(1, VOCAB, (batch, length))
    mask = torch.ones_like(ids)
    for row, n in enumerate(pad[:batch]):
        mask[row, :n] = 0
    return ids, mask


def tiny_loaded(arch: str = "llama", name: str = "tiny") -> LoadedModel:
    """A tiny random model with a tokenizer whose ids are folded into the model's vocabulary."""
    model = build_tiny(arch)
    tok = gpt2_tokenizer()
    model.resize_token_embeddings(len(tok))
    return LoadedModel(name=name, hf=model, tokenizer=tok)


def tiny_loaded_varied(lm_head_scale: float = 1.0, seed: int = 5) -> LoadedModel:
    """The tiny Llama with unit-scale embeddings (re-drawn), so its hidden states, greedy tokens
    and token entropies vary along a response (the plain one repeats one token)."""
    loaded = tiny_loaded("llama")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (loaded.hf.model.embed_tokens.weight, loaded.hf.lm_head.weight):
            weight.copy_(torch.randn(weight.shape, generator=generator))
        loaded.hf.lm_head.weight.mul_(lm_head_scale)
    return loaded


def load_script(path: Path):
    """The module in the script file ``path`` (relative to the repository root or absolute).

    It is registered in ``sys.modules`` under its file's stem while it runs, since dataclasses
    look their module up there."""
    path = REPO / path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op returns (memory tests)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@contextlib.contextmanager
def untyped():
    """Call the API as users do: the suite type-checks every call (jaxtyping + beartype), which
    would stop a wrongly typed argument before headscope's own check could answer it."""
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)


@contextlib.contextmanager
def one_torch_thread():
    """Torch on one thread inside the block: tiny matmuls only contend for threads (20x slower on a
    busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
