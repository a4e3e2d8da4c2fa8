"""The hardware-counter diagnostic's parsers (``benchmarks/kernels/profile_pipes.py``): they must
read each call's main kernel, not the small kernels launched beside it, and attribute warp-state
samples to the right opcodes of the right kernel."""

from __future__ import annotations

import pytest

from tests.kernels.helpers import load_benchmark_script


@pytest.fixture(scope="module")
def pipes():
    return load_benchmark_script("profile_pipes")


def _kernel_block(name: str, ghz: float, cycles: int, tensor: float, xu: float) -> str:
    rows = [("SM Frequency", "Ghz", f"{ghz:.2f}"), ("Elapsed Cycles", "cycle", f"{cycles:,}"),
            ("Duration", "ms", "1.00"), ("SM: Pipe Tensor Cycles Active", "%", f"{tensor:.2f}"),
            ("SM: Inst Executed Pipe Xu", "%", f"{xu:.2f}"), ("SM: Pipe Alu Cycles Active", "%", "10.00"),
            ("SM: Pipe Fma Cycles Active", "%", "20.00"), ("SM: Issue Active", "%", "30.00")]
    body = "\n".join(f"    {metric:<40s} {unit:>6s} {value:>12s}" for metric, unit, value in rows)
    return f"  {name} (64, 16, 1)x(384, 1, 1), Context 1, Stream 7, Device 0, CC 9.0\n    Section: X\n{body}\n"


def test_ncu_table_reads_each_calls_main_kernel(pipes, tmp_path, capsys):
    main = {"sdpa": "cudnn_generated_fprop", "k1": "k1_ws_kernel", "k1s": "k1_ws_kernel",
            "k2": "k2_ws_kernel", "k2b": "k2_ws_kernel"}
    for i, (call, kernel) in enumerate(main.items()):
        small = _kernel_block("_k2_prep_kernel", 1.95, 7000, 0.0, 1.0)  # launched first, must be skipped
        text = "==PROF== Connected\n" + small + _kernel_block(kernel, 1.7, 1000 * (i + 2), 50.0 + i, 40.0 - i)
        (tmp_path / f"ncu_{call}.txt").write_text(text)
    pipes.ncu_table(tmp_path)
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["k2"][1:5] == ["1.70", "0.01", "1.00", "2.500"]  # 5000 cycles against SDPA's 2000
    assert lines["k1s"][5:8] == ["52.0", "38.0", "90.0"]  # tensor, exponential unit and their sum


def test_stall_table_counts_one_kernel_by_opcode(pipes, tmp_path, capsys):
    header = '"Address","Source","Warp Stall Sampling (All Samples)","stall_wait","stall_barrier","stall_wait (Not Issued)"'
    rows = [
        '"Kernel Name","_k2_prep_kernel",', header, '"0x1","MUFU.EX2 R1, R1","500","500","0","0"',
        '"Kernel Name","k2_ws_kernel",', header,
        '"0x10","MUFU.EX2 R1, R1","30","27","3","0"',
        '"0x20","@!P0 MUFU.EX2 R2, R2","30","30","0","0"',
        '"0x30","WARPGROUP.DEPBAR.LE gsb0, 0x0","40","0","40","0"',
        '"0x40","NOP","900","0","900","0"',  # the producer warpgroup's idle warps: left out
    ]
    (tmp_path / "source.csv").write_text("\n".join(rows) + "\n")
    pipes.stall_table(tmp_path / "source.csv")
    out = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert set(out) == {"MUFU", "WARPGROUP"}
    assert out["MUFU"][1] == "60.0%" and out["MUFU"][2:] == ["wait", "95%"]  # barrier (5 %) is under the 8 % shown
    assert out["WARPGROUP"][1] == "40.0%"
