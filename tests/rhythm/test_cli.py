"""``headscope rhythm traces`` and ``headscope rhythm analyse`` end to end on the tiny model folder,
the JSON lines they write, the HTML report, resuming, and the report's pieces on synthetic traces.
(Bad inputs are rows of the shared table, tests/bad_inputs/cases_cli.py.)"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from plotly.offline import get_plotlyjs_version

from circuits.cli import band_range
from circuits.evaluation.bootstrap import Interval
from circuits.rhythm.anchors import TOKEN_CLASSES
from circuits.rhythm.metrics import HeadRoles, TokenRhythm
from circuits.rhythm.peaks import PAPER_COUPLINGS, Coupling, CouplingConfig, fai_peaks, rhythm_couplings, waad_peaks
from circuits.rhythm.report import anchor_html, fai_figure, format_couplings, waad_figure, write_report
from probe.cli import main
from probe.cli_options import non_negative_float

PROBLEMS = [{"question": f"Tom has {n + 2} apples and buys {n + 3}{' more' * n}. How many now?",
             "answer": f"{n + 2} + {n + 3} = {2 * n + 5} #### {2 * n + 5}"} for n in range(3)]
SCRIPT_SRC = re.compile(r"<script[^>]*\ssrc\s*=", re.I)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def traces_argv(folder: Path, problems: Path, out: Path, *extra: str) -> list[str]:
    return ["rhythm", "traces", "--model", str(folder), "--problems", str(problems), "--out", str(out),
            "--max-new-tokens", "8", "--batch-size", "2", *extra]


def analyse_argv(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["rhythm", "analyse", "--model", str(folder), "--out", str(out), "--band", "2,end", "--window", "3", *extra]


@pytest.fixture(scope="module")
def generated(tiny_folder, tmp_path_factory) -> Path:
    """A trace file of the three problems, written by ``headscope rhythm traces``."""
    folder = tmp_path_factory.mktemp("rhythm")
    problems = folder / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS), encoding="utf-8")
    assert main(traces_argv(tiny_folder, problems, folder / "traces.jsonl")) == 0
    return folder / "traces.jsonl"


def test_traces_file_holds_one_line_per_problem(generated):
    header, *records = lines(generated)
    assert header["kind"] == "header" and header["settings"]["max_new_tokens"] == 8
    assert [r["index"] for r in records] == [0, 1, 2]
    for record, problem in zip(records, PROBLEMS):
        assert record["question"] == problem["question"] and record["reference"] == problem["answer"].split()[-1]
        assert 1 <= len(record["response_ids"]) <= 8 and record["prompt_ids"]


def test_analyse_writes_a_line_per_trace_then_the_couplings(tiny_folder, generated, tmp_path, capsys):
    out, report = tmp_path / "rhythm.jsonl", tmp_path / "rhythm.html"
    assert main(analyse_argv(tiny_folder, out, "--traces", str(generated), "--report", str(report))) == 0
    printed = capsys.readouterr().out
    for published in ("+51.97%", "+171.49%", "+42.47%"):
        assert published in printed  # the paper's lifts, next to ours
    traces = lines(generated)[1:]
    *rows, last = lines(out)
    assert [r["kind"] for r in rows] == ["trace"] * 3 and [r["index"] for r in rows] == [0, 1, 2]
    for row, trace in zip(rows, traces):
        n = len(trace["response_ids"])
        assert row["response_start"] == len(trace["prompt_ids"]) and row["source"] == str(generated)
        assert "".join(row["tokens"]) == trace["response"]
        for signal in ("tokens", "waad", "fai", "receiver_fai", "entropy"):
            assert len(row[signal]) == n, signal
        assert all(v is not None and 0 <= v <= 3 for v in row["waad"])  # WAAD is at most W
        assert [v is None for v in row["fai"]] == [i >= n - 2 for i in range(n)]  # band 2..end: last 2 have none
        assert all(0 <= v <= math.log(50257) + 1e-6 for v in row["entropy"])
        for name, peaks in row["peaks"].items():
            assert all(0 < p < n - 1 for p in peaks), name  # strict maxima: never the ends
        roles = row["heads"]
        assert roles["layers"] == [0, 1, 2] and len(roles["spans"]) == 3 and len(roles["spans"][0]) == 6
        assert len(roles["local"]) == len(roles["global"]) == 5  # round(0.3 x 18)
        assert not {tuple(h) for h in roles["local"]} & {tuple(h) for h in roles["global"]}
    assert last["kind"] == "couplings" and last["n_traces"] == 3
    assert last["settings"]["window"] == 3 and last["settings"]["band_lo"] == 2 and last["settings"]["band_hi"] is None
    assert list(last["couplings"]) == list(PAPER_COUPLINGS)
    for name, entry in last["couplings"].items():
        assert entry["paper"]["lift"] == PAPER_COUPLINGS[name].lift
        assert entry["measured"] == ("lift" in entry)
    anchors = {(a["signal"], a["class"]): a for a in last["anchors"]}
    assert set(anchors) == {(s, c) for s in ("fai", "waad") for c in TOKEN_CLASSES}
    fai_peak_count = sum(len(r["peaks"]["fai"]) for r in rows)
    assert anchors["fai", "number"]["n_peaks"] == fai_peak_count
    numbers_at_peaks = sum(any(ch.isdigit() for ch in r["tokens"][p]) for r in rows for p in r["peaks"]["fai"])
    if fai_peak_count:
        assert anchors["fai", "number"]["share"] == pytest.approx(numbers_at_peaks / fai_peak_count)
    assert "where peaks fall" in printed
    page = report.read_text(encoding="utf-8")
    assert f"plotly.js v{get_plotlyjs_version()}" in page  # embedded, so it opens offline
    assert not SCRIPT_SRC.search(page), "the report loads a script from elsewhere"
    assert page.count('class="rhythm-anchors"') == 3 and "+171.49%" in page
    assert "Where the peaks fall" in page and page.count("<td>sentence_end</td>") == 2  # a row each for FAI and WAAD


def test_batching_does_not_change_the_metrics(tiny_folder, generated, tmp_path):
    """Left-padded batches of 3 give the metrics of one trace at a time."""
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    for out, size in ((one, "1"), (three, "3")):
        assert main(analyse_argv(tiny_folder, out, "--traces", str(generated), "--batch-size", size)) == 0
    for alone, batched in zip(lines(one)[:-1], lines(three)[:-1]):
        assert alone["tokens"] == batched["tokens"] and alone["heads"]["local"] == batched["heads"]["local"]
        for signal in ("waad", "fai", "entropy"):
            a = np.array(alone[signal], dtype=float)
            np.testing.assert_allclose(np.array(batched[signal], dtype=float), a, rtol=1e-4, atol=1e-6)


ON_GPU = pytest.param("cuda", marks=[pytest.mark.gpu,
                                     pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")])


@pytest.mark.parametrize("device", ["cpu", ON_GPU])
def test_the_kernels_backend_gives_the_references_metrics(tiny_folder, generated, tmp_path, device):
    """``--backend triton`` gives the reference's WAAD, FAI, heads and peaks. On the GPU the
    Triton kernels compute the statistics; on the CPU the kernels' backend hands every call to
    the reference (so there this checks the options' plumbing only)."""
    ref, kernels = tmp_path / "reference.jsonl", tmp_path / "triton.jsonl"
    for out, backend in ((ref, "reference"), (kernels, "triton")):
        assert main(analyse_argv(tiny_folder, out, "--traces", str(generated), "--backend", backend,
                                 "--device", device)) == 0
    for a, b in zip(lines(ref)[:-1], lines(kernels)[:-1]):
        assert a["heads"]["global"] == b["heads"]["global"] and a["peaks"] == b["peaks"]
        for signal in ("waad", "fai"):
            np.testing.assert_allclose(np.array(b[signal], dtype=float), np.array(a[signal], dtype=float),
                                       rtol=1e-4, atol=1e-6)


def test_skip_short_leaves_out_and_names_responses_too_short_for_the_band(tiny_folder, generated, tmp_path, capsys):
    text = tmp_path / "mixed.jsonl"
    records = [{"prompt": "Q: 1 + 1?", "response": " 2"},
               {"prompt": "Q: 2 + 2?", "response": " Two and two make four, so the answer is 4. " * 2}]
    text.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "mixed_out.jsonl"
    assert main(analyse_argv(tiny_folder, out, "--text-traces", str(text))) == 2  # refused by default
    assert "not longer than the band" in capsys.readouterr().err
    assert main(analyse_argv(tiny_folder, out, "--text-traces", str(text), "--skip-short")) == 0
    assert "left out 1 trace(s)" in capsys.readouterr().err
    *rows, last = lines(out)
    assert [r["index"] for r in rows] == [1] and last["n_traces"] == 1


def test_generated_and_text_traces_together(tiny_folder, generated, tmp_path):
    text = tmp_path / "mine.jsonl"
    text.write_text("".join(json.dumps({"prompt": t["prompt"], "response": t["response"] + " and 7 more",
                                        "answer": "7"}) + "\n" for t in lines(generated)[1:3]), encoding="utf-8")
    out = tmp_path / "both.jsonl"
    assert main(analyse_argv(tiny_folder, out, "--traces", str(generated), "--text-traces", str(text),
                             "--layers", "1,2")) == 0
    *rows, last = lines(out)
    assert [(Path(r["source"]).name, r["index"]) for r in rows] == [("traces.jsonl", 0), ("traces.jsonl", 1),
                                                                     ("traces.jsonl", 2), ("mine.jsonl", 0),
                                                                     ("mine.jsonl", 1)]
    assert all(r["heads"]["layers"] == [1, 2] for r in rows) and last["settings"]["layers"] == [1, 2]
    assert rows[3]["tokens"][-3:] == [" and", " 7", " more"] and rows[3]["reference"] == "7"


def test_rhythm_traces_resumes_where_it_stopped(tiny_folder, generated, tmp_path, capsys):
    """A file cut after its first trace (a killed run) is continued: the same bytes as one whole run."""
    problems = generated.parent / "problems.jsonl"
    cut = tmp_path / "traces.jsonl"
    cut.write_bytes(b"".join(generated.read_bytes().splitlines(keepends=True)[:2]))  # header + trace 0
    capsys.readouterr()
    assert main(traces_argv(tiny_folder, problems, cut)) == 0
    assert "2 generated now, 1 already in the file" in capsys.readouterr().out
    assert cut.read_bytes() == generated.read_bytes()
    assert main(traces_argv(tiny_folder, problems, cut)) == 0  # finished: nothing to do
    assert "0 generated now, 3 already" in capsys.readouterr().out


def test_band_and_temperature_options():
    assert band_range("10,100") == (10, 100) and band_range("10,end") == (10, None) and band_range("0, END") == (0, None)
    assert band_range("5,5") == (5, 5)
    for bad in ("10,5", "x", "10", "-1,4", "1,2,3", ",4"):
        with pytest.raises(argparse.ArgumentTypeError):
            band_range(bad)
    assert non_negative_float("0.7") == 0.7
    for bad in ("-0.1", "nan", "inf", "warm"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_float(bad)


# --- the report on synthetic traces (peaks where they are put) -------------------------------


def synthetic(length: int = 60, seed: int = 0) -> TokenRhythm:
    """WAAD spikes at 10, 30, 50; FAI spikes one token later; the last 5 tokens have no band."""
    rng = np.random.default_rng(seed)
    waad = rng.uniform(0, 0.2, length)
    waad[[10, 30, 50]] += 3.0
    fai = rng.uniform(0, 0.01, length)
    fai[[11, 31]] += 0.3
    fai[-5:] = math.nan
    roles = HeadRoles(layers=(0,), spans=torch.zeros(1, 2, dtype=torch.float64), local_heads=((0, 0),),
                      global_heads=((0, 1),), receiver_heads=((0, 1),))
    tokens = tuple(f" t{i}" for i in range(length - 1)) + ("<b>&",)
    return TokenRhythm(0, 3, tokens, torch.tensor(waad), torch.tensor(fai), torch.tensor(fai),
                       roles, entropy=torch.tensor(rng.uniform(0, 1, length)))


def test_figures_mark_the_peaks():
    rhythm = synthetic()
    waad = waad_figure(rhythm)
    assert list(waad.data[1].x) == [10, 30, 50] == waad_peaks(rhythm.waad).tolist()
    fai = fai_figure(rhythm)
    assert list(fai.data[1].x) == [11, 31] and fai.data[0].y[-1] is None  # NaN: a gap, not 0
    assert "receiver" in fai.data[2].name


def test_anchor_html_colours_by_fai_and_escapes_tokens():
    rhythm = synthetic()
    page = anchor_html(rhythm)
    spans = re.findall(r"<span [^>]*>", page)
    assert len(spans) == 60
    assert page.count("outline:") == len(fai_peaks(rhythm.fai)) == 2
    assert page.count("border-bottom:") == 3
    assert "rgba(214, 39, 40, 1.00)" in spans[11] and "color: #888" in spans[-1]  # the top anchor; no band
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page


def test_write_report_is_one_self_contained_file(tmp_path):
    rhythms = [synthetic(seed=s) for s in range(4)]
    couplings = rhythm_couplings(rhythms, CouplingConfig(n_shuffles=50, n_boot=100), allow_missing=True)
    path = write_report(rhythms, couplings, tmp_path / "sub" / "r.html", labels=[f"T{i}" for i in range(4)])
    page = path.read_text(encoding="utf-8")
    assert page.count("plotly.js v") == 1  # embedded once, not per figure
    assert not SCRIPT_SRC.search(page) and page.count('class="plotly-graph-div"') == 8
    assert all(f"<h2>T{i}</h2>" in page for i in range(4))
    assert [p.name for p in path.parent.iterdir()] == ["r.html"]  # no temporary left
    with pytest.raises(ValueError, match="one per trace"):
        write_report(rhythms, couplings, tmp_path / "x.html", labels=["only one"])


def test_format_couplings_puts_ours_next_to_the_papers():
    coupling = Coupling("fai_follows_waad", 0.5, 0.25, Interval(1.0, 0.5, 1.5), 7, 12)
    table = format_couplings({"fai_follows_waad": coupling})
    row = next(line for line in table.splitlines() if line.startswith("FAI peak follows"))
    assert "50.00%" in row and "25.00%" in row and "+100.00% [+50.00%, +150.00%]" in row
    assert "12 in 7 traces" in row and row.rstrip().endswith("+42.47%")
    assert "no peaks" in next(line for line in table.splitlines() if line.startswith("Entropy at WAAD"))
