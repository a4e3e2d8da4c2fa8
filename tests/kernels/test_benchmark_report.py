"""The kernel benchmark's notes renderer (``benchmarks/kernels/report.py``) decides the verdicts
written to ``notes/kernels.md``: they must come from the paired ratios when a run has them, from
the interleaved ones otherwise, and name the worst case."""

from __future__ import annotations

import pytest

from tests.kernels.helpers import load_benchmark_script


@pytest.fixture(scope="module")
def report():
    return load_benchmark_script("report")


def _run(all_interleaved: float, all_paired: float | None, sparse_10: float, sparse_10_paired: float | None):
    """Records of one small run: one shape, every acceptance section."""
    records = [
        {"section": "env", "device": "test GPU"},
        {"section": "dense", "n": 16384, "b": 1, "causal": True, "k1_over_cudnn_throughput": 0.95, "k1_tflops": 600.0,
         "cudnn_tflops": 630.0},
        {"section": "stats", "n": 16384, "causal": True, "all_stats_over_sdpa": all_interleaved, "k2_over_k1": 0.6,
         "k2_blocks_over_k1": 0.65, "k1_ent_dist_over_k1": 1.05},
        {"section": "edits", "n": 16384, "causal": True, "bias_headscale_over_base": 1.2, "act_over_base": 1.2,
         "bias_headscale_over_base_paired": 1.03, "act_over_base_paired": 1.05},
    ]
    for pattern, pct, paired in (("random_0.2", 95.0, 92.0), ("random_0.1", sparse_10, sparse_10_paired)):
        row = {"section": "sparse", "pattern": pattern, "kept_of_causal": 0.2, "speedup": 4.0, "ideal": 5.0,
               "pct_of_ideal": pct}
        if paired is not None:
            row["pct_of_ideal_paired"] = paired
        records.append(row)
    if all_paired is not None:
        records.append({"section": "paired", "n": 16384, "causal": True, "k1_over_cudnn_throughput": 0.97,
                        "all_stats_over_sdpa": all_paired, "k1s_over_sdpa": 1.1, "k2b_over_sdpa": 0.7,
                        "k1s_over_k1": 1.12, "k2_over_k1": 0.7, "k2b_over_k1": 0.75})
    return records


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_verdicts_use_the_paired_ratios_when_the_run_has_them(report):
    text = report.render(_run(1.55, 1.80, 85.0, 78.0), command="bench")
    assert "**missed** (worst 1.80, by 0.20)" in _row(text, "| K1 + K2, all statistics")
    assert "**missed** (worst 1.12, by 0.02)" in _row(text, "| entropy + distance")
    assert "**missed** (0.1: 78.0 % < 80 %)" in _row(text, "| block-sparse")
    assert "paired: 16k c 1.80×" in _row(text, "| K1 + K2, all statistics")


def test_verdicts_fall_back_to_the_interleaved_ratios(report):
    text = report.render(_run(1.55, None, 85.0, None), command="bench")
    assert _row(text, "| K1 + K2, all statistics").endswith("**met** |")
    assert _row(text, "| entropy + distance").endswith("**met** |")
    assert _row(text, "| block-sparse").endswith("**met** |")
    assert "paired:" not in _row(text, "| K1 + K2, all statistics")
