"""Rhythm metrics (head spans and roles, WAAD, FAI, token entropy) and peaks with their couplings.

The metrics from one statistics capture are checked against the paper's formulas applied
literally to full float64 patterns; hand-made attention checks answers known in advance."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from circuits.evaluation.bootstrap import Interval
from circuits.rhythm.metrics import (
    HeadRoles,
    RhythmConfig,
    TokenRhythm,
    group_fai,
    group_size,
    group_waad,
    head_roles,
    head_spans,
    paper_rl_layers,
    predicted_token_entropy,
    response_entropy,
    rhythm_config_capture,
    rhythm_metrics,
    token_entropy,
)
from circuits.rhythm.peaks import (
    COUPLINGS,
    PAPER_COUPLINGS,
    CouplingConfig,
    NoPeaksError,
    PeakRule,
    fai_peaks,
    hit_coupling,
    prominences,
    rhythm_couplings,
    strict_local_maxima,
    value_coupling,
    waad_peaks,
)
from probe import capture
from probe.capture import AttentionRecord
from tests.helpers import tiny_loaded, tiny_loaded_varied

WORDS = "the cat sat on a mat while seven dogs ran past two red boxes and one tall tree".split()
CONFIGS = [RhythmConfig(band_hi=None),  # the paper's section 4: W = 10, band 10 .. end
           RhythmConfig(window=4, band_lo=3, band_hi=12, local_fraction=0.25, global_fraction=0.4)]


@pytest.fixture(scope="module")
def model():
    """The tiny Llama with unit-scale embeddings, so hidden states and token entropies vary along a response."""
    return tiny_loaded_varied(lm_head_scale=0.3)


@pytest.fixture(scope="module")
def batch(model):
    """Three prompts of different lengths (left padding) and a response start in each one's middle."""
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, size=n)) for n in (44, 70, 57)]
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    assert len(set(lengths)) == 3 and 40 <= min(lengths) and max(lengths) <= 80
    return texts, [n // 2 for n in lengths]


# --- the paper's formulas, literally, on float64 patterns --------------------------------------


def literal_spans(patterns: dict[int, torch.Tensor], rows: range) -> torch.Tensor:
    """Eq. 7: d(l, h) = 1/|R| sum_{t in R} sum_{s <= t} A[t, s] (t - s)."""
    n = next(iter(patterns.values())).shape[-1]
    gap = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).double()
    return torch.stack([(p * gap).sum(-1)[:, list(rows)].mean(-1) for p in patterns.values()])


def literal_groups(spans: torch.Tensor, layers: list[int], config: RhythmConfig) -> tuple[set, set]:
    flat = [(float(spans[i, h]), layers[i], h) for i in range(spans.shape[0]) for h in range(spans.shape[1])]
    ranked = sorted(flat)
    n_local = max(1, math.floor(config.local_fraction * len(flat) + 0.5))
    n_global = max(1, math.floor(config.global_fraction * len(flat) + 0.5))
    return {(l, h) for _, l, h in ranked[:n_local]}, {(l, h) for _, l, h in ranked[-n_global:]}


def mean_map(patterns: dict[int, torch.Tensor], heads) -> torch.Tensor:
    """Eq. 8: the group-mean attention map."""
    return torch.stack([patterns[l][h] for l, h in heads]).mean(0)


def literal_waad(a_loc: torch.Tensor, rows: range, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9, and the paper's implementation tip (only the last W columns of each row)."""
    eq9, tip = [], []
    for t in rows:
        eq9.append(sum(a_loc[t, s] * min(t - s, w) for s in range(t + 1)))
        window = range(max(0, t - w + 1), t + 1)
        inside = sum(a_loc[t, s] for s in window)
        tip.append(sum(a_loc[t, s] * (t - s) for s in window) + w * (1 - inside))
    return torch.stack(eq9), torch.stack(tip)


def literal_fai(a_glob: torch.Tensor, rows: range, lo: int, hi: int | None) -> torch.Tensor:
    """Eq. 10: FAI_s = 1/|T(s)| sum_{t in T(s)} A_glob[t, s], T(s) = {t in R: s+lo <= t <= min(N, s+hi)}."""
    n = a_glob.shape[0]
    out = []
    for s in rows:
        band = [t for t in rows if s + lo <= t <= min(n - 1, s + (hi if hi is not None else n))]
        out.append(sum(a_glob[t, s] for t in band) / len(band) if band else torch.tensor(math.nan, dtype=torch.float64))
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in out])


@pytest.mark.parametrize("config", CONFIGS, ids=["paper-section4", "small-band"])
def test_statistics_match_the_paper_formulas_on_patterns(model, batch, config):
    texts, starts = batch
    stats = capture(model, texts, replace(rhythm_config_capture(config, starts), chunk_size=16))
    full = capture(model, texts, replace(rhythm_config_capture(config, starts), mode="pattern"))
    assert stats.patterns == {} and stats.input_ids.shape[0] == 3
    rhythms = rhythm_metrics(stats, starts, config)
    for prompt, (rhythm, start) in enumerate(zip(rhythms, starts)):
        patterns = {l: full.pattern(l, prompt).double() for l in full.layers}
        n = len(full.tokens[prompt])
        rows = range(start, n)
        spans = literal_spans(patterns, rows)
        torch.testing.assert_close(rhythm.roles.spans, spans, rtol=1e-5, atol=1e-4)
        local, glob = literal_groups(spans, full.layers, config)
        assert set(rhythm.roles.local_heads) == local and set(rhythm.roles.global_heads) == glob
        eq9, tip = literal_waad(mean_map(patterns, local), rows, config.window)
        torch.testing.assert_close(eq9, tip)
        torch.testing.assert_close(rhythm.waad, eq9, rtol=1e-5, atol=1e-5)
        expected_fai = literal_fai(mean_map(patterns, glob), rows, config.band_lo, config.band_hi)
        torch.testing.assert_close(rhythm.fai, expected_fai, rtol=1e-4, atol=1e-7, equal_nan=True)
        assert torch.isnan(rhythm.fai[-config.band_lo:]).all() and torch.isfinite(rhythm.fai[:-config.band_lo]).all()
        assert rhythm.tokens == tuple(full.tokens[prompt][start:]) and len(rhythm.waad) == n - start


@pytest.mark.parametrize("config", CONFIGS[1:], ids=["small-band"])
def test_fai_is_the_mean_of_per_head_banded_means(model, batch, config):
    """|T(s)| does not depend on the head: the group mean of banded means is the banded mean of the mean map."""
    texts, starts = batch
    record = capture(model, texts, replace(rhythm_config_capture(config, starts), mode="pattern"))
    rhythm = rhythm_metrics(record, starts, config)[1]
    heads = rhythm.roles.global_heads
    per_head = torch.stack([record.stat(l, "band_mean", 1)[h, starts[1]:].double() for l, h in heads]).mean(0)
    torch.testing.assert_close(rhythm.fai, per_head, equal_nan=True)
    everywhere = capture(model, texts, replace(rhythm_config_capture(config, starts), band_first_rows=None))
    torch.testing.assert_close(rhythm_metrics(everywhere, starts, config)[1].fai, rhythm.fai, equal_nan=True)
    patterns = {l: record.pattern(l, 1).double() for l in record.layers}
    rows = range(starts[1], len(record.tokens[1]))
    banded_each = torch.stack([literal_fai(patterns[l][h], rows, config.band_lo, config.band_hi) for l, h in heads])
    torch.testing.assert_close(banded_each.mean(0), literal_fai(mean_map(patterns, heads), rows, config.band_lo,
                                                               config.band_hi), equal_nan=True)


def test_entropy_rows_predict_the_response_tokens(model, batch):
    """Token t's entropy is that of row t - 1; the record path strips each prompt's left padding."""
    texts, starts = batch
    config = CONFIGS[1]
    record = capture(model, texts, rhythm_config_capture(config, starts))
    rhythms = rhythm_metrics(record, starts, config, model=model)
    for prompt, rhythm in enumerate(rhythms):
        ids = record.input_ids[prompt, record.offset(prompt):]
        with torch.no_grad():
            logits = model.hf(input_ids=ids[None]).logits[0]
        rows = token_entropy(logits)
        start = starts[prompt]
        torch.testing.assert_close(rhythm.entropy, rows[start - 1 : -1])
        torch.testing.assert_close(response_entropy(model, ids, start), predicted_token_entropy(logits, start))
        assert not torch.allclose(rhythm.entropy, rows[start:], atol=1e-3)  # the off-by-one would show


def test_entropy_alignment_on_hand_made_logits():
    """Row r holds r + 1 equally likely tokens (entropy log(r + 1)), so token t must read log(t)."""
    n, start = 9, 4
    logits = torch.full((n, 16), -math.inf)
    for r in range(n):
        logits[r, : r + 1] = 0.0
    torch.testing.assert_close(token_entropy(logits), torch.log(torch.arange(1, n + 1, dtype=torch.float64)))
    expected = torch.log(torch.arange(start, n, dtype=torch.float64))
    torch.testing.assert_close(predicted_token_entropy(logits, start), expected)
    with pytest.raises(ValueError, match="empty"):
        predicted_token_entropy(logits, n)
    with pytest.raises(ValueError, match="empty"):
        predicted_token_entropy(logits, 0)


# --- hand-made attention -------------------------------------------------------------------


def previous_token(n: int) -> torch.Tensor:
    a = torch.zeros(n, n, dtype=torch.float64)
    a[0, 0] = 1.0
    a[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    return a


def uniform(n: int) -> torch.Tensor:
    a = torch.tril(torch.ones(n, n, dtype=torch.float64))
    return a / a.sum(-1, keepdim=True)


def anchored(n: int, key: int, from_row: int) -> torch.Tensor:
    """Uniform attention, except rows ``from_row..`` that attend to ``key`` only."""
    a = uniform(n)
    a[from_row:] = 0.0
    a[from_row:, key] = 1.0
    return a


def reduce_pattern(pattern: torch.Tensor, w: int, lo: int, hi: int | None, first_row: int) -> dict[str, torch.Tensor]:
    """The capture's statistics of one unpadded prompt ``[head, q, k]``, by their definitions."""
    n = pattern.shape[-1]
    gap = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).double()
    in_band = (gap >= lo) & (gap <= (hi if hi is not None else n)) & (torch.arange(n)[:, None] >= first_row)
    count = in_band.sum(0).float()
    band_sum = (pattern * in_band).sum(1).float()
    return {"distance": (pattern * gap).sum(-1).float()[None], "lookback": (pattern * gap.clamp(max=w)).sum(-1).float()[None],
            "band_sum": band_sum[None], "band_count": count[None],
            "band_mean": torch.where(count > 0, band_sum / count.clamp_min(1), math.nan)[None]}


def hand_record(heads: dict[int, list[torch.Tensor]], config: RhythmConfig, start: int) -> AttentionRecord:
    """A one-prompt record whose statistics come from hand-made patterns (layer -> head patterns)."""
    n = next(iter(heads.values()))[0].shape[0]
    capture_config = replace(rhythm_config_capture(config, [start]), layers=tuple(heads))
    stats = {l: reduce_pattern(torch.stack(p), config.window, config.band_lo, config.band_hi, start)
             for l, p in heads.items()}
    return AttentionRecord(model="hand", config=capture_config, tokens=[[f"t{i}" for i in range(n)]],
                           input_ids=torch.arange(n)[None], attention_mask=torch.ones(1, n, dtype=torch.long),
                           n_heads=len(next(iter(heads.values()))), stats=stats)


HAND = RhythmConfig(window=5, band_lo=2, band_hi=None, receiver_fraction=0.1, receivers_outside_global=False)
N, START, ANCHOR = 30, 12, 16


@pytest.fixture
def hand():
    """7 previous-token heads, 2 uniform heads and one head whose last rows attend to token 16."""
    heads = {0: [previous_token(N)] * 5, 1: [previous_token(N)] * 2 + [uniform(N)] * 2 + [anchored(N, ANCHOR, 25)]}
    return hand_record(heads, HAND, START)


def test_receiver_heads_are_chosen_outside_the_global_group_by_default(hand):
    default = replace(HAND, receivers_outside_global=True)
    rhythm = rhythm_metrics(hand, [START], default)[0]
    assert not set(rhythm.roles.receiver_heads) & set(rhythm.roles.global_heads)
    assert rhythm.roles.receiver_heads != ((1, 4),)  # the spiky head is global: the next one is taken
    everyone = rhythm_metrics(hand, [START], HAND)[0]
    assert everyone.roles.receiver_heads == ((1, 4),)


def test_previous_token_heads_give_waad_one_and_an_anchor_gives_an_fai_peak(hand):
    rhythm = rhythm_metrics(hand, [START], HAND)[0]
    assert rhythm.roles.local_heads == ((0, 0), (0, 1), (0, 2))  # span 1, ties broken by position
    assert set(rhythm.roles.global_heads) == {(1, 2), (1, 3), (1, 4)}
    torch.testing.assert_close(rhythm.waad, torch.ones(N - START, dtype=torch.float64))
    assert int(np.nanargmax(rhythm.fai.numpy())) == ANCHOR - START
    assert ANCHOR - START in fai_peaks(rhythm.fai).tolist()
    assert rhythm.roles.receiver_heads == ((1, 4),)  # the spiky column has the highest kurtosis
    assert int(np.nanargmax(rhythm.receiver_fai.numpy())) == ANCHOR - START


def test_head_roles_on_hand_made_spans():
    spans = torch.tensor([[5.0, 1.0, 9.0], [2.0, 8.0, 3.0]], dtype=torch.float64)
    roles = head_roles(spans, [4, 7], RhythmConfig(local_fraction=1 / 3, global_fraction=1 / 3))
    assert roles.local_heads == ((4, 1), (7, 0)) and roles.global_heads == ((4, 2), (7, 1))
    tied = head_roles(torch.ones(2, 3, dtype=torch.float64), [0, 1], RhythmConfig(local_fraction=0.5, global_fraction=0.5))
    assert tied.local_heads == ((0, 0), (0, 1), (0, 2)) and tied.global_heads == ((1, 2), (1, 1), (1, 0))
    assert [group_size(0.3, n) for n in (1, 3, 5, 18)] == [1, 1, 2, 5]
    with pytest.raises(ValueError, match="cannot hold"):
        head_roles(torch.ones(1, 1, dtype=torch.float64), [0], RhythmConfig())
    with pytest.raises(ValueError, match="NaN"):
        head_spans(torch.tensor([[[1.0, math.nan]]]))


def test_group_reductions_on_hand_made_statistics():
    lookback = torch.tensor([[1.0, 2.0, 4.0], [3.0, 2.0, 0.0]])
    torch.testing.assert_close(group_waad(lookback), torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    fai = group_fai(torch.tensor([[0.4, 0.2, 0.0], [0.8, 0.0, 0.0]]), torch.tensor([2.0, 1.0, 0.0]))
    torch.testing.assert_close(fai[:2], torch.tensor([0.3, 0.1], dtype=torch.float64))
    assert torch.isnan(fai[2])


def test_paper_rl_layers():
    assert paper_rl_layers(36) == (12, 15, 18, 21, 24)
    for n in range(1, 64):
        layers = paper_rl_layers(n)
        assert layers[0] == n // 3 and layers[-1] == (2 * n) // 3
        assert list(layers) == sorted(set(layers)) and len(layers) == min(5, (2 * n) // 3 - n // 3 + 1)
        if len(layers) == 5:
            assert max(np.diff(layers)) - min(np.diff(layers)) <= 1


def test_capture_settings():
    config = RhythmConfig(window=7, band_lo=4, band_hi=40, layers=(2, 1))
    settings = rhythm_config_capture(config, [5, 9])
    assert (settings.mode, settings.layers, settings.lookback_window) == ("stats", (1, 2), 7)
    assert (settings.band_lo, settings.band_hi, settings.band_first_rows) == (4, 40, (5, 9))
    assert settings.distance and not (settings.received or settings.entropy or settings.first_token)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"window": 0}, "window"), ({"window": 2.5}, "window"), ({"band_lo": -1}, "band_lo"),
    ({"band_lo": 10, "band_hi": 9}, "band_hi"), ({"local_fraction": 0.0}, "local_fraction"),
    ({"local_fraction": 0.6, "global_fraction": 0.5}, "overlap"), ({"layers": (-1,)}, "layers"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RhythmConfig(**kwargs)


def test_bad_records(hand):
    with pytest.raises(ValueError, match="empty"):
        rhythm_metrics(replace(hand, config=replace(hand.config, band_first_rows=(N,))), [N], HAND)
    short = hand_record({0: [previous_token(N)] * 5}, HAND, N - 2)
    with pytest.raises(ValueError, match="not more than band_lo"):
        rhythm_metrics(short, [N - 2], HAND)
    with pytest.raises(ValueError, match="lookback window"):
        rhythm_metrics(hand, [START], replace(HAND, window=6))
    with pytest.raises(ValueError, match="band"):
        rhythm_metrics(hand, [START], replace(HAND, band_hi=50))
    with pytest.raises(ValueError, match="one per prompt"):
        rhythm_metrics(hand, [START, START], HAND)
    with pytest.raises(ValueError, match="not in the record"):
        rhythm_metrics(hand, [START], replace(HAND, layers=(0, 3)))
    with pytest.raises(ValueError, match="integer >= 1"):
        rhythm_config_capture(HAND, [0])
    bare = replace(hand, stats={l: {"distance": s["distance"]} for l, s in hand.stats.items()})
    with pytest.raises(ValueError, match="no lookback"):
        rhythm_metrics(bare, [START], HAND)


# --- peaks -----------------------------------------------------------------------------------


def test_peak_rule_on_hand_made_sequences():
    v = np.array([0.0, 1.0, 0.0, 0.3, 0.2, 2.0, 2.0, 0.0])
    assert strict_local_maxima(v).tolist() == [1, 3]  # the plateau at 5-6 and the ends are no peaks
    np.testing.assert_allclose(prominences(v, np.array([1, 3])), [1.0, 0.1])
    assert waad_peaks(v).tolist() == [1]
    assert waad_peaks(v, PeakRule(waad_prominence=0.05)).tolist() == [1, 3]
    gapped = np.array([0.0, 2.0, math.nan, 1.0, 3.0, 1.5, math.nan])
    assert strict_local_maxima(gapped).tolist() == [4]
    np.testing.assert_allclose(prominences(gapped, np.array([4])), [1.5])  # bases stop at the NaNs
    fai = np.array([0.0, 10.0, 0.0, 1.1, 0.0, 0.9, 0.0, math.nan])
    assert fai_peaks(fai).tolist() == [1, 3]  # 10% of the range 10 keeps 1.1 and drops 0.9
    assert fai_peaks(torch.tensor(fai), PeakRule(fai_relative_prominence=0.05)).tolist() == [1, 3, 5]


def test_prominences_match_scipy():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    for _ in range(50):
        v = rng.normal(size=40).round(1)  # rounding makes ties
        peaks = strict_local_maxima(v)
        assert set(peaks) <= set(signal.find_peaks(v)[0])
        np.testing.assert_allclose(prominences(v, peaks), signal.peak_prominences(v, peaks)[0])


# --- couplings -------------------------------------------------------------------------------


FAST = CouplingConfig(n_shuffles=200, n_boot=500)


def random_peaks(rng, length: int, count: int, margin: int = 1) -> np.ndarray:
    return np.sort(rng.choice(np.arange(margin, length - margin), size=count, replace=False))


def test_value_coupling_lifts_only_when_values_are_higher_at_peaks():
    rng = np.random.default_rng(0)
    values = [rng.uniform(0, 1, 120) for _ in range(40)]
    peaks = [random_peaks(rng, 120, 12) for _ in values]
    eligible = [np.ones(120, bool)] * 40
    independent = value_coupling("x", values, peaks, eligible, FAST)
    assert independent.n_peaks == 480 and independent.n_traces == 40
    assert independent.observed == pytest.approx(np.mean(np.concatenate([v[p] for v, p in zip(values, peaks)])))
    assert independent.random == pytest.approx(np.mean(np.concatenate(values)), abs=0.01)  # shuffles average out
    assert abs(independent.lift.value) < 0.1 and independent.lift.low < 0 < independent.lift.high
    raised = [v.copy() for v in values]
    for v, p in zip(raised, peaks):
        v[p] += 0.5
    coupled = value_coupling("x", raised, peaks, eligible, FAST)
    assert coupled.lift.value > 0.3 and coupled.lift.low > 0
    assert coupled == value_coupling("x", raised, peaks, eligible, FAST)  # seeded


def test_hit_coupling_counts_peaks_that_follow_targets():
    rng = np.random.default_rng(1)
    length, k = 150, 3
    targets = [random_peaks(rng, length, 10, margin=k) for _ in range(40)]
    eligible = [np.ones(length, bool)] * 40
    following = [t + rng.integers(0, k + 1, size=t.size) for t in targets]  # 0..k tokens after a target
    coupled = hit_coupling("follow", following, targets, eligible, k, 0, FAST)
    assert coupled.observed == 1.0 and coupled.lift.low > 0
    near = np.mean([np.isin(np.arange(length)[:, None] - np.arange(k + 1), t).any(1).mean() for t in targets])
    assert coupled.random == pytest.approx(near, abs=0.02)  # shuffled peaks land near a target by chance
    independent = hit_coupling("follow", [random_peaks(rng, length, 10) for _ in targets], targets, eligible, k, 0, FAST)
    assert abs(independent.lift.value) < 0.25 and independent.lift.low < 0 < independent.lift.high
    leading = [t - 2 for t in targets]  # 2 tokens before their own target: they follow only another one
    hits = [any(s - k <= u <= s for u in t) for p, t in zip(leading, targets) for s in p]
    assert np.mean(hits) < 0.5
    assert hit_coupling("follow", leading, targets, eligible, k, 0, FAST).observed == pytest.approx(np.mean(hits))


def synthetic_rhythm(rng, length: int = 90) -> TokenRhythm:
    """WAAD spikes; FAI spikes one token after them; receiver FAI spikes with FAI; entropy up at WAAD spikes."""
    spikes = np.sort(rng.choice(np.arange(3, length - 14, 6), size=5, replace=False))
    waad = rng.uniform(0, 0.2, length)
    waad[spikes] += 2.0
    fai = rng.uniform(0, 0.01, length)
    fai[spikes + 1] += 0.2
    fai[-10:] = math.nan
    receiver = fai.copy()
    receiver[:-10] += rng.uniform(0, 0.005, length - 10)
    entropy = rng.uniform(0, 1, length)
    entropy[spikes] += 1.0
    roles = HeadRoles(layers=(0,), spans=torch.zeros(1, 1, dtype=torch.float64), local_heads=((0, 0),),
                      global_heads=((0, 0),))
    return TokenRhythm(0, 1, tuple("x" * length), *(torch.tensor(a) for a in (waad, fai, receiver)), roles,
                       entropy=torch.tensor(entropy))


def test_rhythm_couplings_end_to_end_on_synthetic_traces():
    rng = np.random.default_rng(2)
    rhythms = [synthetic_rhythm(rng) for _ in range(30)]
    result = rhythm_couplings(rhythms, FAST)
    assert set(result) == {"entropy_at_waad_peaks", "receiver_fai_cooccurrence", "fai_follows_waad"}
    assert result["fai_follows_waad"].observed == 1.0 and result["receiver_fai_cooccurrence"].observed == 1.0
    assert result["entropy_at_waad_peaks"].n_peaks == 150
    for coupling in result.values():
        assert isinstance(coupling.lift, Interval) and coupling.lift.low > 0
        assert coupling.lift.value == pytest.approx(coupling.observed / coupling.random - 1)
    tight = replace(FAST, follow_window=0)
    assert rhythm_couplings(rhythms, tight)["fai_follows_waad"].observed == 0.0  # FAI is one token late
    with pytest.raises(ValueError, match="entropy is missing"):
        rhythm_couplings([replace(rhythms[0], entropy=None)], FAST)
    with pytest.raises(ValueError, match="no peaks"):
        flat = replace(rhythms[0], waad=torch.zeros(90, dtype=torch.float64))
        rhythm_couplings([flat], FAST)


def test_couplings_without_peaks_are_left_out_only_on_request():
    rng = np.random.default_rng(4)
    flat = torch.zeros(90, dtype=torch.float64)
    rhythms = [replace(synthetic_rhythm(rng), fai=flat, receiver_fai=flat) for _ in range(6)]  # no FAI peaks
    with pytest.raises(NoPeaksError, match="receiver_fai_cooccurrence: no peaks"):
        rhythm_couplings(rhythms, FAST)
    measured = rhythm_couplings(rhythms, FAST, allow_missing=True)
    assert list(measured) == ["entropy_at_waad_peaks"]  # the WAAD peaks are still there
    assert measured["entropy_at_waad_peaks"].n_peaks > 0
    assert list(COUPLINGS) == list(PAPER_COUPLINGS) == list(rhythm_couplings([synthetic_rhythm(rng)], FAST))


@pytest.mark.parametrize("arch, softcap", [("llama", None), ("gemma3", None), ("gemma3", 3.0)])
@pytest.mark.parametrize("chunk_rows", [1, 4, 1024])
def test_response_entropy_in_chunks_equals_the_models_own_logits(arch, softcap, chunk_rows):
    """The chunked unembedding gives the entropies of the model's own forward (soft-capped or not)."""
    model = tiny_loaded(arch)
    if softcap is not None:
        model.hf.config.final_logit_softcapping = softcap
    ids = torch.randint(1, 200, (13,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model.hf(input_ids=ids[None]).logits[0]
    expected = predicted_token_entropy(logits, 5)
    torch.testing.assert_close(response_entropy(model, ids, 5, chunk_rows=chunk_rows), expected)


def test_the_backend_reaches_the_capture_settings():
    assert rhythm_config_capture(RhythmConfig(), [3]).backend == "reference"
    assert rhythm_config_capture(RhythmConfig(backend="triton"), [3]).backend == "triton"


def test_analysis_reads_entropy_from_the_captures_own_hidden_states(monkeypatch):
    """analyse_batch's entropies (from the capture's final-norm output, left padding and all)
    equal a separate forward per trace, and no second forward runs."""
    from circuits.rhythm.analysis import analyse_batch
    from circuits.rhythm.traces import traces_from_text

    model = tiny_loaded_varied(lm_head_scale=0.3)
    traces = [traces_from_text(model.tokenizer, "Q: two plus two?", " It is four, so the answer is 4." * k, index=k)
              for k in (1, 3)]
    expected = [response_entropy(model, torch.tensor(t.prompt_ids + t.response_ids), len(t.prompt_ids))
                for t in traces]
    monkeypatch.setattr("circuits.rhythm.metrics.response_entropy", None)  # a second forward would fail
    rhythms = analyse_batch(model, traces, RhythmConfig(band_lo=2, band_hi=None))
    for rhythm, want in zip(rhythms, expected):
        torch.testing.assert_close(rhythm.entropy, want)
