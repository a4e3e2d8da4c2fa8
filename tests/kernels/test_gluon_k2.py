"""The Gluon K2 (Hopper, warp-specialised column pass): dispatch on CPU, its sm_90a build without
a GPU, and its numbers against the float32 materialised reference and the Triton K2 on a GPU.

Gluon kernels do not run in Triton's CPU interpreter, so CI checks the sm_90a build (producer
warp, asynchronous products overlapping the reductions, no spills); ``pytest -m gpu`` on the
lent H100 checks the statistics.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

triton = pytest.importorskip("triton")

from probe.kernels.gluon import k2_ws  # noqa: E402
from probe.kernels.blocks import dense_table, random_block_table, sink_local_table  # noqa: E402
from probe.kernels.gluon.k2_launch import column_stats_gluon, gluon_k2_eligible, k2_prep, k2_walk  # noqa: E402
from probe.kernels.launch import column_stats, flash_forward  # noqa: E402
from probe.kernels.operands import key_bias_args  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402
from tests.kernels.helpers import build_for_sm90, builds_without_a_gpu, rel_err  # noqa: E402
from tests.kernels.test_gluon_k1 import DEVICE, ON_HOPPER, _ptxas  # noqa: E402

STAT_NAMES = ("received_sum", "received_max", "count", "block_sum", "block_max")


def test_not_eligible_off_hopper_or_with_other_tiles():
    q = torch.empty(1, 2, 300, 128, dtype=torch.bfloat16)
    assert not gluon_k2_eligible(q, q, dense_table(300, block_q=128, block_kv=128))  # CPU tensors


def _prep_reference(lse: torch.Tensor, block_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``k2_prep`` in PyTorch: -lse x log2(e), -inf where not finite and past the last query; seen per tile."""
    batch, heads, n = lse.shape
    pad = -n % block_q
    finite = torch.nn.functional.pad(torch.isfinite(lse).reshape(batch * heads, n), (0, pad))
    neg = torch.nn.functional.pad(-lse.reshape(batch * heads, n) * 1.4426950408889634, (0, pad))
    return torch.where(finite, neg, float("-inf")), finite.float().view(batch * heads, -1, block_q).sum(-1)


def test_k2_prep_negates_the_lse_in_base_2_and_counts_seen_queries_per_tile():
    """Non-finite entries (NaN padding, -inf for queries that see nothing) and the pad past the
    last query become -inf and are not counted; a strided lse view is read correctly."""
    lse = torch.randn(2, 3, 150, device=DEVICE) * 4  # the interpreter without a GPU, compiled with one
    lse[0, 1, [3, 70]] = float("nan")
    lse[1, 2, 149] = float("-inf")
    lse[1, 0, 5] = float("inf")
    view = torch.cat([lse, lse], dim=1)[:, ::2]  # strided heads
    neg, seen = k2_prep(view, 64)
    expect_neg, expect_seen = _prep_reference(view, 64)
    assert torch.isinf(expect_neg).sum() == 4 + 6 * 42
    assert torch.allclose(neg, expect_neg, rtol=1e-6) and torch.equal(torch.isinf(neg), torch.isinf(expect_neg))
    assert torch.equal(seen, expect_seen)


def _k2_ptx(causal: bool, bias: bool, block_stats: bool, keys: int, block_q: int = 128, head_dim: int = 128) -> str:
    n = 1024
    q = torch.empty(1, 2, n, head_dim, dtype=torch.bfloat16)
    table = dense_table(n, causal=causal, block_q=block_q, block_kv=128)
    bias_t, strides = key_bias_args(torch.zeros(1, 2, n) if bias else None, 1, 2, n, "cpu")
    cols = tuple(torch.empty(1, 2, n) for _ in range(3))
    os.environ["HEADSCOPE_K2_KEYS"] = str(keys)
    try:
        return build_for_sm90(k2_ws, "k2_ws_kernel", lambda: column_stats_gluon(
            q, q, torch.zeros(1, 2, n), table, qk_scale=0.1, bias=bias_t, bias_strides=strides, has_bias=bias,
            block_stats=block_stats, outputs=cols))
    finally:
        os.environ.pop("HEADSCOPE_K2_KEYS")


@builds_without_a_gpu()
@pytest.mark.parametrize("causal,bias,block_stats,keys,block_q,head_dim", [
    (False, False, False, 64, 128, 128), (True, True, True, 64, 128, 128), (True, False, True, 64, 64, 128),
    (False, False, False, 128, 128, 128), (True, True, True, 128, 128, 128), (True, True, True, 128, 128, 64),
    (True, True, True, 64, 128, 64)])
def test_k2_builds_for_sm90(tmp_path, causal, bias, block_stats, keys, block_q, head_dim):
    """A producer warp with its registers given up, one product per step of KEYS x BLOCK_Q per
    consumer, stage releases scoped to a warpgroup, block partials without barriers between
    warps; no spills with 64 keys per consumer, a few words with 128 (128 accumulator registers)."""
    ptx = _k2_ptx(causal, bias, block_stats, keys, block_q, head_dim)
    assert "cp.async.bulk.tensor" in ptx
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+24;", ptx)
    # Two issue sites per consumer (first tile, loop), (keys / 64) x (128 / 16) instructions each.
    products = ptx.count(f"wgmma.mma_async.sync.aligned.m64n{block_q}k16")
    assert products == 2 * 2 * (keys // 64) * (head_dim // 16), products
    assert re.search(r"bar\.sync\s+\d+, 128;(?:\n[^\n]*){0,3}\n\s*@%p\d+ mbarrier\.arrive", ptx)
    without_blocks = _k2_ptx(causal, bias, False, keys, block_q, head_dim)
    assert len(re.findall(r"bar\.sync", ptx)) == len(re.findall(r"bar\.sync", without_blocks))  # partials: no barriers
    spills = int(re.search(r"(\d+) bytes spill stores", _ptxas(tmp_path, ptx)).group(1))
    assert spills == 0 if keys == 64 else spills <= 64


def test_k2_walks_rule_tables_wide_and_sparse_tables_as_given():
    causal = dense_table(1000, causal=True, block_q=128, block_kv=128)
    walk, keys = k2_walk(causal)
    assert keys == 128 and walk.block_kv == 256 and walk.rule == causal.rule
    assert k2_walk(causal)[0] is walk  # cached on the table
    window = sink_local_table(1000, [300, 129], [4, 0], block_q=64, block_kv=128)
    assert k2_walk(window)[1] == 128 and k2_walk(window)[0].block_q == 64
    sparse = random_block_table(0.3, 1000, 2, block=128)
    assert k2_walk(sparse) == (sparse, 64)


def _inputs(n: int, heads: int, kv_heads: int, causal: bool, bias: bool, d: int = 128):
    q = torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, n, d, device="cuda", dtype=torch.bfloat16)
    key_bias = None
    if bias:
        key_bias = torch.randn(1, heads, n, device="cuda")
        key_bias[..., -37:] = -1.0e30  # padding keys, as the backend passes them (every query sees real keys)
    return q, k, key_bias


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("keys", ["64", "128"])
@pytest.mark.parametrize("n,group,causal,bias,d", [(1000, 4, False, True, 128), (4097, 1, True, False, 128),
                                                    (1000, 8, True, True, 128), (4097, 3, False, False, 128),
                                                    (4097, 3, True, True, 64), (1000, 1, False, False, 64)])
def test_gluon_k2_matches_materialised_on_gpu(n, group, causal, bias, d, keys, monkeypatch):
    monkeypatch.setenv("HEADSCOPE_K2_KEYS", keys)
    heads = 2 * group if group > 1 else 2
    q, k, key_bias = _inputs(n, heads, heads // group, causal, bias, d)
    table = dense_table(n, causal=causal, block_q=128, block_kv=128, device="cuda")
    assert gluon_k2_eligible(q, k, table)
    lse = flash_forward(q, k, k, table, scaling=d**-0.5, key_bias=key_bias).lse
    cols = column_stats(q, k, lse, table, scaling=d**-0.5, key_bias=key_bias, block_stats=True)
    _, ref = materialised_attention(q, k, k, table.allowed_rows(0, n, heads), key_bias=key_bias, block_size=128,
                                    dtype=torch.float32)
    for name in STAT_NAMES:
        assert rel_err(cols[name], ref[name]) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("block_q,sparse", [(128, False), (64, False), (128, True)])
def test_gluon_k2_equals_triton_on_sinks_windows_and_sparse_tables(block_q, sparse, monkeypatch):
    """Per-head sink + window spans (partial tiles inside the band, 128 keys per consumer),
    block-sparse tables (64 keys per consumer), 64-query tiles."""
    n, heads = 3001, 4
    q, k, key_bias = _inputs(n, heads, 2, True, True)
    table = (random_block_table(0.3, n, heads, block=block_q, device="cuda") if sparse else
             sink_local_table(n, [300, 1000, 129, 4000], [4, 0, 130, 1], block_q=block_q, block_kv=128, device="cuda"))
    assert k2_walk(table)[1] == (64 if sparse else 128)
    lse = flash_forward(q, k, k, table, scaling=128**-0.5, key_bias=key_bias).lse
    got = column_stats(q, k, lse, table, scaling=128**-0.5, key_bias=key_bias, block_stats=True)
    monkeypatch.setenv("HEADSCOPE_GLUON_K2", "0")
    want = column_stats(q, k, lse, table, scaling=128**-0.5, key_bias=key_bias, block_stats=True)
    for name in STAT_NAMES:
        assert rel_err(got[name], want[name]) < 1e-5, name
