"""The Triton kernels themselves: in the interpreter on CPU (TRITON_INTERPRET=1, set by the
conftest when no GPU is present), compiled on a GPU. Small odd shapes; fp32 on CPU."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from probe.attention.reference import reference_attention  # noqa: E402
from probe.attention.spec import KeyScale, LayerEdit, SinkRule, StatRequest  # noqa: E402
from probe.kernels.backend import Call, route_for, run_kernels  # noqa: E402
from probe.kernels.blocks import dense_table, random_block_table, sink_local_table  # noqa: E402
from probe.kernels.launch import ActScale, column_stats, dim_class, flash_forward, head_dim_parts  # noqa: E402
from probe.kernels.materialised import causal_allowed, materialised_attention  # noqa: E402
from probe.kernels.sparse import block_sparse_attention, sparse_with_kernels  # noqa: E402
from tests.kernels.helpers import lazy, left_padding, qkv, random_edit, rel_err  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32: exact to rounding in the CPU interpreter; a GPU computes fp32 dots in TF32 (10-bit
# mantissa), measured up to 1.5e-3 relative on the lent H100.
TOL = 1e-4 if DEVICE == "cpu" else 3e-3


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("head_dim", [16, 24, 80, 96, pytest.param(256, marks=pytest.mark.skipif(
    DEVICE == "cuda", reason="float32 at 256 is refused on a GPU; test_head_dims_bf16_* covers it there"))])
def test_k1_k2_against_materialised(causal, head_dim):
    batch, heads, kv_heads, n = 1, 3, 1, 77
    q, k, v = qkv(batch, heads, kv_heads, n, head_dim, device=DEVICE)
    bias = torch.randn(batch, heads, n, device=DEVICE)
    hscale = torch.rand(heads, device=DEVICE) + 0.5
    table = dense_table(n, causal=causal, block_q=32, block_kv=32, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=head_dim**-0.5, key_bias=bias, entropy=True, distance=True,
                      head_scale=hscale)
    cols = column_stats(q, k, r.lse, table, scaling=head_dim**-0.5, key_bias=bias, block_stats=True)
    allowed = causal_allowed(n, n) if causal else torch.ones(1, 1, n, n, dtype=torch.bool)
    out, ref = materialised_attention(q.cpu(), k.cpu(), v.cpu(), allowed, key_bias=bias.cpu(), head_scale=hscale.cpu(),
                                      block_size=32)
    assert rel_err(r.output, out) < TOL
    for name, got in [("lse", r.lse), ("entropy", r.entropy), ("distance", r.distance)] + list(cols.items()):
        assert rel_err(got, ref[name]) < TOL, name


@pytest.mark.parametrize("density", [0.05, 0.4])  # 0.4: more keys than one SEL_BLOCK gather
def test_k1_act_scaling_with_redistribution(density):
    batch, heads, kv_heads, n, d = 2, 4, 2, 70, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    selected = torch.rand(batch, heads, n, device=DEVICE) < density
    selected[:, :, 0] = True
    factor = torch.tensor([0.2, 0.5, 1.5, 0.0], device=DEVICE)
    table = dense_table(n, causal=True, block_q=32, block_kv=32, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, act=ActScale(selected, factor))
    out, _ = materialised_attention(q.cpu(), k.cpu(), v.cpu(), causal_allowed(n, n), scale_keys=selected.cpu(),
                                    scale_factor=factor.cpu())
    assert rel_err(r.output, out) < TOL


@pytest.mark.parametrize("values", ["own", "the_keys"])  # the_keys: zeroing V in place would zero K
def test_k1_act_leaves_the_callers_values_unchanged(values):
    batch, heads, kv_heads, n, d = 1, 4, 2, 50, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    v = k if values == "the_keys" else v
    before = v.clone()
    selected = torch.zeros(batch, heads, n, dtype=torch.bool, device=DEVICE)
    selected[:, 1, [0, 7]] = True  # one head of each group has no selection of its own
    selected[:, 2, 3] = True
    factor = torch.tensor([0.5, 0.2, 0.4, 0.9], device=DEVICE)
    table = dense_table(n, causal=True, block_q=16, block_kv=16, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, act=ActScale(selected, factor))
    out, _ = materialised_attention(q.cpu(), k.cpu(), v.cpu(), causal_allowed(n, n), scale_keys=selected.cpu(),
                                    scale_factor=factor.cpu())
    assert torch.equal(v, before) and rel_err(r.output, out) < TOL


def test_k1_act_with_strong_sinks_keeps_unedited_statistics():
    """Sinks holding ~99 % of the attention (where ACT matters most), rows that see only sinks
    (causal row 0), and the row statistics of the unedited attention in the same call."""
    batch, heads, kv_heads, n, d = 1, 2, 1, 45, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    bias = torch.randn(batch, heads, n, device=DEVICE) * 0.3
    bias[..., :2] += 6.0
    selected = torch.zeros(batch, heads, n, dtype=torch.bool, device=DEVICE)
    selected[..., :2] = True
    selected[0, 1, 30] = True
    factor = torch.tensor([0.3, 0.6], device=DEVICE)
    table = dense_table(n, causal=True, block_q=16, block_kv=16, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, entropy=True, distance=True,
                      act=ActScale(selected, factor))
    allowed = causal_allowed(n, n)
    out, _ = materialised_attention(q.cpu(), k.cpu(), v.cpu(), allowed, key_bias=bias.cpu(), scale_keys=selected.cpu(),
                                    scale_factor=factor.cpu())
    plain, ref = materialised_attention(q.cpu(), k.cpu(), v.cpu(), allowed, key_bias=bias.cpu())
    # ACT itself is ill-conditioned as p_S -> 1: the rest's factor (1 - beta p_S) / (1 - p_S) turns
    # float32 rounding of p_S (~1e-7) into ~1e-7 / (1 - p_S); early rows here have 1 - p_S ~ 1e-3.
    assert rel_err(r.output, out) < 1e-3 and rel_err(plain, out) > 1e-2
    for name, got in (("lse", r.lse), ("entropy", r.entropy), ("distance", r.distance)):
        assert rel_err(got, ref[name]) < TOL, name


def test_backend_kernel_path_with_padding_gqa_edits_matches_reference():
    batch, heads, kv_heads, n, d = 2, 6, 2, 67, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    mask = lazy(batch, n, n, padding=left_padding(batch, n, [0, 9]).to(DEVICE), device=DEVICE)
    edit = random_edit(batch, heads, n)
    edit = LayerEdit(key_bias=edit.key_bias.to(DEVICE), head_scale=edit.head_scale.to(DEVICE))
    want = StatRequest.all_stats(block_size=16)
    call = Call(q, k, v, mask, d**-0.5, None, want, edit)
    got = run_kernels(call)
    ref = reference_attention(q.cpu(), k.cpu(), v.cpu(), lazy(batch, n, n, padding=mask.padding.cpu()),
                              want=want, edit=LayerEdit(key_bias=edit.key_bias.cpu(), head_scale=edit.head_scale.cpu()))
    valid = mask.query_padding().cpu()
    assert rel_err(got.output.cpu()[valid], ref.output[valid]) < TOL
    for name, value in ref.stats.items():
        assert rel_err(got.stats[name], value) < TOL, name


@pytest.mark.parametrize("causal", [True, False])
def test_backend_act_with_every_statistic_matches_reference(causal, monkeypatch):
    """ACT on the kernel path with every statistic: the pass turns K1's entropy and distance into
    the edited attention's, K2 plus the selected columns' terms give its column and block
    statistics, the first-token share takes the row's factor (the log-sum-exp stays the
    unedited one's, as in the reference). GQA with a head that selects nothing, a factor of 0,
    key padding, a selected first key and a strong sink."""
    batch, heads, kv_heads, n, d = 2, 4, 2, 75, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    q = q + 0.8 * k[:, :, :1].repeat_interleave(2, dim=1)  # key 0 holds much of the attention
    selected = torch.zeros(batch, heads, n, dtype=torch.bool, device=DEVICE)
    selected[:, 0, 0] = selected[:, 2, [0, 9]] = selected[1, 3, 40] = True
    factor = torch.tensor([0.3, 1.0, 0.0, 0.6], device=DEVICE)
    padding = left_padding(batch, n, [0, 6]).to(DEVICE)
    edit = LayerEdit(key_scales=(KeyScale(factor=factor, keys=selected),))
    want = StatRequest.all_stats(block_size=16)
    monkeypatch.setattr("probe.kernels.act.columns.QUERY_CHUNK", 32)  # several query chunks
    call = Call(q, k, v, lazy(batch, n, n, causal=causal, padding=padding, device=DEVICE), d**-0.5, None, want, edit)
    got = run_kernels(call)
    cpu_edit = LayerEdit(key_scales=(KeyScale(factor=factor.cpu(), keys=selected.cpu()),))
    ref = reference_attention(q.cpu(), k.cpu(), v.cpu(), lazy(batch, n, n, causal=causal, padding=padding.cpu()),
                              want=want, edit=cpu_edit)
    plain = reference_attention(q.cpu(), k.cpu(), v.cpu(), lazy(batch, n, n, causal=causal, padding=padding.cpu()),
                                want=want)
    valid = padding.cpu()
    assert rel_err(got.output.cpu()[valid], ref.output[valid]) < TOL
    assert set(got.stats) == set(ref.stats)
    for name, value in ref.stats.items():
        ok = torch.isfinite(value)
        assert torch.equal(ok, torch.isfinite(got.stats[name].cpu())), name
        assert rel_err(got.stats[name].cpu()[ok], value[ok]) < TOL, name
    for name in ("entropy", "received_sum", "block_max", "first_token"):  # the edit changes them
        ok = torch.isfinite(ref.stats[name])
        assert rel_err(plain.stats[name][ok], ref.stats[name][ok]) > 1e-2, name
    assert torch.isfinite(got.output).all()  # padding queries too (their values are unspecified)


def test_backend_sink_rule_detects_and_scales_like_reference():
    batch, heads, n, d = 1, 2, 90, 16
    q, k, v = qkv(batch, heads, heads, n, d, device=DEVICE)
    q = q + 0.6 * k[:, :, 5:6]  # every later query attends to key 5: a sink
    edit = LayerEdit(key_scales=(KeyScale(factor=torch.tensor([0.3, 0.6], device=DEVICE), keys=SinkRule(tau=0.05, keep_first=False)),))
    got = run_kernels(Call(q, k, v, lazy(batch, n, n, device=DEVICE), d**-0.5, None, StatRequest(), edit))
    cpu_edit = LayerEdit(key_scales=(KeyScale(factor=torch.tensor([0.3, 0.6]), keys=SinkRule(tau=0.05, keep_first=False)),))
    ref = reference_attention(q.cpu(), k.cpu(), v.cpu(), lazy(batch, n, n), edit=cpu_edit)
    assert len(got.sinks) == len(ref.sinks) == 1
    assert torch.equal(got.sinks[0].cpu(), ref.sinks[0]) and bool(ref.sinks[0].any())
    assert rel_err(got.output, ref.output) < TOL


@pytest.mark.parametrize("maker", ["sink_local", "random"])
def test_sparse_kernels_match_cpu_sparse_path(maker):
    batch, heads, kv_heads, n, d = 1, 4, 2, 100, 16
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    table = (sink_local_table(n, [20, 45, 33, 64], [4, 0, 1, 16], block_q=32, block_kv=32, device=DEVICE)
             if maker == "sink_local" else random_block_table(0.4, n, heads, block=32, device=DEVICE))
    want = StatRequest(received=True, entropy=True, distance=True, block_size=32)
    got = sparse_with_kernels(q, k, v, table, d**-0.5, want, None, None)  # the kernels, also on CPU
    cpu_table = table if DEVICE == "cpu" else random_block_table(0.4, n, heads, block=32)
    if maker == "sink_local":
        cpu_table = sink_local_table(n, [20, 45, 33, 64], [4, 0, 1, 16], block_q=32, block_kv=32)
    ref = block_sparse_attention(q.cpu(), k.cpu(), v.cpu(), cpu_table, want=want)
    assert rel_err(got.output, ref.output) < TOL
    for name, value in ref.stats.items():
        assert rel_err(got.stats[name], value) < TOL, name


def test_routes():
    q, k, v = qkv(1, 2, 2, 8, 16)
    mask = lazy(1, 8, 8)
    assert route_for(Call(q, k, v, mask, 0.25, None, StatRequest(), None)).name == "reference"  # CPU tensors
    if DEVICE == "cuda":
        q, k, v = (t.cuda() for t in (q, k, v))
        assert route_for(Call(q, k, v, mask, 0.25, None, StatRequest(), None)).name == "sdpa"
        assert route_for(Call(q, k, v, mask, 0.25, None, StatRequest(entropy=True), None)).name == "triton"
        assert route_for(Call(q, k, v, mask, 0.25, 30.0, StatRequest(entropy=True), None)).name == "reference"
        wide = qkv(1, 2, 2, 8, 256, device="cuda")
        assert route_for(Call(*wide, mask, 0.25, None, StatRequest(entropy=True), None)).name == "reference"  # fp32
        wide = tuple(t.to(torch.bfloat16) for t in wide)
        assert route_for(Call(*wide, mask, 0.25, None, StatRequest(entropy=True), None)).name == "triton"
        too_wide = tuple(t.to(torch.bfloat16) for t in qkv(1, 2, 2, 8, 320, device="cuda"))
        assert route_for(Call(*too_wide, mask, 0.25, None, StatRequest(entropy=True), None)).name == "reference"


def test_head_dim_parts_split_only_where_it_saves_columns():
    parts = {d: head_dim_parts(d) for d in (8, 16, 24, 48, 64, 72, 80, 96, 112, 128, 160, 192, 200, 256)}
    assert parts == {8: (16, 0), 16: (16, 0), 24: (32, 0), 48: (32, 16), 64: (64, 0), 72: (64, 16), 80: (64, 16),
                     96: (64, 32), 112: (128, 0), 128: (128, 0), 160: (128, 32), 192: (128, 64), 200: (256, 0),
                     256: (256, 0)}
    for d, (first, second) in parts.items():
        assert first + second >= d and first & (first - 1) == 0 and second & (second - 1) == 0


def test_head_dims_past_256_are_refused_with_the_limit_named():
    q, k, v = qkv(1, 2, 2, 8, 320, device=DEVICE)
    table = dense_table(8, causal=True, block_q=16, block_kv=16, device=DEVICE)
    with pytest.raises(ValueError, match="head dim 320 > 256"):
        flash_forward(q, k, v, table, scaling=0.1)
    with pytest.raises(ValueError, match="head dim 320 > 256"):
        column_stats(q, k, torch.zeros(1, 2, 8, device=DEVICE), table, scaling=0.1)
    if DEVICE == "cuda":  # float32 tiles at 256 do not fit in shared memory; the interpreter has none
        q, k, v = qkv(1, 2, 2, 8, 256, device=DEVICE)
        with pytest.raises(ValueError, match="float32 at head dim 256"):
            flash_forward(q, k, v, table, scaling=0.1)
    assert [dim_class(d) for d in (16, 64, 80, 128, 192, 256)] == ["small", "small", "mid", "mid", "large", "large"]


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU")
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("d", [80, 96, 256])
def test_head_dims_bf16_against_float32_reference(causal, d):
    """Gemma-2/3's head dim 256, and 80 / 96 as two column parts through the tensor descriptors,
    at the tuned tiles (128-query blocks): bf16 output and every statistic against the float32
    materialised reference, odd length, GQA, key bias."""
    batch, heads, kv_heads, n = 1, 4, 1, 1000
    q, k, v = (t.to(torch.bfloat16) for t in qkv(batch, heads, kv_heads, n, d, device=DEVICE))
    bias = torch.randn(batch, heads, n, device=DEVICE)
    table = dense_table(n, causal=causal, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, entropy=True, distance=True)
    cols = column_stats(q, k, r.lse, table, scaling=d**-0.5, key_bias=bias, block_stats=True)
    out, ref = materialised_attention(q.float(), k.float(), v.float(), table.allowed_rows(0, n, heads),
                                      key_bias=bias, block_size=128, dtype=torch.float32)
    assert rel_err(r.output.float(), out) < 1e-2
    for name, got in [("lse", r.lse), ("entropy", r.entropy), ("distance", r.distance)] + list(cols.items()):
        assert rel_err(got, ref[name]) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU")
def test_head_dim_256_backend_with_act_and_every_statistic_matches_reference():
    """The backend at head dim 256 in bf16 with an ACT edit (GQA, key padding, a strong sink):
    every statistic and the output against the float32 reference on the same rounded inputs."""
    batch, heads, kv_heads, n, d = 2, 4, 2, 300, 256
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    q = q + 0.05 * k[:, :, :1].repeat_interleave(2, dim=1)  # key 0 draws attention
    q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    selected = torch.zeros(batch, heads, n, dtype=torch.bool, device=DEVICE)
    selected[:, :2, 0] = True
    factor = torch.tensor([0.3, 0.5, 1.0, 1.0], device=DEVICE)
    padding = left_padding(batch, n, [0, 11]).to(DEVICE)
    edit = LayerEdit(key_scales=(KeyScale(factor=factor, keys=selected),))
    want = StatRequest.all_stats(block_size=128)
    call = Call(q, k, v, lazy(batch, n, n, padding=padding, device=DEVICE), d**-0.5, None, want, edit)
    assert route_for(call).name == "triton"
    got = run_kernels(call)
    ref = reference_attention(q.float().cpu(), k.float().cpu(), v.float().cpu(), lazy(batch, n, n, padding=padding.cpu()),
                              want=want, edit=LayerEdit(key_scales=(KeyScale(factor=factor.cpu(), keys=selected.cpu()),)))
    valid = padding.cpu()
    assert rel_err(got.output.float().cpu()[valid], ref.output[valid]) < 1e-2
    for name, value in ref.stats.items():
        ok = torch.isfinite(value)
        assert rel_err(got.stats[name].cpu()[ok], value[ok]) < 1e-3, name


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("d", [24, 72])
def test_k1_k2_tensor_descriptor_path(monkeypatch, causal, d):
    """The TMA (tensor-descriptor) loads, forced on (the interpreter runs them on CPU): ragged
    length, padded head dim (24 -> 32) or two column parts with a padded second one
    (72 -> 64 + 16), GQA, bias, entropy, distance and ACT together."""
    monkeypatch.setenv("HEADSCOPE_TMA", "1")
    batch, heads, kv_heads, n = 1, 4, 2, 70
    q, k, v = qkv(batch, heads, kv_heads, n, d, device=DEVICE)
    bias = torch.randn(batch, heads, n, device=DEVICE)
    table = dense_table(n, causal=causal, block_q=32, block_kv=32, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, entropy=True, distance=True)
    cols = column_stats(q, k, r.lse, table, scaling=d**-0.5, key_bias=bias, block_stats=True)
    allowed = causal_allowed(n, n) if causal else torch.ones(1, 1, n, n, dtype=torch.bool)
    out, ref = materialised_attention(q.cpu(), k.cpu(), v.cpu(), allowed, key_bias=bias.cpu(), block_size=32)
    assert rel_err(r.output, out) < TOL
    for name, got in [("lse", r.lse), ("entropy", r.entropy), ("distance", r.distance)] + list(cols.items()):
        assert rel_err(got, ref[name]) < TOL, name
    selected = torch.zeros(batch, heads, n, dtype=torch.bool, device=DEVICE)
    selected[..., [0, 1, 40]] = True
    factor = torch.tensor([0.2, 0.5, 1.5, 0.0], device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, act=ActScale(selected, factor))
    out, _ = materialised_attention(q.cpu(), k.cpu(), v.cpu(), allowed, key_bias=bias.cpu(),
                                    scale_keys=selected.cpu(), scale_factor=factor.cpu())
    assert rel_err(r.output, out) < TOL
