"""benchmarks/capture_cpu.py: its report keeps the notes' own text, records the machine, derives
growth from the measurements only; and the statistics-mode memory it reports behaves as the notes
say (grows with the keys, shrinks with chunk_size). CPU only, no model weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, load_script

bench = load_script(Path("benchmarks") / "capture_cpu.py")

MACHINE = {"date": "2026-01-01", "arch": "x86_64", "cpu": "Some CPU", "cores": 2, "torch_threads": 1,
           "omp_num_threads": "1", "torch": "2.13.0", "python": "3.11.7", "load": [3.5, 2.0, 1.0],
           "load_after": [4.25, 3.0, 2.0], "ram_gib": 23.0, "malloc": "glibc malloc, default (dynamic) mmap threshold"}


def _row(mode, tokens, extra, chunk=256, **more):
    return {"mode": mode, "length": tokens, "chunk": chunk, "tokens": tokens, "seconds": 1.0,
            "rss_before_mib": 500.0, "peak_mib": 500.0 + extra, "extra_mib": extra, "memory": "VmHWM", **more}


def test_write_notes_replaces_its_section_and_keeps_the_rest(tmp_path):
    notes = tmp_path / "capture_cpu.md"
    begin, end = bench._markers("lengths")
    notes.write_text(f"# Title\n\nIntro by hand.\n\n{begin}\n| stats | 1 | old table |\n{end}\n\n"
                     "## Reading\n\nProse by hand.\n")
    bench.write_notes([_row("stats", 1024, 50.0)], notes, section="lengths", machine=MACHINE)
    bench.write_notes([_row("attn", 2048, 80.0)], notes, section="chunks", machine=MACHINE)
    bench.write_notes([_row("stats", 4096, 170.0)], notes, section="lengths", machine=MACHINE)
    text = notes.read_text()
    assert text.startswith("# Title\n\nIntro by hand.\n")
    assert "## Reading\n\nProse by hand." in text  # what a person wrote survives a re-run
    assert "old table" not in text and "| stats | 1024 |" not in text and "| stats | 4096 | 256 |" in text
    assert text.count(begin) == 1 and text.count(end) == 1
    assert "| attn | 2048 | 256 |" in text  # a new section is added, not written over the file
    assert text.index(end) < text.index("## Reading") < text.index(bench._markers("chunks")[0])


def test_write_notes_creates_the_file(tmp_path):
    out = tmp_path / "sub" / "notes.md"
    bench.write_notes([_row("plain", 511, 600.0, chunk=None)], out, machine=MACHINE)
    text = out.read_text()
    assert text.startswith("# Capture on CPU") and "| plain | 511 | - |" in text


def test_report_records_the_machine_and_its_load():
    text = bench.report([_row("stats", 1024, 50.0)], MACHINE, command="python benchmarks/capture_cpu.py --modes stats")
    assert "2 cores" in text and "Some CPU" in text and "torch threads 1 (OMP_NUM_THREADS=1)" in text
    assert "load average 3.50 (1 min) before the runs, 4.25 after" in text
    assert "default (dynamic) mmap threshold" in text
    assert "`python benchmarks/capture_cpu.py --modes stats`" in text


def test_growth_is_the_secant_per_1k_tokens_of_each_mode_and_chunk():
    rows = [_row("stats", 1024, 50.0), _row("stats", 4096, 170.0), _row("stats", 2048, 999.0),
            _row("attn", 1024, 40.0, chunk=64), _row("attn", 3072, 20.0, chunk=64),
            _row("attn", 1024, 30.0, chunk=1024),  # one length only: no growth
            {"mode": "pattern", "length": 8192, "chunk": 256, "refused": "too large"}]
    lines = bench.growth(rows)
    assert lines == [
        "- stats, chunk 256: 50 MiB at 1024 tokens, 170 MiB at 4096: +39.1 MiB per 1k tokens",
        "- attn, chunk 64: 40 MiB at 1024 tokens, 20 MiB at 3072: -9.8 MiB per 1k tokens",
    ]


def test_rows_say_what_they_measured():
    assert bench.format_row({"mode": "pattern", "length": 8192, "chunk": 256, "refused": "would hold 67.5 GiB"}) == \
        "| pattern | 8192 | 256 | - | - | - | would hold 67.5 GiB |"
    assert bench.format_row(_row("stats", 2047, 1024.4)) == "| stats | 2047 | 256 | 1.00 | 500 | 1024 |  |"
    fallback = bench.format_row(_row("stats", 2047, 1024.4, memory="ru_maxrss"))
    assert "includes model loading" in fallback


def _attn_peak_mib(length: int, chunk: int) -> float:
    """One statistics-mode reference_attention call's peak over its inputs, in a fresh process whose
    malloc returns every block > 128 KiB when freed (the peak is then the tensors alive at once)."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import capture_cpu; "
            f"print(json.dumps(capture_cpu.attn_peak({length}, {chunk}, 9, 3, 64)))")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["memory"] != "VmHWM":
        pytest.skip("the peak resident size cannot be reset here (no /proc/self/clear_refs)")
    return row["extra_mib"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_statistics_memory_grows_with_the_keys_and_with_chunk_size():
    """The claim the notes make: one layer's statistics-mode peak holds blocks of
    [heads, chunk_size, keys] float32, so it grows with the input and chunk_size bounds it."""
    block_mib = lambda chunk, keys: 9 * chunk * keys * 4 / 2**20  # noqa: E731  one block of probabilities
    short, long_, small_chunk = _attn_peak_mib(1024, 256), _attn_peak_mib(4096, 256), _attn_peak_mib(4096, 64)
    assert long_ - short >= block_mib(256, 4096 - 1024), (short, long_)
    assert long_ - small_chunk >= block_mib(256, 4096) - block_mib(64, 4096), (long_, small_chunk)


def test_peer_table_takes_ratios_to_the_same_rounds_plain_forward_and_medians():
    """A slow round slows plain and tool alike: the ratio uses the plain forward of its own round."""
    rows = []
    for round_index, (plain, tool) in enumerate([(1.0, 1.5), (4.0, 6.0), (2.0, 2.4)]):
        rows.append(_row("plain", 511, 100.0, chunk=None, seconds=plain, round=round_index))
        rows.append(_row("stats", 511, 10.0 * (round_index + 1), seconds=tool, round=round_index))
        rows.append({"mode": "eager", "length": 4096, "chunk": None, "round": round_index,
                     "refused": "not run: holds every pattern"})
    table = {(r["length"], r["mode"]): r for r in bench.peer_table(rows)}
    stats = table[(511, "stats")]
    assert stats["ratio"] == pytest.approx(1.5)  # ratios 1.5, 1.5, 1.2: median 1.5 (not 2.4 / 2.0 of medians)
    assert stats["seconds"] == pytest.approx(2.4) and stats["extra_mib"] == pytest.approx(20.0)
    assert table[(511, "plain")]["ratio"] == pytest.approx(1.0)
    assert "seconds" not in table[(4096, "eager")] and "not run" in table[(4096, "eager")]["note"]


BAD_INPUTS = [
    pytest.param(["--rounds", "0"], "--rounds takes positive integers", id="zero-rounds"),
    pytest.param(["--threads", "-2"], "--threads takes positive integers", id="negative-threads"),
    pytest.param(["--lengths", "512", "0"], "--lengths takes positive integers", id="zero-length"),
    pytest.param(["--chunk-sizes", "0"], "--chunk-sizes takes positive integers", id="zero-chunk"),
    pytest.param(["--max-pattern-tokens", "0"], "--max-pattern-tokens takes positive integers", id="zero-pattern-cap"),
    pytest.param(["--backend", "fastest"], "unknown --backend 'fastest'", id="unknown-backend"),
    pytest.param(["--out", "{folder}"], "is a folder", id="out-is-a-folder"),
    pytest.param(["--modes", "flash"], "invalid choice: 'flash'", id="unknown-mode"),
]


@pytest.mark.parametrize(("args", "words"), BAD_INPUTS)
def test_bad_input_stops_before_any_child_with_one_line(args, words, tmp_path, monkeypatch, capsys):
    notes = tmp_path / "notes.md"
    monkeypatch.setattr(bench, "run_child", lambda *a, **k: pytest.fail("a child ran"))
    monkeypatch.setattr(sys, "argv", ["capture_cpu.py", "--out", str(notes), *[a.format(folder=tmp_path) for a in args]])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]  # argparse's usage, then one error line
    assert out == "" and len(errors) == 1 and words in errors[0] and err.rstrip().endswith(errors[0]), err
    assert not notes.exists()  # nothing written
