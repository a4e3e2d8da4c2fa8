"""The perturbation test (the rhythm paper's Table 1): content words and Jaccard, the choice of
positions, the forced token against the model's own ranking, greedy rollouts against a manual
argmax loop, the summary on hand-made trials, and ``headscope rhythm perturb`` end to end on the
tiny model folder. (Bad inputs are rows of tests/bad_inputs/cases_cli.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from circuits.rhythm.content_words import content_words, jaccard, stop_words
from circuits.rhythm.perturb import (PerturbConfig, Side, TooShortError, Trial, alternative_token,
                                     choose_positions, perturb_traces)
from circuits.rhythm.perturb_summary import PAPER_PERTURBATION, format_summary, summarise
from circuits.rhythm.traces import Trace
from probe.cli import main
from tests.helpers import tiny_loaded_varied

STOP = stop_words()
NAN = math.nan


# --- content words and Jaccard ---------------------------------------------------------------


def test_content_words_keep_numbers_and_drop_stop_words():
    assert content_words("The total is 1,000 apples, and each costs $3.50.", STOP) == {
        "total", "1000", "apples", "costs", "3.50"}
    assert content_words("So SHE doesn't have 12 of THEM", STOP) == {"12"}  # doesn't -> doesn + t: both stop words
    assert content_words("Then 2 + 3 = 5.", STOP) == {"2", "3", "5"}  # a sentence's full stop is not a decimal point
    assert content_words("two hundred and twenty", STOP) == {"two", "hundred", "twenty"}  # number words stay
    assert content_words("\\boxed{18}", STOP) == {"boxed", "18"}
    assert content_words("", STOP) == set() and content_words("it is what it is", STOP) == set()


def test_jaccard_of_hand_made_continuations():
    a = content_words("She sells 16 eggs for $2 each, so she makes 32 dollars.", STOP)
    b = content_words("She sells 16 eggs and keeps 3 for breakfast.", STOP)
    assert a == {"sells", "16", "eggs", "2", "makes", "32", "dollars"}
    assert b == {"sells", "16", "eggs", "keeps", "3", "breakfast"}
    assert jaccard(a, b) == pytest.approx(3 / 10) == jaccard(b, a)
    assert jaccard(a, a) == 1.0
    assert jaccard(set(), set()) == 1.0  # neither has content words: nothing differs
    assert jaccard(a, set()) == 0.0


def test_builtin_stop_words_are_nltks_function_words():
    assert len(STOP) == 179 and {"the", "and", "don", "t", "s", "ll"} <= STOP
    assert not STOP & {"one", "two", "hundred", "first", "0", "1"}


@pytest.mark.parametrize("source", ["nltk", "sklearn"])
def test_other_stop_word_sources_load_or_say_what_is_missing(source):
    try:
        words = stop_words(source)
    except ValueError as err:
        assert "builtin" in str(err)  # names the list that needs nothing installed
    else:
        assert {"the", "and"} <= words


# --- positions --------------------------------------------------------------------------------


def test_positions_are_the_extremes_among_candidates():
    # index:          0    1    2    3    4    5    6    7    8    9    10   11
    fai = np.array([9.0, 0.1, 0.5, 0.9, 0.2, 0.7, 0.3, 0.8, 0.0, 9.0, NAN, NAN])
    config = PerturbConfig(skip_first=1, min_after=3)  # candidates 1..8 (at least 3 tokens after)
    assert choose_positions(fai, config) == ([3], [8])  # index 0 (skipped) and 9 (too late) are higher
    assert choose_positions(fai, PerturbConfig(skip_first=1, min_after=3, pairs=3)) == ([3, 7, 5], [8, 1, 4])
    assert choose_positions(fai, PerturbConfig(skip_first=0, min_after=1)) == ([9], [8])  # ties: the later is higher
    assert choose_positions(fai, PerturbConfig(skip_first=0, min_after=2)) == ([9], [8])  # NaN tail never chosen


def test_positions_skip_nan_inside_and_ties_stay_disjoint():
    flat = np.array([0.5] * 6 + [NAN] * 2)
    high, low = choose_positions(flat, PerturbConfig(skip_first=0, min_after=1, pairs=3))
    assert high == [5, 4, 3] and low == [0, 1, 2]  # equal FAI: split by position, never the same token twice
    holes = np.array([0.2, NAN, 0.9, NAN, 0.1, 0.4, NAN])
    assert choose_positions(holes, PerturbConfig(skip_first=0, min_after=1)) == ([2], [4])


def test_too_few_candidates_are_refused():
    fai = np.array([0.1, 0.2, 0.3, 0.4, NAN, NAN])
    assert choose_positions(fai, PerturbConfig(skip_first=1, min_after=2, pairs=1)) == ([3], [1])
    with pytest.raises(TooShortError, match="3 candidate positions, 4 needed"):
        choose_positions(fai, PerturbConfig(skip_first=1, min_after=2, pairs=2))
    with pytest.raises(TooShortError):
        choose_positions(np.array([0.3, NAN, NAN]), PerturbConfig(skip_first=0, min_after=1))


def test_config_rejects_nonsense():
    for bad in ({"rank": 1}, {"rollout_tokens": 0}, {"pairs": 0}, {"min_after": 0}, {"skip_first": -1},
                {"rank": 2.0}, {"stop_words": "spacy"}):
        with pytest.raises(ValueError):
            PerturbConfig(**bad)
    assert PerturbConfig(skip_first=2, pairs=3, min_after=4).min_response == 12
    assert PerturbConfig(rollout_tokens=32).min_after == 32  # by default a full rollout's length follows


# --- the forced token and the rollout ---------------------------------------------------------


def test_alternative_skips_the_original_and_special_tokens():
    logits = torch.tensor([0.0, 4.0, 3.0, 5.0, 2.0, 1.0])  # ranking: 3, 1, 2, 4, 5, 0
    assert alternative_token(logits, original=3, rank=2) == (1, 2)  # greedy trace: the runner-up
    assert alternative_token(logits, original=3, rank=4) == (4, 4)
    assert alternative_token(logits, original=2, rank=2) == (3, 1)  # sampled token: the argmax is the alternative
    assert alternative_token(logits, original=2, rank=3) == (1, 2)
    assert alternative_token(logits, original=3, rank=2, skipped=frozenset({1})) == (2, 3)


@pytest.fixture(scope="module")
def varied():
    return tiny_loaded_varied()


def made_trace(index: int, prompt_len: int, response_len: int, seed: int) -> Trace:
    ids = torch.randint(0, 50256, (prompt_len + response_len,), generator=torch.Generator().manual_seed(seed)).tolist()
    return Trace(index=index, question=None, prompt="", prompt_ids=tuple(ids[:prompt_len]), response="",
                 response_ids=tuple(ids[prompt_len:]), reference=None, predicted=None, correct=None,
                 stopped_at_eos=None, generation=None)


def next_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1]


@pytest.mark.parametrize("rank", [2, 3])
def test_forced_token_is_the_rank_k_alternative_and_the_rollout_is_greedy(varied, rank):
    traces = [made_trace(0, 7, 24, seed=1), made_trace(1, 3, 19, seed=2)]  # prompts of two lengths: padding
    fais = [np.sin(np.arange(len(t.response_ids)) * (k + 1.3)) for k, t in enumerate(traces)]
    for fai in fais:
        fai[-4:] = NAN
    eos = varied.tokenizer.eos_token_id
    config = PerturbConfig(skip_first=2, min_after=5, rank=rank, rollout_tokens=5)
    trials = perturb_traces(varied, traces, fais, config, batch_size=4, progress=False)
    assert [(t.trace, t.pair) for t in trials] == [(0, 0), (1, 0)]
    for trial in trials:
        trace = traces[trial.trace]
        high, low = choose_positions(fais[trial.trace], config)
        assert (trial.high.position, trial.low.position) == (high[0], low[0])
        for side in (trial.high, trial.low):
            prefix = [*trace.prompt_ids, *trace.response_ids[:side.position]]
            ranking = torch.argsort(next_logits(varied, prefix), descending=True).tolist()
            assert side.original == trace.response_ids[side.position]
            assert side.forced == [t for t in ranking if t not in (side.original, eos)][rank - 2] != side.original
            assert side.forced_place == ranking.index(side.forced) + 1
            ids, manual = prefix + [side.forced], []
            while len(manual) < 5:  # the greedy loop, written out
                token = int(next_logits(varied, ids).argmax())
                if token == eos:
                    break
                ids.append(token)
                manual.append(token)
            assert list(side.rollout) == manual
            rest = trace.response_ids[side.position + 1:]
            assert side.compared == min(len(manual), len(rest))
            assert side.original_text == varied.tokenizer.decode(rest[:side.compared])
            assert side.jaccard == jaccard(content_words(side.original_text, STOP),
                                           content_words(side.rollout_text, STOP))


def test_batching_does_not_change_the_trials(varied):
    traces = [made_trace(k, 4 + 5 * k, 20, seed=10 + k) for k in range(2)]
    fais = [np.cos(np.arange(20) * (k + 0.7)) for k in range(2)]
    config = PerturbConfig(skip_first=1, min_after=4, rollout_tokens=4)
    alone = perturb_traces(varied, traces, fais, config, batch_size=1, progress=False)
    batched = perturb_traces(varied, traces, fais, config, batch_size=4, progress=False)
    assert alone == batched


def test_perturb_traces_refuses_short_traces_by_name(varied):
    traces = [made_trace(4, 3, 20, seed=1), made_trace(9, 3, 6, seed=2)]
    fais = [np.ones(20), np.ones(6)]
    with pytest.raises(TooShortError, match=r"1 trace\(s\) are too short.*trace 9"):
        perturb_traces(varied, traces, fais, PerturbConfig(skip_first=1, min_after=4), progress=False)
    with pytest.raises(ValueError, match="context of 160 tokens"):
        perturb_traces(varied, traces[:1], fais[:1], PerturbConfig(skip_first=1, min_after=4, rollout_tokens=150),
                       progress=False)


# --- the summary on hand-made trials -------------------------------------------------------------


def side(value: float) -> Side:
    return Side(position=0, fai=0.0, original=0, forced=1, forced_place=2, original_token="a", forced_token="b",
                rollout=(), ended=False, compared=0, original_text="", rollout_text="", jaccard=value)


def trial(trace: int, high: float, low: float, pair: int = 0) -> Trial:
    return Trial(trace, pair, side(high), side(low))


def test_summary_of_hand_made_trials():
    trials = [trial(0, 0.2, 0.6), trial(1, 0.5, 0.5), trial(2, 0.8, 0.4), trial(3, 0.1, 0.9)]
    summary = summarise(trials, n_boot=500)
    assert (summary.n_traces, summary.n_trials, summary.ties) == (4, 4, 1)
    assert summary.jaccard_high.value == pytest.approx(0.4) and summary.jaccard_low.value == pytest.approx(0.6)
    assert summary.difference.value == pytest.approx(0.2)
    assert summary.high_changes_more.value == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert summary.strictly_more == pytest.approx(2 / 4)
    for interval in (summary.jaccard_high, summary.jaccard_low, summary.difference, summary.high_changes_more):
        assert interval.low <= interval.value <= interval.high
    assert summary.high_changes_more.high <= 1.0 and summary.jaccard_high.low >= 0.1
    assert summarise(trials, n_boot=500) == summary  # seeded


def test_summary_weighs_traces_not_trials():
    """Two pairs in trace 0, one in trace 1: each trace counts once (the mean of its pairs)."""
    trials = [trial(0, 0.0, 1.0, pair=0), trial(0, 0.0, 1.0, pair=1), trial(1, 1.0, 0.0)]
    summary = summarise(trials, n_boot=200)
    assert summary.jaccard_high.value == pytest.approx(0.5) and summary.high_changes_more.value == pytest.approx(0.5)
    assert summary.strictly_more == pytest.approx(2 / 3)  # per trial


def test_format_summary_puts_ours_next_to_the_papers():
    table = format_summary(summarise([trial(0, 0.25, 0.75), trial(1, 0.5, 0.5)], n_boot=100))
    assert "0.534" in table and "0.631" in table and "87.14%" in table
    row = next(line for line in table.splitlines() if line.startswith("high-FAI changes more"))
    assert "75.000%" in row
    assert table.splitlines()[-1].startswith("2 trials in 2 traces; 1 ties; strictly more 50.00%")


# --- headscope rhythm perturb -----------------------------------------------------------------

RESPONSES = ["Tom has 3 apples and buys 4 more, so 3 + 4 = 7 apples. Then he gives 2 away and keeps 5 of them. "
             "The answer is \\boxed{5}.",
             "First, 6 times 2 is 12 pears. Next, 12 minus 5 leaves 7 pears for the market, so the total "
             "is 7. The answer is \\boxed{7}."]


def perturb_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["rhythm", "perturb", "--model", str(folder), "--out", str(out), "--rollout-tokens", "4",
            "--skip-first", "1", "--min-after", "3", "--batch-size", "2", *extra]


@pytest.fixture(scope="module")
def text_traces(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("perturb") / "mine.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {k}: how many are left?\n", "response": r}) + "\n"
                            for k, r in enumerate(RESPONSES)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def computed(tiny_folder, text_traces, tmp_path_factory) -> tuple[Path, str]:
    """``rhythm perturb`` of the text traces, FAI computed on the way; the file and what it printed."""
    out = tmp_path_factory.mktemp("computed") / "perturb.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(perturb_argv(tiny_folder, out, "--text-traces", str(text_traces), "--band", "2,end",
                                 "--pairs", "2")) == 0
    return out, printed.getvalue()


def test_perturb_writes_trials_and_the_summary(computed, text_traces):
    out, printed = computed
    assert "0.534" in printed and "87.14%" in printed and f"saved {out}" in printed
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["kind"] == "perturbation" and result["paper"] == PAPER_PERTURBATION
    settings = result["settings"]
    assert settings["rollout_tokens"] == 4 and settings["rank"] == 2 and settings["stop_word_count"] == 179
    assert settings["fai"]["computed"]["band_lo"] == 2 and settings["fai"]["computed"]["band_hi"] is None
    summary = result["summary"]
    assert summary["n_traces"] == 2 and summary["n_trials"] == 4 and len(result["trials"]) == 4
    scores = [t["score"] for t in result["trials"]]
    assert summary["high_changes_more"]["value"] == pytest.approx(np.mean(scores))
    for record in result["trials"]:
        assert record["source"] == str(text_traces) and record["index"] in (0, 1)
        high, low = record["high"], record["low"]
        assert high["fai"] >= low["fai"] and high["position"] != low["position"]
        for entry in (high, low):
            assert 1 <= entry["position"] and 0 < len(entry["rollout"]) <= 4 and entry["forced"] != entry["original"]
            assert 0.0 <= entry["jaccard"] <= 1.0 and entry["forced_place"] >= 1
    assert [p.name for p in out.parent.iterdir()] == ["perturb.json"]  # written atomically, no temporary left


def test_perturb_reuses_the_fai_of_rhythm_analyse(tiny_folder, text_traces, computed, tmp_path):
    analysis, reused = tmp_path / "rhythm.jsonl", tmp_path / "reused.json"
    assert main(["rhythm", "analyse", "--model", str(tiny_folder), "--text-traces", str(text_traces),
                 "--out", str(analysis), "--band", "2,end", "--window", "3"]) == 0
    assert main(perturb_argv(tiny_folder, reused, "--text-traces", str(text_traces), "--analysis", str(analysis),
                             "--pairs", "2")) == 0
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (computed[0], reused))
    assert b["settings"]["fai"]["analysis"] == str(analysis) and b["settings"]["fai"]["settings"]["band_lo"] == 2
    assert a["trials"] == b["trials"] and a["summary"] == b["summary"]


def test_perturb_on_generated_traces_with_a_limit(tiny_folder, tmp_path, capsys):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Tom has {n} apples. How many?", "answer": f"#### {n}"})
                                + "\n" for n in (2, 3)), encoding="utf-8")
    traces, out = tmp_path / "traces.jsonl", tmp_path / "perturb.json"
    assert main(["rhythm", "traces", "--model", str(tiny_folder), "--problems", str(problems), "--out", str(traces),
                 "--max-new-tokens", "12"]) == 0
    assert main(perturb_argv(tiny_folder, out, "--traces", str(traces), "--limit", "1", "--band", "2,end")) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["model"] == str(tiny_folder) and [t["index"] for t in result["trials"]] == [0]



def test_skip_short_leaves_out_and_names_traces_without_room_for_two_positions(tiny_folder, text_traces, tmp_path,
                                                                              capsys):
    mixed = tmp_path / "mixed.jsonl"
    records = [json.loads(line) for line in text_traces.read_text(encoding="utf-8").splitlines()]
    records.insert(0, {"prompt": "Q: 1 + 1?", "response": " 2"})
    mixed.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "perturb.json"
    assert main(perturb_argv(tiny_folder, out, "--text-traces", str(mixed), "--band", "2,end")) == 2
    assert "too short" in capsys.readouterr().err and not out.exists()
    assert main(perturb_argv(tiny_folder, out, "--text-traces", str(mixed), "--band", "2,end", "--skip-short")) == 0
    assert "left out 1 trace(s)" in capsys.readouterr().err
    result = json.loads(out.read_text(encoding="utf-8"))
    assert sorted({t["index"] for t in result["trials"]}) == list(range(1, len(records)))
