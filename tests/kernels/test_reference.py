"""CPU: the reference path and the block-sparse CPU path against a materialised computation.

Neither needs Triton. Sizes are odd on purpose (prime lengths, GQA ratio 3, head dim 24) so
that tiling and broadcasting mistakes cannot hide.
"""

from __future__ import annotations

import math

import pytest
import torch

from probe.attention.reference import reference_attention
from probe.attention.spec import Band, KeyScale, LayerEdit, StatRequest
from probe.kernels.blocks import (
    FULL,
    SKIP,
    block_list_table,
    dense_table,
    random_block_table,
    sink_local_table,
    sliding_window_table,
    topk_table,
)
from probe.kernels.materialised import causal_allowed, materialised_attention
from probe.kernels.sparse import block_sparse_attention
from tests.kernels.helpers import lazy, left_padding, qkv, random_edit, rel_err

ROW_STATS = ("lse", "entropy", "distance")
COL_STATS = ("received_sum", "received_max", "received_mean")


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_reference_backend_matches_materialised(causal, padded):
    batch, heads, kv_heads, n, d = 2, 6, 2, 37, 24
    q, k, v = qkv(batch, heads, kv_heads, n, d)
    padding = left_padding(batch, n, [0, 5]) if padded else None
    mask = lazy(batch, n, n, causal=causal, padding=padding)
    edit = random_edit(batch, heads, n)
    want = StatRequest.all_stats(block_size=8)
    got = reference_attention(q, k, v, mask, want=want, edit=edit, chunk_size=16)
    allowed = (causal_allowed(n, n) if causal else torch.ones(1, 1, n, n, dtype=torch.bool))
    key_valid = mask.key_padding()
    allowed = allowed & key_valid[:, None, None, :]
    out, ref = materialised_attention(q, k, v, allowed, key_bias=edit.key_bias, head_scale=edit.head_scale,
                                      query_valid=mask.query_padding(), block_size=8)
    valid = mask.query_padding()
    assert rel_err(got.output[valid], out[valid]) < 1e-5
    for name in ROW_STATS + COL_STATS + ("block_sum", "block_max"):
        assert rel_err(got.stats[name], ref[name]) < 1e-5, name
    assert torch.equal(got.stats["visible_count"], ref["count"][:, 0])


def test_reference_act_scaling_matches_materialised():
    batch, heads, kv_heads, n, d = 1, 4, 4, 29, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d)
    selected = torch.zeros(batch, heads, n, dtype=torch.bool)
    selected[..., 0] = True
    selected[:, 1, 7] = True
    factor = torch.tensor([0.5, 0.3, 1.0, 2.0])
    edit = LayerEdit(key_scales=(KeyScale(factor=factor, keys=selected),))
    got = reference_attention(q, k, v, lazy(batch, n, n), edit=edit)
    out, _ = materialised_attention(q, k, v, causal_allowed(n, n), scale_keys=selected, scale_factor=factor)
    assert rel_err(got.output, out) < 1e-5


def _token_mask(n, causal=True, window=None, sink=0):
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    ok = (i >= j) if causal else torch.ones(n, n, dtype=torch.bool)
    if window is not None:
        ok = ok & ((i - j < window) | (j < sink))
    return ok


@pytest.mark.parametrize("block", [16, 32])
def test_rule_tables_expand_to_their_token_masks(block):
    n = 101
    cases = [
        (dense_table(n, causal=True, block_q=block, block_kv=block), [_token_mask(n)]),
        (dense_table(n, causal=False, block_q=block, block_kv=block), [_token_mask(n, causal=False)]),
        (sliding_window_table(n, 21, block_q=block, block_kv=block), [_token_mask(n, window=21)]),
        (sink_local_table(n, [17, 40], [3, 0], block_q=block, block_kv=block),
         [_token_mask(n, window=17, sink=3), _token_mask(n, window=40)]),
    ]
    for table, masks in cases:
        allowed = table.allowed_rows(0, n, len(masks))[0]
        for h, expected in enumerate(masks):
            assert torch.equal(allowed[h], expected)
        # FULL tiles must be entirely allowed and SKIP tiles entirely masked.
        kinds = table.kinds.expand(1, len(masks), -1, -1)[0]
        tile = kinds[:, torch.arange(n) // block][:, :, torch.arange(n) // block]
        exp = torch.stack(masks)
        assert bool(exp[tile == FULL].all()) and not bool(exp[tile == SKIP].any())


def test_index_lists_match_kinds_in_both_orientations():
    table = random_block_table(0.3, 333, heads=3, block=32)
    kinds = table.kinds
    for num, idx, full_num, full_idx, kk in [
        (table.kv_num_blocks, table.kv_indices, table.full_kv_num_blocks, table.full_kv_indices, kinds),
        (table.q_num_blocks, table.q_indices, table.full_q_num_blocks, table.full_q_indices, kinds.transpose(-1, -2)),
    ]:
        for h in range(3):
            for r in range(kk.shape[2]):
                part = idx[0, h, r, : num[0, h, r]].tolist()
                full = full_idx[0, h, r, : full_num[0, h, r]].tolist()
                assert part == torch.nonzero(kk[0, h, r] == 1).flatten().tolist()
                assert full == torch.nonzero(kk[0, h, r] == 2).flatten().tolist()


def test_topk_table_keeps_the_best_blocks():
    n, block = 160, 16
    nb = n // block
    scores = torch.rand(1, 2, nb, nb)
    table = topk_table(scores, 0.25, n, block_q=block, block_kv=block, keep_diagonal=False)
    kept = table.kinds[0] > 0
    for h in range(2):
        for r in range(nb):
            allowed = r + 1
            k = math.ceil(0.25 * allowed)
            best = scores[0, h, r, :allowed].topk(k).indices.sort().values
            assert torch.equal(torch.nonzero(kept[h, r]).flatten(), best)


def test_block_list_table_and_flex_conversion():
    n, block = 96, 32
    keep = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)[None, None]
    table = block_list_table(keep, n, block_q=block, block_kv=block)
    assert torch.equal(table.kinds[0, 0] > 0, keep[0, 0])
    flex = table.to_flex()
    assert torch.equal(flex.kv_num_blocks, table.kv_num_blocks)
    assert torch.equal(flex.full_kv_num_blocks, table.full_kv_num_blocks)


@pytest.mark.parametrize("maker", ["window", "sink_local", "random"])
def test_sparse_cpu_path_matches_dense_reference_with_expanded_mask(maker):
    batch, heads, kv_heads, n, d = 1, 4, 2, 131, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d)
    table = {
        "window": lambda: sliding_window_table(n, 40, block_q=32, block_kv=32),
        "sink_local": lambda: sink_local_table(n, [20, 50, 33, 64], [4, 0, 1, 16], block_q=32, block_kv=32),
        "random": lambda: random_block_table(0.4, n, heads, block=32),
    }[maker]()
    want = StatRequest(received=True, entropy=True, distance=True, block_size=32)
    got = block_sparse_attention(q, k, v, table, want=want)
    # Independent construction: loop over heads with the reference backend's own masks where
    # possible (window), else the expanded table fed to the float64 materialised reference.
    allowed = table.allowed_rows(0, n, heads)
    out, ref = materialised_attention(q, k, v, allowed, block_size=32)
    assert rel_err(got.output, out) < 1e-5
    for name in ROW_STATS + COL_STATS + ("block_sum", "block_max"):
        assert rel_err(got.stats[name], ref[name]) < 1e-5, name
    if maker == "window":
        mask = lazy(batch, n, n, window=40)
        plain = reference_attention(q, k, v, mask, want=StatRequest(entropy=True))
        assert rel_err(got.output, plain.output) < 1e-5
        assert rel_err(got.stats["entropy"], plain.stats["entropy"]) < 1e-5


@pytest.mark.parametrize("want", [StatRequest(lookback_window=10), StatRequest(band=Band(lo=1, hi=5))])
def test_sparse_calls_refuse_the_rhythm_statistics_rather_than_drop_them(want):
    q, k, v = qkv(1, 4, 2, 64, 16)
    with pytest.raises(ValueError, match="dense call"):
        block_sparse_attention(q, k, v, sliding_window_table(64, 16, block_q=32, block_kv=32), want=want)
