"""The Gluon K1 (Hopper): its host-side views and dispatch on CPU, its sm_90a build without a
GPU (Triton compiles and ptxas assembles here), and its numbers on a GPU when one is present.

Gluon kernels do not run in Triton's CPU interpreter, so CI checks that the kernel still builds
for sm_90a with no register spills; the numerical comparison against the float32 materialised
reference runs on the lent H100 (``pytest -m gpu``, and the ``check`` section of
``benchmarks/kernels/bench_kernels.py``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")

from probe.kernels.gluon import k1_launch  # noqa: E402
from probe.kernels.blocks import dense_table, sliding_window_table  # noqa: E402
from probe.kernels.gluon.k1_launch import flash_forward_gluon, gluon_eligible  # noqa: E402
from probe.kernels.gluon.views import row_view  # noqa: E402
from probe.kernels.materialised import materialised_attention  # noqa: E402
from tests.kernels.helpers import build_for_sm90, builds_without_a_gpu, rel_err  # noqa: E402

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
ON_HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("memory", ["bhnd", "bnhd"])
def test_row_view_addresses_every_token(memory):
    batch, heads, n, d = 2, 3, 5, 8
    if memory == "bhnd":
        t = torch.randn(batch, heads, n, d)
    else:
        t = torch.randn(batch, n, heads, d).transpose(1, 2)
    view, row_b, row_h, col_h = row_view(t)
    for b in range(batch):
        for h in range(heads):
            rows = view[b * row_b + h * row_h: b * row_b + h * row_h + n, h * col_h: h * col_h + d]
            assert torch.equal(rows, t[b, h])


def test_row_view_refuses_other_layouts():
    t = torch.randn(2, 4, 6, 8)[:, :, ::2]  # every other token: no uniform row stride
    assert row_view(t) is None


def test_not_eligible_off_hopper():
    q = torch.randn(1, 2, 256, 128, dtype=torch.bfloat16)
    table = dense_table(256, block_q=128, block_kv=128)
    assert not gluon_eligible(q, q, q, table)  # CPU tensors


def _sm90_ptx(entropy: bool, causal: bool, bias: bool, head_dim: int, gqa_values: bool = False,
              ws: bool = False) -> str:
    """Build one launch for sm_90a (no GPU needed) and return its PTX."""
    import os

    from probe.kernels.gluon import k1, k1_ws

    module, name = (k1_ws, "k1_ws_kernel") if ws else (k1, "k1_gluon_kernel")
    n = 1024
    q = torch.empty(1, 2, n, head_dim, dtype=torch.bfloat16)
    table = dense_table(n, causal=causal, block_q=128, block_kv=128)
    key_bias = torch.zeros(1, 2, n) if bias else None
    k = torch.empty(1, 1, n, head_dim, dtype=torch.bfloat16) if gqa_values else q  # V per query head, as ACT's
    os.environ["HEADSCOPE_GLUON_WS"] = "1" if ws else "0"
    try:
        return build_for_sm90(module, name, lambda: flash_forward_gluon(
            q, k, q, table, scaling=head_dim**-0.5, key_bias=key_bias, entropy=entropy, distance=entropy,
            head_scale=torch.ones(2) if bias else None))
    finally:
        os.environ.pop("HEADSCOPE_GLUON_WS")


def _ptxas(tmp_path, ptx: str) -> str:
    """Assemble for sm_90a with Triton's ptxas; returns its resource report."""
    (tmp_path / "k.ptx").write_text(ptx)
    report = subprocess.run([str(PTXAS), "-v", "--gpu-name", "sm_90a", str(tmp_path / "k.ptx"), "-o",
                             str(tmp_path / "k.o")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    return report.stderr


@builds_without_a_gpu()
@pytest.mark.parametrize("entropy,causal,bias,head_dim,gqa_values", [(False, False, False, 128, False),
                                                                     (True, True, True, 128, False),
                                                                     (False, True, True, 128, True),
                                                                     (True, True, False, 64, False)])
def test_kernel_builds_for_sm90_without_spills(tmp_path, entropy, causal, bias, head_dim, gqa_values):
    ptx = _sm90_ptx(entropy, causal, bias, head_dim, gqa_values)
    assert ptx.count("wgmma.mma_async") > 0 and "cp.async.bulk.tensor" in ptx  # tensor cores + TMA
    assert "wgmma.wait_group.sync.aligned 1" in ptx  # S waited for while P.V is still in flight
    report = _ptxas(tmp_path, ptx)
    spills = re.search(r"(\d+) bytes spill stores", report)
    assert spills is not None and int(spills.group(1)) == 0, report[-2000:]


@builds_without_a_gpu()
@pytest.mark.parametrize("entropy,causal,bias,d", [(False, False, False, 128), (False, True, True, 128),
                                                   (True, True, True, 128), (True, True, True, 64)])
def test_warp_specialised_kernel_builds_for_sm90(tmp_path, entropy, causal, bias, d):
    """Producer warp + two consumer warpgroups: registers moved between partitions, stage releases
    scoped to one warpgroup (a 128-thread named barrier, not the CTA's), the key bias added by the
    tensor cores (its tile brought by TMA with K), no spills."""
    ptx = _sm90_ptx(entropy, causal, bias, d, ws=True)
    assert re.search(r"setmaxnreg\.dec\.sync\.aligned\.u32\s+24;", ptx)  # the producer warp gives registers up
    assert re.search(r"setmaxnreg\.inc\.sync\.aligned\.u32\s+\d+;", ptx)
    assert "wgmma.wait_group.sync.aligned 1" in ptx
    assert re.search(r"bar\.sync\s+\d+, 128;(?:\n[^\n]*){0,3}\n\s*@%p\d+ mbarrier\.arrive", ptx)
    report = _ptxas(tmp_path, ptx)
    spills = int(re.search(r"(\d+) bytes spill stores", report).group(1))
    assert spills == 0, report[-2000:]
    # The key bias enters the S product as one more k16 step (A = ones, B = its [keys, 16] tile):
    # 2 consumers x (2 S sites x (8 + bias) + 2 P.V sites x 8) products, no add per logit; with
    # the distance, 2 consumers x 2 sites x 8 products of P by the column-index tile (n = 8).
    distance = 2 * 2 * (128 // 16) if entropy else 0
    assert ptx.count("wgmma.mma_async") == 2 * (2 * (d // 16 + bias) + 2 * (128 // 16)) + distance
    assert ptx.count("wgmma.mma_async.sync.aligned.m64n8k16") == distance


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("memory", ["bhnd", "bnhd"])
@pytest.mark.parametrize("in_product", ["0", "1"])
@pytest.mark.parametrize("d", [64, 128])
def test_gluon_matches_materialised_on_gpu(causal, memory, in_product, d, monkeypatch):
    monkeypatch.setenv("HEADSCOPE_BIAS_IN_PRODUCT", in_product)
    n, heads, kv_heads = 1000, 8, 2
    make = ((lambda h: torch.randn(1, h, n, d, device="cuda", dtype=torch.bfloat16)) if memory == "bhnd" else
            (lambda h: torch.randn(1, n, h, d, device="cuda", dtype=torch.bfloat16).transpose(1, 2)))
    q, k, v = make(heads), make(kv_heads), make(kv_heads)
    table = dense_table(n, causal=causal, block_q=128, block_kv=128, device="cuda")
    bias = torch.randn(1, heads, n, device="cuda")
    assert gluon_eligible(q, k, v, table)
    r = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, key_bias=bias, entropy=True, distance=True)
    out, ref = materialised_attention(q, k, v, table.allowed_rows(0, n, heads), key_bias=bias, dtype=torch.float32)
    assert rel_err(r.output, out) < 1e-2
    for name, got in (("lse", r.lse), ("entropy", r.entropy), ("distance", r.distance)):
        assert rel_err(got, ref[name]) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("in_product", ["0", "1"])
def test_warp_specialised_equals_single_partition_on_gpu(causal, in_product, monkeypatch):
    """Bit for bit with the bias added in the softmax as the single-partition kernel adds it;
    with the bias in the S product (the default), to the rounding of its bf16 hi/lo split."""
    monkeypatch.setenv("HEADSCOPE_BIAS_IN_PRODUCT", in_product)
    n, d = 3001, 128
    q = torch.randn(2, 8, n, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(2, 2, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    table = dense_table(n, causal=causal, device="cuda")
    bias = torch.randn(2, 8, n, device="cuda")
    kw = dict(scaling=d**-0.5, key_bias=bias, entropy=True, distance=True, head_scale=torch.rand(8, device="cuda"))
    monkeypatch.setenv("HEADSCOPE_K1_TC_DISTANCE", "0")  # the single-partition kernel sums p c in float32
    ws = flash_forward_gluon(q, k, v, table, **kw)
    monkeypatch.setenv("HEADSCOPE_GLUON_WS", "0")
    single = flash_forward_gluon(q, k, v, table, **kw)
    if in_product == "1":
        assert rel_err(ws.output, single.output) < 2e-3
        for name in ("lse", "entropy", "distance"):
            assert rel_err(getattr(ws, name), getattr(single, name)) < 1e-5, name
        return
    assert torch.equal(ws.output, single.output)  # same arithmetic in the same order, row by row
    for name in ("lse", "entropy"):
        assert torch.equal(getattr(ws, name), getattr(single, name)), name
    # distance sums offsets from each warpgroup's first row (64 rows later for the second one)
    assert rel_err(ws.distance, single.distance) < 1e-6


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("causal,group,n", [(False, 4, 1000), (True, 1, 3001), (True, 3, 4097)])
def test_distance_on_tensor_cores_within_its_bound_on_gpu(causal, group, n, monkeypatch):
    """The tensor cores' ``sum p c`` (bf16 P times a column index below 128) moves the mean
    distance by at most 127 x 2^-8 positions (bf16 rounds by 2^-8) from the float32 FMA path, and stays within 1e-3
    of the float32 reference; every other output is unchanged bit for bit."""
    heads, d = 2 * group, 128
    q = torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, 2, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    bias = 2 * torch.randn(1, heads, n, device="cuda")
    table = dense_table(n, causal=causal, device="cuda")
    kw = dict(scaling=d**-0.5, key_bias=bias, entropy=True, distance=True)
    tc = flash_forward_gluon(q, k, v, table, **kw)
    monkeypatch.setenv("HEADSCOPE_K1_TC_DISTANCE", "0")
    fma = flash_forward_gluon(q, k, v, table, **kw)
    for name in ("output", "lse", "entropy"):
        assert torch.equal(getattr(tc, name), getattr(fma, name)), name
    assert (tc.distance - fma.distance).abs().max().item() <= 127 * 2.0**-8 + 1e-3
    assert not torch.equal(tc.distance, fma.distance)  # the switch did change the path
    _, ref = materialised_attention(q, k, v, table.allowed_rows(0, n, heads), key_bias=bias, dtype=torch.float32)
    assert rel_err(tc.distance, ref["distance"]) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
def test_gluon_equals_triton_on_a_sliding_window(monkeypatch):
    from probe.kernels import launch

    n, d = 2049, 128
    q, k, v = (torch.randn(1, 4, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    table = sliding_window_table(n, 700, device="cuda")
    g = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, entropy=True)
    monkeypatch.setattr(k1_launch, "GLUON_HEAD_DIMS", ())
    monkeypatch.setenv("HEADSCOPE_GLUON", "0")
    t = launch.flash_forward(q, k, v, table, scaling=d**-0.5, entropy=True)
    assert rel_err(g.output, t.output) < 1e-2 and rel_err(g.lse, t.lse) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel,d", [("gluon", 128), ("triton", 128), ("gluon", 64)])
def test_act_with_strong_sinks_matches_materialised_on_gpu(causal, kernel, d, monkeypatch):
    """bf16, sinks holding most of the attention: ACT after each K1, against float32."""
    from probe.kernels.launch import ActScale, flash_forward

    n, heads, kv_heads = 1000, 8, 2
    q = torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, kv_heads, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    table = dense_table(n, causal=causal, block_q=128, block_kv=128, device="cuda")
    bias = torch.randn(1, heads, n, device="cuda") * 0.5
    bias[..., :2] += 5.0  # make the first two keys sinks that hold a large share of the attention
    selected = torch.zeros(1, heads, n, dtype=torch.bool, device="cuda")
    selected[..., :2] = True
    selected[0, 3, [17, 640, n - 1]] = True  # a late key: causal rows before it must not see it
    act = ActScale(selected, torch.full((heads,), 0.3, device="cuda"))
    assert gluon_eligible(q, k, v, table)
    if kernel == "triton":
        monkeypatch.setenv("HEADSCOPE_GLUON", "0")
    stats = kernel == "triton" or causal  # both row-statistics paths of each kernel
    r = flash_forward(q, k, v, table, scaling=d**-0.5, key_bias=bias, act=act, entropy=stats, distance=stats)
    out, _ = materialised_attention(q, k, v, table.allowed_rows(0, n, heads), key_bias=bias, scale_keys=selected,
                                    scale_factor=act.factor, dtype=torch.float32)
    plain, ref = materialised_attention(q, k, v, table.allowed_rows(0, n, heads), key_bias=bias, dtype=torch.float32)
    assert rel_err(r.output, out) < 1e-2
    assert rel_err(plain, out) > 5e-2  # the edit changes the output well beyond the tolerance
    assert rel_err(r.lse, ref["lse"]) < 1e-5  # the statistics are the unedited attention's
    if stats:
        assert rel_err(r.entropy, ref["entropy"]) < 1e-3 and rel_err(r.distance, ref["distance"]) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("causal", [False, True])
def test_backend_act_with_every_statistic_on_hopper(causal):
    """bf16 through the Gluon K1 and K2 (hd128, 128-blocks): ACT with every statistic against
    the float32 reference, GQA, a strong sink and left padding."""
    from probe.attention.reference import reference_attention
    from probe.attention.spec import KeyScale, LayerEdit, StatRequest
    from probe.kernels.backend import Call, route_for, run_kernels
    from tests.kernels.helpers import lazy, left_padding

    n, heads, kv_heads, d = 1000, 8, 2, 128
    q = torch.randn(2, heads, n, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(2, kv_heads, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    q = q + 0.3 * k[:, :, 7:8].repeat_interleave(heads // kv_heads, dim=1)  # key 7: a sink
    selected = torch.zeros(2, heads, n, dtype=torch.bool, device="cuda")
    selected[:, :3, 7] = True
    selected[:, 5, [7, 500]] = True
    edit = LayerEdit(key_scales=(KeyScale(factor=torch.full((heads,), 0.4, device="cuda"), keys=selected),))
    padding = left_padding(2, n, [0, 30]).cuda()
    want = StatRequest.all_stats(block_size=128)
    call = Call(q, k, v, lazy(2, n, n, causal=causal, padding=padding, device="cuda"), d**-0.5, None, want, edit)
    assert route_for(call).name == "triton"
    got = run_kernels(call)
    ref = reference_attention(q.float(), k.float(), v.float(), lazy(2, n, n, causal=causal, padding=padding,
                                                                    device="cuda"), want=want, edit=edit)
    assert rel_err(got.output[padding], ref.output[padding]) < 1e-2
    for name, value in ref.stats.items():
        ok = torch.isfinite(value)
        assert rel_err(got.stats[name][ok], value[ok]) < 1e-3, name


@pytest.mark.gpu
@pytest.mark.skipif(not ON_HOPPER, reason="needs a Hopper GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])  # fp16: the padding bias is clamped
def test_gluon_bias_with_padding_matches_materialised_on_gpu(dtype):
    n, heads, kv_heads, d = 4097, 8, 2, 128
    q = torch.randn(1, heads, n, d, device="cuda", dtype=dtype)
    k, v = (torch.randn(1, kv_heads, n, d, device="cuda", dtype=dtype) for _ in range(2))
    table = dense_table(n, causal=True, block_q=128, block_kv=128, device="cuda")
    bias = torch.randn(1, heads, n, device="cuda") * 3
    bias[..., 100:200] = -1.0e30  # padded keys
    r = flash_forward_gluon(q, k, v, table, scaling=d**-0.5, key_bias=bias)
    out, ref = materialised_attention(q, k, v, table.allowed_rows(0, n, heads), key_bias=bias, dtype=torch.float32)
    assert rel_err(r.output, out) < 1e-2 and rel_err(r.lse, ref["lse"]) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bias_split_carries_the_bias_to_its_low_part(dtype):
    """The S product adds ``hi + lo`` (input dtype) for ``bias / qk_scale``: relative error near
    2^-16 of the bias for bf16 (finer for fp16), and the -1e30 padding stays a finite, very
    negative logit in fp16 too."""
    from probe.kernels.gluon.k1_launch import bias_as_the_product_adds_it, bias_split

    qk_scale = 128**-0.5 * 1.4426950408889634
    bias = torch.randn(3, 4, 257, device=DEVICE) * 8  # bias_as_the_product_adds_it launches a Triton kernel
    bias[..., :5] = -1.0e30 * 1.4426950408889634  # the backend's padding, base 2
    hi, lo = bias_split(bias, qk_scale, dtype)
    assert hi.dtype == lo.dtype == dtype and torch.isfinite(hi).all() and torch.isfinite(lo).all()
    real = bias[..., 5:]
    rel = lambda x: ((x - real).abs() / real.abs().clamp_min(1e-3)).max().item()  # noqa: E731
    added = bias_as_the_product_adds_it(bias, qk_scale, dtype)
    hi_only = hi.float() * qk_scale
    assert rel(added[..., 5:]) < 2.0**-15
    assert rel(added[..., 5:]) < rel(hi_only[..., 5:]) / 16  # the low part adds at least 4 bits
    # Padding: far below any real logit (|q.k| * qk_scale is O(10) here), still finite.
    assert (added[..., :5] < -1000).all() and torch.isfinite(added).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bias_columns_kernel_writes_the_split_bit_for_bit(dtype):
    """The one-launch column builder (Triton interpreter here) against the PyTorch split, with a
    broadcast head dimension and keys padded to a whole tile."""
    from probe.kernels.gluon.k1_launch import bias_columns, bias_split

    qk_scale = 128**-0.5 * 1.4426950408889634
    bias = torch.randn(2, 1, 77, device=DEVICE) * 8  # the interpreter without a GPU, compiled with one
    bias[..., :3] = -1.0e30 * 1.4426950408889634
    cols = bias_columns(bias, 2, 3, 77, 128, qk_scale, dtype).cpu()
    # The statement on the CPU: PyTorch's CUDA division by a Python scalar multiplies by its
    # reciprocal (an ulp off at times); the kernel and the CPU divide correctly rounded.
    hi, lo = bias_split(bias.cpu().expand(2, 3, 77).reshape(6, 77), qk_scale, dtype)
    assert cols.shape == (6, 128, 16) and cols.dtype == dtype
    assert torch.equal(cols[:, :77, 0], hi) and torch.equal(cols[:, :77, 1], lo)
    assert not cols[:, 77:].any() and not cols[:, :, 2:].any()
