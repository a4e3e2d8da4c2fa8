"""The ``e2e`` section: Llama-3-8B attention shapes end to end, statistics kept in every layer.

A random-weight Llama-3-8B-shaped ``LlamaModel`` (bf16) with the kernels' backend in every layer
at 32k and 128k tokens, against HF's eager attention with ``output_attentions``; then the
attention alone, 32 layers, at 32k and 128k. Not in the default run (about a minute of GPU time
and ~60 GiB of memory).
"""

from __future__ import annotations

import time

import torch

from benchmarks.kernels.common import BF16, DEV, rand, record
from probe.attention.mask import LazyMask
from probe.attention.spec import StatRequest
from probe.kernels.backend import triton_attention


def section_e2e_layers(n: int, layers: int = 32):
    """Llama-3-8B attention shapes, every layer, statistics kept; random q/k/v (two sets reused)."""
    h, kvh, d = 32, 8, 128
    sets = [(rand(1, h, n, d), rand(1, kvh, n, d), rand(1, kvh, n, d)) for _ in range(2)]
    mask = LazyMask(1, n, n, device=DEV, causal=True)
    want = StatRequest(received=True, entropy=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated()
    kept = []
    start = time.perf_counter()
    for layer in range(layers):
        q, k, v = sets[layer % 2]
        r = triton_attention(q, k, v, mask, want=want)
        kept.append({key: r.stats[key] for key in ("entropy", "received_sum", "received_mean")})
    torch.cuda.synchronize()
    secs = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**30
    stats_gib = sum(t.numel() * 4 for s in kept for t in s.values()) / 2**30
    record("e2e-attention-layers", n=n, layers=layers, seconds=secs, peak_extra_gib=peak, stats_gib=stats_gib,
           eager_pattern_gib_per_layer=h * n * n * 4 / 2**30)


def section_e2e_model(n: int):
    """A random-weight Llama-3-8B-shaped LlamaModel (bf16) with our backend in every layer."""
    from transformers import AttentionInterface, LlamaConfig, LlamaModel
    from transformers.masking_utils import AttentionMaskInterface

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0)
    stats: dict[int, dict] = {}

    def attn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        mask = LazyMask(query.shape[0], query.shape[2], key.shape[2], device=query.device, causal=True)
        r = triton_attention(query, key, value, mask, scaling=scaling, want=StatRequest(received=True, entropy=True))
        stats[module.layer_idx] = {k: r.stats[k] for k in ("entropy", "received_mean")}
        return r.output, None

    AttentionInterface.register("hs_triton", attn)
    AttentionMaskInterface.register("hs_triton", lambda *a, **k: None)
    torch.set_default_dtype(BF16)
    with torch.device(DEV):
        model = LlamaModel(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 4 * n), device=DEV)
    weights_gib = torch.cuda.memory_allocated() / 2**30
    for impl in ("hs_triton", "eager"):
        model.config._attn_implementation = impl
        for length in ((n, 4 * n) if impl == "hs_triton" else (4096, 8192, n)):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            try:
                with torch.no_grad():
                    model(ids[:, :length], output_attentions=impl == "eager")
                torch.cuda.synchronize()
                start = time.perf_counter()
                with torch.no_grad():
                    model(ids[:, :length], output_attentions=impl == "eager")
                torch.cuda.synchronize()
                secs = time.perf_counter() - start
                record("e2e-model", impl=impl, n=length, seconds=secs, weights_gib=weights_gib,
                       peak_gib=torch.cuda.max_memory_allocated() / 2**30, layers_with_stats=len(stats))
            except torch.OutOfMemoryError:
                record("e2e-model", impl=impl, n=length, result="OOM",
                       peak_gib=torch.cuda.max_memory_allocated() / 2**30)
            torch.cuda.empty_cache()
    del model
    torch.cuda.empty_cache()


def section_e2e():
    section_e2e_model(32768)
    section_e2e_layers(32768)
    section_e2e_layers(131072)
