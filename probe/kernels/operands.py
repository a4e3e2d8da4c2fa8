"""What every K1 / K2 launch prepares the same way, Triton or Gluon: outputs, key bias, tables.

Context:
    :func:`probe.kernels.launch.flash_forward` and :func:`~probe.kernels.launch.column_stats`
    run the Triton kernels or, on Hopper, the Gluon ones (:mod:`probe.kernels.gluon`); both
    kinds of launch take their arguments as built here, so the two give the same outputs and
    a launch module never reaches into another for them.

    * :class:`K1Result`: K1's outputs, whichever kernel wrote them.
    * :func:`k1_outputs`: K1's output buffers (statistics not asked for alias the log-sum-exp,
      so the kernel always gets a pointer).
    * :func:`key_bias_args`: the key bias in base-2 logit units, broadcast, with its strides.
    * :func:`expand_table`: a block table's leading ``(1, 1)`` dims broadcast to
      ``(batch, head)`` as stride-0 views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probe.kernels.triton_kernels import LOG2E


@dataclass(frozen=True)
class K1Result:
    output: Float[Tensor, "batch q head d"]
    lse: Float[Tensor, "batch head q"]
    entropy: Float[Tensor, "batch head q"] | None
    distance: Float[Tensor, "batch head q"] | None
    act_weights: Float[Tensor, "2 batch head q"] | None = None  # ACT's row factors (own keys, rest)
    lookback: Float[Tensor, "batch head q"] | None = None


def k1_outputs(query: Float[Tensor, "batch head q d"], entropy: bool, distance: bool,
               head_scale: Float[Tensor, " head"] | None):
    """K1's output tensors ``(out [b, q, h, d], lse, entropy, distance, head scale)``; statistics
    not asked for (and a missing head scale) alias ``lse`` so the kernel always gets a pointer."""
    batch, heads, n_q, head_dim = query.shape
    dev = query.device
    out = torch.empty(batch, n_q, heads, head_dim, device=dev, dtype=query.dtype)
    f32 = lambda: torch.empty(batch, heads, n_q, device=dev, dtype=torch.float32)  # noqa: E731
    lse = f32()
    ent = f32() if entropy else lse
    dist = f32() if distance else lse
    hscale = head_scale.to(device=dev, dtype=torch.float32).contiguous() if head_scale is not None else lse
    return out, lse, ent, dist, hscale


def key_bias_args(bias: Float[Tensor, "_ _ k"] | None, batch: int, heads: int, n_kv: int,
                  dev) -> tuple[Tensor, tuple[int, int]]:
    """The key bias in base-2 logit units (x log2 e, once here instead of per tile), broadcast to
    ``[batch, head, key]``, and its (batch, head) strides; a 1-element placeholder without a bias."""
    if bias is None:
        return torch.empty(1, device=dev, dtype=torch.float32), (0, 0)
    bias = (bias.to(device=dev, dtype=torch.float32) * LOG2E).contiguous()
    bias = bias.expand(batch, heads, n_kv)
    return bias, (bias.stride(0), bias.stride(1))


def expand_table(num: Int[Tensor, "_ _ blocks"], idx: Int[Tensor, "_ _ blocks width"], batch: int,
                 heads: int) -> tuple[Tensor, Tensor]:
    """Broadcast a table's leading (1, 1) dims to (batch, heads) as stride-0 views."""
    return num.expand(batch, heads, -1), idx.expand(batch, heads, -1, -1)
