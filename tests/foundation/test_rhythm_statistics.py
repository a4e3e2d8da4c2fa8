"""The reasoning-rhythm statistics (Li et al. 2025): ``lookback`` (WAAD's clipped look-back) and
``band_sum`` / ``band_count`` / ``band_mean`` (FAI's banded attention received).

They are checked against reductions of the full float64 pattern written from the definitions,
on odd sizes (3 prompts, GQA 6:2 and 5:1, 37 tokens, head dim 11) with left padding of different
lengths, every chunk size, bands that cut the blocks, a band to the end, first band rows per
prompt, sliding windows and decode-style offsets; then on hand-made patterns whose answers are
known; then through a capture on a tiny Llama and a record file; and their requests' checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers.masking_utils import causal_mask_function, sliding_window_causal_mask_function

from probe import CaptureConfig, InputError, capture
from probe.attention.mask import LazyMask
from probe.attention.reference import reference_attention
from probe.attention.spec import Band, StatRequest
from probe.attention.stats import StatAccumulator
from probe.capture.hf import recording, run_forward
from probe.capture.record import AttentionRecord
from tests.helpers import LargestTensor, random_batch, tiny_loaded, untyped

NAN = float("nan")
BAND_NAMES = ("band_sum", "band_count", "band_mean")


@dataclass(frozen=True)
class Case:
    """One attention call: sizes, padding, the requested window and band, and the mask's geometry.

    Attributes:
        pad: left padding (tokens) of each prompt.
        total: positions 0..total-1 exist; the keys are ``kv_offset..total-1``, the queries
            the last ``q_len`` positions (all of them when None).
        sliding: a sliding-window mask of this size (None: causal).
        tail: right padding (tokens) of each prompt: padding queries that still see real keys.
    """

    heads: int
    kv_heads: int
    pad: tuple[int, ...]
    window: int
    band: Band
    total: int = 37
    q_len: int | None = None
    kv_offset: int = 0
    sliding: int | None = None
    tail: tuple[int, ...] = ()


CASES = {
    "gqa6:2-padding-first-rows": Case(6, 2, (0, 5, 12), 10, Band(3, 9, first_rows=(4, 0, 7))),
    "gqa5:1-band-to-the-end": Case(5, 1, (7, 0, 2), 4, Band(10, None)),
    "sliding-window-narrower-than-band": Case(6, 2, (3, 0, 9), 10, Band(2, 11, first_rows=(0, 3, 1)), sliding=6),
    "decode-last-5-queries": Case(6, 2, (0, 5, 12), 10, Band(1, 20, first_rows=(2, 0, 22)), q_len=5),
    "sliding-cache-kv-offset": Case(5, 1, (0, 3, 11), 3, Band(0, 5, first_rows=(25, 25, 20)), q_len=7, kv_offset=8,
                                    sliding=12),
    "right-padding": Case(6, 2, (0, 4, 0), 10, Band(1, 12), tail=(5, 0, 9)),
}


def make_inputs(case: Case, batch: int = 3, dim: int = 11) -> tuple:
    """float64 query/key/value, the call's LazyMask and the padding of every position."""
    q_len = case.q_len or case.total
    kv_len = case.total - case.kv_offset
    query = 2 * torch.randn(batch, case.heads, q_len, dim, dtype=torch.float64)
    key = torch.randn(batch, case.kv_heads, kv_len, dim, dtype=torch.float64)
    value = torch.randn(batch, case.kv_heads, kv_len, dim, dtype=torch.float64)
    padding = torch.ones(batch, case.total, dtype=torch.bool)
    for row, n in enumerate(case.pad):
        padding[row, :n] = False
    for row, n in enumerate(case.tail):
        padding[row, case.total - n :] = False
    rule = causal_mask_function if case.sliding is None else sliding_window_causal_mask_function(case.sliding)
    mask = LazyMask(batch, q_len, kv_len, q_offset=case.total - q_len, kv_offset=case.kv_offset,
                    mask_function=rule, padding=padding)
    return query, key, value, mask, padding


def dense_probs(query: torch.Tensor, key: torch.Tensor, mask: LazyMask) -> torch.Tensor:
    """The whole ``[batch, head, q, k]`` pattern by one plain softmax (padding queries: 0)."""
    allowed = mask.rows(0, mask.q_length)
    keys = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scores = query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1])
    return torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)


def query_padding(padding: torch.Tensor, mask: LazyMask) -> torch.Tensor:
    return padding[:, mask.q_offset : mask.q_offset + mask.q_length]


def lookback_by_the_papers_tip(p: torch.Tensor, mask: LazyMask, padding: torch.Tensor, window: int) -> torch.Tensor:
    """WAAD's per-head term as the paper suggests computing it under a causal mask: read only the
    last W keys of each row; the rest of the row's mass, ``1 - their sum``, lies at distance >= W."""
    out = torch.empty(p.shape[:3], dtype=torch.float64)
    for i in range(mask.q_length):
        t = mask.q_offset + i
        near = [j for j in range(mask.kv_length) if 0 <= t - (mask.kv_offset + j) < window]
        distance = torch.tensor([t - (mask.kv_offset + j) for j in near], dtype=torch.float64)
        mass = p[:, :, i, near]
        out[:, :, i] = (mass * distance).sum(-1) + window * (1 - mass.sum(-1))
    return out.masked_fill(~query_padding(padding, mask)[:, None], NAN)


def band_by_definition(p: torch.Tensor, mask: LazyMask, padding: torch.Tensor, band: Band) -> dict[str, torch.Tensor]:
    """``band_sum`` / ``band_count`` / ``band_mean`` key by key, in each prompt's own positions:
    position 0 is the prompt's first real key of the call; padding keys and queries take no part."""
    batch, heads, _, kv_len = p.shape
    sums = torch.zeros(batch, heads, kv_len, dtype=torch.float64)
    counts = torch.zeros(batch, kv_len, dtype=torch.float64)
    for row in range(batch):
        real = padding[row].tolist()
        origin = next(mask.kv_offset + j for j in range(kv_len) if real[mask.kv_offset + j])
        first_row = band.first_rows[row] if band.first_rows is not None else 0
        for j in range(kv_len):
            s = mask.kv_offset + j - origin
            if not real[mask.kv_offset + j]:
                continue
            rows = [i for i in range(mask.q_length)
                    if real[mask.q_offset + i]
                    and band.lo <= (mask.q_offset + i - origin) - s <= (math.inf if band.hi is None else band.hi)
                    and mask.q_offset + i - origin >= first_row]
            counts[row, j] = len(rows)
            sums[row, :, j] = p[row, :, rows, j].sum(-1)
    mean = torch.where(counts[:, None] > 0, sums / counts[:, None].clamp_min(1), NAN)
    return {"band_sum": sums, "band_count": counts, "band_mean": mean}


def assert_statistics(got: dict, expected: dict, atol: float = 1e-5) -> None:
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        torch.testing.assert_close(got[name].double(), value, atol=atol, rtol=1e-5, equal_nan=True, msg=name)


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1000])
@pytest.mark.parametrize("name", list(CASES))
def test_rhythm_statistics_equal_reductions_of_the_full_pattern(name, chunk_size):
    case = CASES[name]
    query, key, value, mask, padding = make_inputs(case)
    want = StatRequest(lookback_window=case.window, band=case.band)
    got = reference_attention(query, key, value, mask, want=want, chunk_size=chunk_size).stats
    p = dense_probs(query, key, mask)
    expected = {"lookback": lookback_by_the_papers_tip(p, mask, padding, case.window),
                **band_by_definition(p, mask, padding, case.band)}
    counts = expected["band_count"]
    assert counts.gt(0).any() and counts.eq(0).any(), "a case must have keys inside and outside every band"
    assert_statistics(got, expected)


def test_the_reference_pattern_gives_the_same_statistics():
    """The backend's own float64 pattern (pattern=True) reduced by definition: same answer."""
    case = CASES["gqa6:2-padding-first-rows"]
    query, key, value, mask, padding = make_inputs(case)
    want = StatRequest(pattern=True, lookback_window=case.window, band=case.band)
    out = reference_attention(query, key, value, mask, want=want, chunk_size=5)
    p = out.pattern.double() * query_padding(padding, mask)[:, None, :, None]
    expected = {"lookback": lookback_by_the_papers_tip(p, mask, padding, case.window),
                **band_by_definition(p, mask, padding, case.band)}
    assert_statistics(out.stats, expected)


def test_a_window_past_every_distance_gives_the_distance_statistic():
    case = CASES["gqa6:2-padding-first-rows"]
    query, key, value, mask, _ = make_inputs(case)
    stats = reference_attention(query, key, value, mask, want=StatRequest(distance=True, lookback_window=case.total),
                                chunk_size=6).stats
    torch.testing.assert_close(stats["lookback"], stats["distance"], atol=1e-4, rtol=0, equal_nan=True)
    short = reference_attention(query, key, value, mask, want=StatRequest(lookback_window=2), chunk_size=6).stats
    valid = ~stats["distance"].isnan()
    assert (short["lookback"][valid] <= stats["distance"][valid] + 1e-5).all()
    assert (short["lookback"][valid] < stats["distance"][valid] - 1e-3).any(), "W = 2 must clip some rows"


def test_other_statistics_do_not_change_when_rhythm_ones_are_added():
    case = CASES["sliding-window-narrower-than-band"]
    query, key, value, mask, _ = make_inputs(case)
    base = StatRequest(received=True, entropy=True, distance=True)
    plain = reference_attention(query, key, value, mask, want=base, chunk_size=4)
    both = reference_attention(query, key, value, mask, chunk_size=4, want=StatRequest(
        received=True, entropy=True, distance=True, lookback_window=10, band=case.band))
    torch.testing.assert_close(both.output, plain.output, atol=0, rtol=0)
    for name, value in plain.stats.items():
        torch.testing.assert_close(both.stats[name], value, atol=0, rtol=0, equal_nan=True, msg=name)


# Hand-made patterns with known answers ------------------------------------------------------


def previous_token_and_uniform(length: int, pad: tuple[int, ...]) -> torch.Tensor:
    """``[batch, 2, length, length]``: head 0 attends only to the previous token (a prompt's first
    token to itself), head 1 uniformly to every real key up to the query; padding queries: 0."""
    probs = torch.zeros(len(pad), 2, length, length, dtype=torch.float64)
    for row, first in enumerate(pad):
        for t in range(first, length):
            probs[row, 0, t, max(t - 1, first)] = 1.0
            probs[row, 1, t, first : t + 1] = 1.0 / (t + 1 - first)
    return probs


def accumulate(probs: torch.Tensor, mask: LazyMask, want: StatRequest, block: int) -> dict[str, torch.Tensor]:
    """Feed ``probs`` to a StatAccumulator in blocks of rows, each block's keys trimmed to its last row."""
    acc = StatAccumulator(want, probs, probs[:, :1], mask)
    for start in range(0, probs.shape[2], block):
        stop = min(start + block, probs.shape[2])
        acc.update(probs[:, :, start:stop, :stop], mask.rows(start, stop), start, stop)
    return acc.finish()


HAND_PAD = (0, 3)
HAND_LENGTH = 11


def hand_mask() -> LazyMask:
    padding = torch.ones(len(HAND_PAD), HAND_LENGTH, dtype=torch.bool)
    for row, n in enumerate(HAND_PAD):
        padding[row, :n] = False
    return LazyMask(len(HAND_PAD), HAND_LENGTH, HAND_LENGTH, padding=padding)


def per_prompt(values_of_position, row: int) -> list[float]:
    """A row of a per-query or per-key statistic: NaN on padding, then ``values_of_position(u)``
    for the prompt's positions u = 0, 1, ..."""
    first = HAND_PAD[row]
    return [NAN] * first + [values_of_position(u, HAND_LENGTH - first) for u in range(HAND_LENGTH - first)]


@pytest.mark.parametrize("block", [1, 3, 4, 100])
@pytest.mark.parametrize("window", [1, 3, 10])
def test_lookback_of_a_previous_token_head_and_a_uniform_head(window, block):
    got = accumulate(previous_token_and_uniform(HAND_LENGTH, HAND_PAD), hand_mask(),
                     StatRequest(lookback_window=window), block)["lookback"]
    for row in range(len(HAND_PAD)):
        previous = per_prompt(lambda u, m: 0.0 if u == 0 else 1.0, row)
        uniform = per_prompt(lambda u, m: sum(min(d, window) for d in range(u + 1)) / (u + 1), row)
        expected = torch.tensor([previous, uniform], dtype=torch.float32)
        torch.testing.assert_close(got[row], expected, atol=1e-6, rtol=0, equal_nan=True)


def band_expectations(band: Band, row: int) -> dict[str, list[list[float]] | list[float]]:
    """Per key (prompt position s of m): the queries of its band, and what each head pays from them."""
    first_row = band.first_rows[row] if band.first_rows else 0

    def queries(s: int, m: int) -> list[int]:
        hi = m - 1 if band.hi is None else min(m - 1, s + band.hi)
        return [t for t in range(max(s + band.lo, first_row), hi + 1)]

    def count(s: int, m: int) -> float:
        return float(len(queries(s, m)))

    def previous(s: int, m: int) -> float:
        return float(sum(1.0 for t in queries(s, m) if t - 1 == s or (t == 0 and s == 0)))

    def uniform(s: int, m: int) -> float:
        return sum(1.0 / (t + 1) for t in queries(s, m))

    counts = [0.0 if math.isnan(c) else c for c in per_prompt(count, row)]
    sums = [[0.0 if math.isnan(x) else x for x in per_prompt(head, row)] for head in (previous, uniform)]
    means = [[s / c if c else NAN for s, c in zip(head, counts)] for head in sums]
    return {"band_count": counts, "band_sum": sums, "band_mean": means}


@pytest.mark.parametrize("block", [1, 3, 4, 100])
@pytest.mark.parametrize("band", [Band(1, 1), Band(2, None), Band(0, None, first_rows=(4, 4)), Band(2, 5, (6, 0))],
                         ids=str)
def test_band_of_a_previous_token_head_and_a_uniform_head(band, block):
    got = accumulate(previous_token_and_uniform(HAND_LENGTH, HAND_PAD), hand_mask(), StatRequest(band=band), block)
    for row in range(len(HAND_PAD)):
        for name, values in band_expectations(band, row).items():
            expected = torch.tensor(values, dtype=torch.float32)
            torch.testing.assert_close(got[name][row], expected, atol=1e-6, rtol=0, equal_nan=True, msg=name)


def test_a_band_one_token_back_of_a_previous_token_head():
    """Spelled out: every key but the last receives exactly 1 from the next token; the last has no band."""
    got = accumulate(previous_token_and_uniform(HAND_LENGTH, (0,)), LazyMask(1, HAND_LENGTH, HAND_LENGTH),
                     StatRequest(band=Band(1, 1)), 4)
    assert got["band_count"][0].tolist() == [1.0] * (HAND_LENGTH - 1) + [0.0]
    assert got["band_sum"][0, 0].tolist() == [1.0] * (HAND_LENGTH - 1) + [0.0]
    assert got["band_mean"][0, 0, :-1].eq(1.0).all() and got["band_mean"][0, :, -1].isnan().all()


def test_a_band_longer_than_the_input_is_empty():
    case = CASES["gqa5:1-band-to-the-end"]
    query, key, value, mask, _ = make_inputs(case)
    stats = reference_attention(query, key, value, mask, want=StatRequest(band=Band(case.total, None)),
                                chunk_size=7).stats
    assert stats["band_count"].eq(0).all() and stats["band_sum"].eq(0).all()
    assert stats["band_mean"].isnan().all()


# Requests -------------------------------------------------------------------------------------





@pytest.mark.parametrize("window", [0, -3, 2.0, 1.5, True, "10"], ids=repr)
def test_bad_lookback_windows_are_refused(window):
    with untyped(), pytest.raises(ValueError, match=r"lookback_window must be an integer >= 1"):
        StatRequest(lookback_window=window)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"lo": -1}, r"Band\.lo must be an integer >= 0"),
        ({"lo": 1.5}, r"Band\.lo must be an integer >= 0"),
        ({"lo": True}, r"Band\.lo must be an integer >= 0"),
        ({"lo": 5, "hi": 4}, r"Band\.hi must be an integer >= lo=5, or None"),
        ({"lo": 1, "hi": 2.5}, r"Band\.hi must be an integer"),
        ({"first_rows": (1, -2)}, r"Band\.first_rows must hold one integer >= 0 per batch row"),
        ({"first_rows": (1.0,)}, r"Band\.first_rows must hold one integer >= 0 per batch row"),
        ({"first_rows": ()}, r"Band\.first_rows must hold one integer >= 0 per batch row"),
        ({"first_rows": 5}, r"Band\.first_rows must be a sequence of integers"),
        ({"first_rows": "ab"}, r"Band\.first_rows must be a sequence of integers"),
    ],
    ids=repr,
)
def test_bad_bands_are_refused(arguments, message):
    with untyped(), pytest.raises(ValueError, match=message):
        Band(**arguments)


def test_a_band_keeps_plain_integers():
    with untyped():
        band = Band(torch.tensor(2), None, first_rows=[torch.tensor(3), 0])
        window = StatRequest(lookback_window=torch.tensor(4)).lookback_window
    assert band == Band(2, None, (3, 0)) and type(band.lo) is int and band.first_rows == (3, 0)
    assert window == 4 and type(window) is int


def test_a_band_that_is_not_a_band_is_refused():
    with untyped(), pytest.raises(ValueError, match=r"band must be a Band\(lo, hi, first_rows\)"):
        StatRequest(band=(10, 100))


def test_first_rows_for_another_batch_size_are_refused():
    query, key, value, mask, _ = make_inputs(CASES["gqa6:2-padding-first-rows"])
    with pytest.raises(ValueError, match=r"first_rows.*has 2 entries but the attention call has 3 batch rows"):
        reference_attention(query, key, value, mask, want=StatRequest(band=Band(1, 4, (0, 0))))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"band_hi": 5}, r"band_hi and band_first_rows need band_lo"),
        ({"band_first_rows": (0, 1)}, r"band_hi and band_first_rows need band_lo"),
        ({"band_lo": 3, "band_hi": 1}, r"Band\.hi must be an integer >= lo=3"),
        ({"lookback_window": 0}, r"lookback_window must be an integer >= 1"),
    ],
    ids=repr,
)
def test_bad_capture_settings_are_input_errors(settings, message):
    with untyped(), pytest.raises(InputError, match=message):
        CaptureConfig(**settings)


def test_capture_settings_default_off_and_round_trip_through_a_dict():
    assert CaptureConfig().request().lookback_window is None and CaptureConfig().request().band is None
    with untyped():
        config = CaptureConfig(lookback_window=10, band_lo=10, band_hi=100, band_first_rows=[3, 0])
    assert config.request().band == Band(10, 100, (3, 0)) and config.request().lookback_window == 10
    assert CaptureConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["band_first_rows"] == [3, 0]


# Through a model -----------------------------------------------------------------------------


PROMPTS = ["Hello there, general Kenobi, you are a bold one", "Hi there, friend", "A third prompt, of middle length"]
RHYTHM = dict(lookback_window=10, band_lo=2, band_hi=None, band_first_rows=(3, 1, 0))


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")


@pytest.fixture(scope="module")
def records(tiny):
    """The same capture in pattern mode (one block: the reference) and in statistics mode (chunks of 4)."""
    pattern = capture(tiny, PROMPTS, CaptureConfig(mode="pattern", **RHYTHM))
    stats = capture(tiny, PROMPTS, CaptureConfig(mode="stats", chunk_size=4, **RHYTHM))
    return pattern, stats


def test_a_capture_returns_the_rhythm_statistics_with_their_shapes(records, tiny):
    _, record = records
    batch, width = record.input_ids.shape
    heads = tiny.geometry.n_heads
    shapes = {"lookback": (batch, heads, width), "band_sum": (batch, heads, width),
              "band_mean": (batch, heads, width), "band_count": (batch, width)}
    for layer in record.layers:
        for name, shape in shapes.items():
            assert tuple(record.stats[layer][name].shape) == shape, (layer, name)
        assert record.stat(layer, "band_count", prompt=1).shape == (len(record.tokens[1]),)


def test_captured_statistics_equal_reductions_of_the_captured_patterns(records):
    pattern_record, record = records
    batch, width = record.input_ids.shape
    padding = record.attention_mask.bool()
    mask = LazyMask(batch, width, width, padding=padding)
    band = CaptureConfig(**RHYTHM).band()
    for layer in record.layers:
        p = pattern_record.patterns[layer].double() * padding[:, None, :, None]
        expected = {"lookback": lookback_by_the_papers_tip(p, mask, padding, RHYTHM["lookback_window"]),
                    **band_by_definition(p, mask, padding, band)}
        assert_statistics(record.stats[layer], expected, atol=1e-5)
        assert_statistics(pattern_record.stats[layer], expected, atol=1e-5)


def test_a_record_with_rhythm_statistics_round_trips(records, tmp_path):
    _, record = records
    loaded = AttentionRecord.load(record.save(tmp_path / "rhythm"))
    assert loaded.config == record.config and loaded.config.band_first_rows == (3, 1, 0)
    for layer in record.layers:
        assert set(loaded.stats[layer]) == set(record.stats[layer])
        for name in ("lookback", *BAND_NAMES):
            torch.testing.assert_close(loaded.stats[layer][name], record.stats[layer][name], atol=0, rtol=0,
                                       equal_nan=True)


def test_a_rhythm_statistic_of_the_wrong_shape_is_refused(records, tmp_path):
    _, record = records
    path = record.save(tmp_path / "rhythm")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    tensors["stats.0.band_count"] = tensors["stats.0.band_sum"].clone()  # [batch, head, key] where [batch, key] belongs
    save_file(tensors, str(path), metadata=header)
    with pytest.raises(ValueError, match=r"stats\.0\.band_count has 3 dimensions, expected 2 \(batch, key\)"):
        AttentionRecord.load(path)


def test_nested_sessions_share_one_window_and_refuse_two(tiny):
    model = tiny.hf
    ids, mask = random_batch(length=13)
    with recording(model, CaptureConfig(lookback_window=10), (1,)) as outer, \
            recording(model, CaptureConfig(band_lo=2), (1,)) as inner:
        run_forward(model, ids, mask)
    for recorder in (outer, inner):
        assert {"lookback", *BAND_NAMES} <= set(recorder.prefill(1)["stats"])
    with pytest.raises(ValueError, match=r"different lookback_window settings \[10, 5\].*same lookback_window"):
        with recording(model, CaptureConfig(lookback_window=10), (1,)), \
                recording(model, CaptureConfig(lookback_window=5), (1,)):
            run_forward(model, ids, mask)


# Memory ----------------------------------------------------------------------------------------


def test_rhythm_statistics_hold_one_block_of_rows_at_a_time():
    n, heads, chunk = 517, 3, 32
    query, key = torch.randn(1, heads, n, 8), torch.randn(1, 1, n, 8)
    want = StatRequest(lookback_window=10, band=Band(10, None, first_rows=(40,)))
    with LargestTensor() as probe:
        reference_attention(query, key, key, LazyMask(1, n, n), want=want, chunk_size=chunk)
    assert probe.largest <= heads * chunk * n, f"a tensor of {probe.largest} elements exceeds one block of rows"
