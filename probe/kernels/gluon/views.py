"""The Gluon kernels' operands: 2-D row views of ``[batch, head, token, d]`` tensors and their TMA descriptors.

Context:
    The Gluon kernels (:mod:`probe.kernels.gluon`) read Q, K and V through 2-D tensor
    descriptors over a row-major view of the 4-D tensors: ``[B*H*N, d]`` when heads are
    contiguous blocks, ``[B*N, H*d]`` for HF's ``[batch, token, head, d]`` memory
    (:func:`row_view`). Both launches (K1, :mod:`probe.kernels.gluon.k1_launch`; K2,
    :mod:`probe.kernels.gluon.k2_launch`) build their operands here; ``WS_ROWS`` is the rows
    (queries in K1, keys in K2) one consumer warpgroup of the warp-specialised kernels owns,
    the height of their descriptors' boxes.

    Descriptors and layouts come from ``triton.experimental.gluon``, imported on first use, so
    this module imports with any Triton.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

WS_ROWS = 64  # query rows per consumer warpgroup of the warp-specialised kernel


def views_fit(query: Tensor, key: Tensor, value: Tensor) -> bool:
    """Every operand has a 2-D row view."""
    return all(row_view(t) is not None for t in (query, key, value))


def row_view(t: Tensor) -> tuple[Tensor, int, int, int] | None:
    """A 2-D row-major view of ``[batch, head, token, d]`` and how (b, h, token) map onto it.

    Returns ``(view, row_per_batch, row_per_head, col_per_head)`` so that token ``n`` of
    (b, h) is row ``b*row_per_batch + h*row_per_head + n``, columns from ``h*col_per_head``.
    None when neither ``[B*H*N, d]`` nor ``[B*N, H*d]`` describes the memory.
    """
    batch, heads, n, d = t.shape
    sb, sh, sn, sd = t.stride()
    if sd != 1 or t.data_ptr() % 16 or (sn * t.element_size()) % 16:
        return None
    if sh == n * sn and (batch == 1 or sb == heads * sh) and sn == d:  # [B, H, N, d] contiguous
        return torch.as_strided(t, (batch * heads * n, d), (sn, 1)), heads * n, n, 0
    if sh == d and (batch == 1 or sb == n * sn) and sn == heads * d:  # HF's [B, N, H, d] memory
        return torch.as_strided(t, (batch * n, heads * d), (sn, 1)), n, 0, d
    return None


def descriptor(view: Tensor, rows: int, head_dim: int):
    """A TMA descriptor over a :func:`row_view` loading ``(rows, head_dim)`` boxes."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    return TensorDescriptor.from_tensor(view, [rows, head_dim], shared_layout((rows, head_dim), view.dtype))


@functools.lru_cache(maxsize=None)
def shared_layout(block: tuple[int, ...], dtype: torch.dtype | None = None):
    """The shared-memory layout of a TMA block: the swizzled default for a 2-D ``dtype`` tile, or
    the unswizzled 1-D float32 layout when ``dtype`` is None. Cached: building one took tens of
    microseconds of host time on every launch."""
    from triton.experimental.gluon import language as gl

    if dtype is None:
        return gl.NVMMASharedLayout(0, 32, rank=1)
    return gl.NVMMASharedLayout.get_default_for(list(block), gl.bfloat16 if dtype == torch.bfloat16 else gl.float16)
