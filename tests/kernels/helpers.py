"""Shared builders for the kernel tests: random inputs, masks and error measures."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from probe.attention.mask import LazyMask
from probe.attention.spec import LayerEdit


def qkv(batch, heads, kv_heads, n, d, dtype=torch.float32, device="cpu", n_q=None):
    n_q = n if n_q is None else n_q
    q = torch.randn(batch, heads, n_q, d, dtype=dtype, device=device)
    k = torch.randn(batch, kv_heads, n, d, dtype=dtype, device=device)
    v = torch.randn(batch, kv_heads, n, d, dtype=dtype, device=device)
    return q, k, v


def left_padding(batch: int, n: int, pads: list[int]) -> torch.Tensor:
    """True for real tokens; row b starts with ``pads[b]`` padding tokens."""
    pos = torch.arange(n)[None, :]
    return pos >= torch.tensor(pads)[:, None]


def lazy(batch, n_q, n_kv, *, causal=True, padding=None, window=None, device="cpu") -> LazyMask:
    from transformers.masking_utils import (
        and_masks,
        bidirectional_mask_function,
        causal_mask_function,
        sliding_window_overlay,
    )

    fn = causal_mask_function if causal else bidirectional_mask_function
    if window is not None:
        fn = and_masks(sliding_window_overlay(window), causal_mask_function)
    return LazyMask(batch, n_q, n_kv, q_offset=n_kv - n_q, mask_function=fn, padding=padding, device=device,
                    causal=causal, sliding_window=window)


def random_edit(batch, heads, n, *, bias=True, head_scale=True) -> LayerEdit:
    return LayerEdit(
        key_bias=torch.randn(batch, heads, n) if bias else None,
        head_scale=torch.rand(heads) + 0.5 if head_scale else None,
    )


def rel_err(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    """||a - b|| / ||b|| over finite entries of b (NaN positions must agree)."""
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.equal(torch.isnan(a), torch.isnan(b)), "NaN positions differ"
    keep = ~torch.isnan(b)
    num = (a[keep] - b[keep]).norm()
    den = b[keep].norm()
    return float(num / den) if den > 0 else float(num)




def _language_objects() -> list:
    import triton.language as tl
    import triton.language.core as core
    from triton.experimental.gluon import language as gl

    return [tl, core, tl.math, tl.standard, gl, core.tensor, core.dtype, core.constexpr]


def _language_snapshot() -> dict:
    return {(id(obj), key): (obj, value) for obj in _language_objects() for key, value in list(vars(obj).items())}


# Triton's CPU interpreter patches triton.language for good the first time it runs a kernel; a
# later sm_90a build in the same process then fails ("ir.value has no attribute dtype"). Taken
# when this module is imported (collection, before any test runs a kernel).
_PRISTINE_LANGUAGE = _language_snapshot()


@contextlib.contextmanager
def _pristine_language():
    """triton.language as it was before any interpreted kernel ran, for the duration."""
    now = _language_snapshot()
    changed = {k: v for k, v in _PRISTINE_LANGUAGE.items() if now.get(k, (None, None))[1] is not v[1]}
    for (_, key), (obj, value) in changed.items():
        setattr(obj, key, value)
    try:
        yield
    finally:
        for (_, key), (obj, _) in changed.items():
            if (id(obj), key) in now:
                setattr(obj, key, now[(id(obj), key)][1])


def builds_without_a_gpu():
    """Marker for the sm_90a build tests: they need Triton's ptxas, and no GPU (on a GPU machine
    Triton sends the small helper kernels the captured call still launches to the CUDA driver,
    which refuses their CPU tensors; the gpu tests run the kernels themselves there)."""
    import pytest
    import triton
    from pathlib import Path

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    return pytest.mark.skipif(not ptxas.exists() or torch.cuda.is_available(),
                              reason="builds for sm_90a without a GPU (needs Triton's ptxas)")


def build_for_sm90(module, name: str, call) -> str:
    """PTX of the Gluon kernel ``module.name`` as ``call()`` would launch it, built for sm_90a
    without a GPU (the launch is captured and compiled instead of run)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type

    kernel = getattr(module, name)
    built = {}

    class Capture:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                values = dict(zip(kernel.arg_names, args), **kwargs)
                constexprs = {p.name: values[p.name] for p in kernel.params if p.is_constexpr}
                signature = {n: "constexpr" if n in constexprs else mangle_type(values[n]) for n in kernel.arg_names}
                with _pristine_language():
                    built["k"] = triton.compile(GluonASTSource(kernel, signature, constexprs),
                                                target=GPUTarget("cuda", 90, 32),
                                                options={"num_warps": kwargs["num_warps"]})
            return launch

    setattr(module, name, Capture())
    try:
        call()
    finally:
        setattr(module, name, kernel)
    return built["k"].asm["ptx"]


def load_benchmark_script(name: str):
    """The module ``benchmarks/kernels/<name>.py``, loaded from its file."""
    from tests.helpers import load_script

    return load_script(Path("benchmarks") / "kernels" / f"{name}.py")
