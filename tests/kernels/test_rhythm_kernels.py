"""The reasoning-rhythm statistics in the kernels: ``lookback`` from the Triton K1, ``band_sum``
from the Triton K2, ``band_count`` from the mask (issue 22).

Checked against reductions of the whole float64 pattern written from the definitions in
:mod:`probe.attention.spec`, and against the reference backend, on odd sizes (77 and 133 tokens,
two 128-query tiles, a 9-query decode step), GQA 6:2 and 6:3, head dim 64, left and right padding
of mixed lengths, bands with and without an upper bound and first rows, windows 1, 10 and
longer than the input. On CPU the kernels run in Triton's interpreter (tests/conftest.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

pytest.importorskip("triton")

from probe.attention.mask import LazyMask  # noqa: E402
from probe.attention.reference import reference_attention  # noqa: E402
from probe.attention.spec import Band, KeyScale, LayerEdit, StatRequest  # noqa: E402
from probe.kernels.backend import Call, band_count, band_rows, route_for, run_kernels  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402
from probe.kernels.launch import BandRows, column_stats, flash_forward  # noqa: E402
from tests.kernels.helpers import lazy, qkv, rel_err  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fp32 inputs: exact to rounding in the interpreter; a GPU's fp32 dots are TF32 (test_triton_kernels.py).
TOL = 1e-4 if DEVICE == "cpu" else 3e-3
BAND_STATS = ("band_sum", "band_count", "band_mean")
D = 64


@dataclass(frozen=True)
class Case:
    """One backend call. ``pads``: (left, right) padding tokens per prompt; ``n_q`` < ``n``: the
    last ``n_q`` positions are the queries (a decode step over a cache)."""

    heads: int
    kv_heads: int
    n: int
    pads: tuple[tuple[int, int], ...]
    window: int
    band: Band
    n_q: int | None = None
    edit: bool = False
    more: bool = False  # also received, block, entropy and distance statistics in the same call
    sliding: int | None = None


CASES = {
    "77-gqa6:2-band-first-rows-w10": Case(6, 2, 77, ((0, 0), (5, 0), (30, 6)), 10, Band(3, 20, first_rows=(4, 0, 7))),
    "133-gqa6:3-band-to-the-end-w1": Case(6, 3, 133, ((0, 0), (17, 0)), 1, Band(10, None)),
    "77-window-past-the-input-bias-and-every-statistic": Case(
        6, 2, 77, ((11, 0), (0, 0)), 200, Band(0, None, first_rows=(30, 2)), edit=True, more=True),
    "decode-9-of-77": Case(6, 2, 77, ((0, 0), (13, 0)), 10, Band(2, 40, first_rows=(60, 3)), n_q=9),
    # The band reaches past the window: hidden queries count for band_count and pay 0.
    "sliding-window-16-band-to-30": Case(6, 2, 77, ((0, 0), (9, 0)), 10, Band(2, 30, first_rows=(0, 5)), sliding=16),
}


def padding_of(case: Case) -> torch.Tensor:
    real = torch.ones(len(case.pads), case.n, dtype=torch.bool)
    for row, (left, right) in enumerate(case.pads):
        real[row, :left] = False
        real[row, case.n - right:] = False
    return real


def definitions(p: torch.Tensor, mask: LazyMask, window: int, band: Band) -> dict[str, torch.Tensor]:
    """``lookback`` and the band statistics of a float64 pattern ``[batch, head, q, k]`` (0 on padding
    queries), from the definitions: positions ``t = q_offset + i``, ``s = kv_offset + j``."""
    t = torch.arange(mask.q_length) + mask.q_offset
    s = torch.arange(mask.kv_length) + mask.kv_offset
    ahead = (t[:, None] - s[None, :]).double()  # [q, k]
    q_real, k_real = mask.query_padding(), mask.key_padding()
    lookback = (p * ahead.clamp_max(window)).sum(-1).masked_fill(~q_real[:, None], math.nan)
    origin = mask.first_key() + mask.kv_offset  # each prompt's first real position
    first = origin + (torch.tensor(band.first_rows) if band.first_rows is not None else 0)
    in_band = (ahead >= band.lo) & (ahead <= (math.inf if band.hi is None else band.hi))
    counted = in_band[None] & (q_real & (t[None, :] >= first[:, None]))[:, :, None] & k_real[:, None, :]
    total = (p * counted[:, None]).sum(2)
    count = counted.sum(1).double()
    mean = torch.where(count[:, None] > 0, total / count[:, None].clamp_min(1), math.nan)
    return {"lookback": lookback, "band_sum": total, "band_count": count, "band_mean": mean}


def float64_pattern(q, k, mask: LazyMask, bias: torch.Tensor | None) -> torch.Tensor:
    """The whole pattern by one float64 softmax of the masked logits; padding queries get 0."""
    q, k = q.double().cpu(), k.double().cpu()
    keys = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = q @ keys.transpose(-1, -2) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias.double().cpu()[:, :, None, :]
    allowed = mask.rows(0, mask.q_length)
    p = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)
    return p * mask.query_padding()[:, None, :, None]


def inputs(case: Case, batch: int):
    n_q = case.n_q or case.n
    q, k, v = qkv(batch, case.heads, case.kv_heads, case.n, D, device=DEVICE, n_q=n_q)
    padding = padding_of(case)
    edit = None
    if case.edit:
        edit = LayerEdit(key_bias=torch.randn(batch, case.heads, case.n, device=DEVICE),
                         head_scale=torch.rand(case.heads, device=DEVICE) + 0.5)
    return q, k, v, padding, n_q, edit


def cpu_edit(edit: LayerEdit | None) -> LayerEdit | None:
    return None if edit is None else LayerEdit(key_bias=edit.key_bias.cpu(), head_scale=edit.head_scale.cpu())


@pytest.mark.parametrize("name", list(CASES))
def test_backend_rhythm_statistics_equal_the_float64_pattern_and_the_reference(name):
    case = CASES[name]
    batch = len(case.pads)
    q, k, v, padding, n_q, edit = inputs(case, batch)
    want = StatRequest(lookback_window=case.window, band=case.band, received=case.more, entropy=case.more,
                       distance=case.more, block_size=32 if case.more else None)
    on_device = lazy(batch, n_q, case.n, padding=padding.to(DEVICE), window=case.sliding, device=DEVICE)
    got = run_kernels(Call(q, k, v, on_device, D**-0.5, None, want, edit)).stats
    mask = lazy(batch, n_q, case.n, padding=padding, window=case.sliding)
    ref = reference_attention(q.cpu(), k.cpu(), v.cpu(), mask, want=want, edit=cpu_edit(edit)).stats
    p = float64_pattern(q, k, mask, edit.key_bias if edit is not None else None)
    expected = definitions(p, mask, case.window, case.band)
    assert set(got) == set(ref)
    assert expected["band_count"].gt(0).any() and expected["band_count"].eq(0).any(), "keys in and out of the band"
    for stat, value in expected.items():
        assert got[stat].shape == value.shape and got[stat].dtype == torch.float32, stat
        assert rel_err(got[stat], value) < TOL, stat
        assert rel_err(ref[stat], value) < TOL, stat
    assert torch.equal(got["band_count"].cpu(), ref["band_count"]), "counts are exact"
    for stat in set(ref) - set(expected):  # the other statistics of the same call
        assert rel_err(got[stat], ref[stat]) < TOL, stat


@pytest.mark.parametrize("causal, window, tma", [(True, 1, False), (False, 1, False), (True, 10, True),
                                                 (False, 10, True), (True, 500, False), (False, 500, False)])
def test_k1_lookback_and_k2_band_on_small_tiles(causal, window, tma, monkeypatch):
    """The launch functions on 32-wide tiles (several full and partial blocks per row and column),
    bidirectional attention too (negative ``t - s``: clipped at W only above), GQA 6:2, no padding,
    against the float64 pattern; the output, log-sum-exp and distance are those of the same call
    without the look-back. ``tma``: tensor-descriptor loads forced on (the interpreter runs them)."""
    monkeypatch.setenv("HEADSCOPE_TMA", "1" if tma else "0")
    batch, heads, kv_heads, n = 1, 6, 2, 77
    q, k, v = qkv(batch, heads, kv_heads, n, D, device=DEVICE)
    table = dense_table(n, causal=causal, block_q=32, block_kv=32, device=DEVICE)
    r = flash_forward(q, k, v, table, scaling=D**-0.5, distance=True, lookback_window=window)
    band = Band(2, 30, first_rows=(5,))
    rows = BandRows(lo=band.lo, hi=band.hi, first_query=torch.tensor([5], device=DEVICE))
    cols = column_stats(q, k, r.lse, table, scaling=D**-0.5, band=rows)
    mask = lazy(batch, n, n, causal=causal)
    expected = definitions(float64_pattern(q, k, mask, None), mask, window, band)
    assert rel_err(r.lookback, expected["lookback"]) < TOL
    assert rel_err(cols["band_sum"], expected["band_sum"]) < TOL
    plain = flash_forward(q, k, v, table, scaling=D**-0.5, distance=True)
    for stat in ("output", "lse", "distance"):  # the accumulator changes nothing else
        assert rel_err(getattr(r, stat), getattr(plain, stat)) <= 1e-6, stat
    if window == 500 and causal:
        assert rel_err(r.lookback, r.distance) < TOL, "a window past every distance is the distance"


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU")
@pytest.mark.parametrize("d", [64, 128])
def test_backend_bf16_rhythm_statistics_against_float32_reference(d):
    """bf16 at the tuned tiles (128-query blocks, tensor descriptors on Hopper): the Triton K1 and K2
    rather than the Gluon ones, GQA, left padding, with the other statistics of the same call,
    against the float32 reference on the same rounded inputs."""
    batch, heads, kv_heads, n = 2, 8, 2, 1000
    q, k, v = (t.to(torch.bfloat16) for t in qkv(batch, heads, kv_heads, n, d, device=DEVICE))
    padding = torch.arange(n)[None, :] >= torch.tensor([0, 37])[:, None]
    want = StatRequest(lookback_window=10, band=Band(10, 100, first_rows=(50, 0)), received=True, entropy=True,
                       distance=True)
    call = Call(q, k, v, lazy(batch, n, n, padding=padding.to(DEVICE), device=DEVICE), d**-0.5, None, want, None)
    assert route_for(call).name == "triton"
    got = run_kernels(call).stats
    ref = reference_attention(q.float().cpu(), k.float().cpu(), v.float().cpu(), lazy(batch, n, n, padding=padding),
                              want=want).stats
    assert set(got) == set(ref)
    assert torch.equal(got["band_count"].cpu(), ref["band_count"])
    for stat, value in ref.items():
        ok = torch.isfinite(value)
        assert torch.equal(ok, torch.isfinite(got[stat].cpu())), stat
        assert rel_err(got[stat].cpu()[ok], value[ok]) < 1e-3, stat


def test_band_count_equals_the_reference_count_for_every_band():
    """``band_count`` from positions alone (a cumulative sum) against the reference's count, over
    bands that start and end past the input, offsets and right padding."""
    batch, n, n_q = 3, 40, 12
    padding = torch.ones(batch, n, dtype=torch.bool)
    padding[1, :7] = padding[2, :3] = padding[2, -4:] = False
    for q_len in (n, n_q):
        mask = lazy(batch, q_len, n, padding=padding)
        for band in (Band(0, 0), Band(0, None), Band(5, 9, (0, 3, 30)), Band(39, None), Band(50, 60),
                     Band(1, 2, (99, 0, 2))):
            q = torch.zeros(batch, 1, q_len, 4)
            k = torch.zeros(batch, 1, n, 4)
            ref = reference_attention(q, k, k, mask, want=StatRequest(band=band), chunk_size=7).stats["band_count"]
            assert torch.equal(band_count(mask, band_rows(mask, band, "cpu")), ref), (q_len, band)


def test_first_rows_for_another_batch_size_are_refused_as_by_the_reference():
    case = CASES["77-gqa6:2-band-first-rows-w10"]
    q, k, v, padding, n_q, _ = inputs(case, 3)
    call = Call(q, k, v, lazy(3, n_q, case.n, padding=padding.to(DEVICE), device=DEVICE), D**-0.5, None,
                StatRequest(band=Band(1, 4, (0, 0))), None)
    with pytest.raises(ValueError, match=r"first_rows.*has 2 entries but the attention call has 3 batch rows"):
        run_kernels(call)


class FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA, to see which route a GPU call would take."""

    @property
    def is_cuda(self) -> bool:
        return True


@pytest.mark.parametrize(
    "want", [StatRequest(lookback_window=10), StatRequest(band=Band(10, 100)),
             StatRequest(entropy=True, received=True, lookback_window=1, band=Band(0, None, (3,)))],
    ids=["lookback", "band", "both-with-others"])
def test_the_kernels_backend_sends_rhythm_statistics_to_the_kernels(want):
    query = torch.randn(1, 4, 8, 64, dtype=torch.bfloat16).as_subclass(FakeCuda)
    key = torch.randn(1, 2, 8, 64, dtype=torch.bfloat16).as_subclass(FakeCuda)
    mask = LazyMask(1, 8, 8)
    assert route_for(Call(query, key, key, mask, 0.125, None, want, None)).name == "triton"
    bias = LayerEdit(key_bias=torch.zeros(1, 4, 8), head_scale=torch.ones(4))
    assert route_for(Call(query, key, key, mask, 0.125, None, want, bias)).name == "triton"
    act = LayerEdit(key_scales=(KeyScale(factor=torch.full((4,), 0.5), keys=torch.zeros(1, 4, 8, dtype=torch.bool)),))
    assert route_for(Call(query, key, key, mask, 0.125, None, StatRequest(entropy=True), act)).name == "triton"
    assert route_for(Call(query, key, key, mask, 0.125, None, want, act)).name == "reference", \
        "ACT's pass does not rewrite the rhythm statistics: the reference computes them"
