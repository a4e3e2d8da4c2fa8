"""Compile the Triton kernels for sm_90a on a machine without a GPU and report ptxas resources.

Why: device time is scarce; registers, spills and shared memory per variant decide most tile
choices and cost nothing to read here. Intercepts the launch in ``probe.kernels.launch`` so
the kernels are compiled with exactly the arguments the entry points pass.

    python benchmarks/kernels/compile_report.py            # a fixed list of variants
    HEAD_DIM=80 HEADSCOPE_TMA=1 python benchmarks/kernels/compile_report.py   # another head dim, TMA loads
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import mangle_type

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probe.kernels import launch, triton_kernels  # noqa: E402
from probe.kernels.act import row_pass as act_pass  # noqa: E402
from probe.kernels.blocks import dense_table  # noqa: E402

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


def compile_sm90(kernel, args, kwargs) -> dict:
    """Compile one launch for sm_90a; returns registers, spill bytes, shared memory."""
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    names = kernel.arg_names
    values = dict(zip(names, args))
    values.update(kwargs)
    constexprs = {p.name: values[p.name] for p in kernel.params if p.is_constexpr}
    signature = {n: ("constexpr" if n in constexprs else mangle_type(values[n])) for n in names}
    compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                              options=options)
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "k.ptx"
        ptx.write_text(compiled.asm["ptx"])
        rep = subprocess.run([str(PTXAS), "-v", "--gpu-name", "sm_90a", str(ptx), "-o", str(Path(tmp) / "k.o")],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", rep)
    spill = re.search(r"(\d+) bytes spill stores", rep)
    return {"regs": int(regs.group(1)) if regs else None, "spill_bytes": int(spill.group(1)) if spill else None,
            "smem": compiled.metadata.shared, "wgmma": compiled.asm["ptx"].count("wgmma.mma_async"),
            "tma": compiled.asm["ptx"].count("cp.async.bulk.tensor")}


def report(label: str, fn, kernel_name: str, module=launch) -> None:
    """Compile the launch of ``module.kernel_name`` that ``fn`` makes, and print its resources."""
    kernel = getattr(triton_kernels if module is launch else module, kernel_name)
    seen = {}

    class Capture:
        def __getitem__(self, grid):
            def launch_(*args, **kwargs):
                seen["r"] = compile_sm90(kernel, args, dict(kwargs))
            return launch_

    original = getattr(module, kernel_name)
    setattr(module, kernel_name, Capture())
    try:
        fn()
        print(f"{label:55s} {seen['r']}", flush=True)
    except Exception as e:  # report and go on to the next variant
        print(f"{label:55s} FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
    finally:
        setattr(module, kernel_name, original)


def main() -> None:
    n, h, d = 4096, 4, int(os.environ.get("HEAD_DIM", "128"))
    q, k, v = (torch.empty(1, h, n, d, dtype=torch.bfloat16) for _ in range(3))
    bias = torch.zeros(1, h, n)
    sel = torch.zeros(1, h, n, dtype=torch.bool)
    sel[..., :4] = True
    act = launch.ActScale(sel, torch.full((h,), 0.5)).kernel_lists(1, h, h, n, 'cpu')
    configs = os.environ.get("CONFIGS", "128,8,3").split(";")
    for cfg in configs:
        os.environ["HEADSCOPE_K1_CONFIG"] = cfg
        for causal in (False, True):
            t = dense_table(n, causal=causal)
            tag = f"K1 cfg={cfg} causal={causal}"
            report(f"{tag}", lambda: launch.flash_forward(q, k, v, t, scaling=d**-0.5), "k1_kernel")
            if not causal:
                report(f"{tag} ent+dist", lambda: launch.flash_forward(q, k, v, t, scaling=d**-0.5, entropy=True,
                                                                        distance=True), "k1_kernel")
                report(f"{tag} bias+hs", lambda: launch.flash_forward(q, k, v, t, scaling=d**-0.5, key_bias=bias,
                                                                       head_scale=torch.ones(h)), "k1_kernel")
                out = torch.empty(1, n, h, d, dtype=torch.bfloat16)
                report("ACT pass (after K1)", lambda: act_pass.act_pass(
                    out, q, k, v, torch.zeros(1, h, n), act, t.rule, scaling=d**-0.5, bias=bias, bias_strides=(0, n),
                    has_bias=True, head_scale=None), "_act_pass_kernel", act_pass)
    lse = torch.zeros(1, h, n)
    for bq in (64, 128):
        t = dense_table(n, causal=True, block_q=bq, block_kv=128)
        report(f"K2 block_q={bq}", lambda: launch.column_stats(q, k, lse, t, scaling=d**-0.5, block_stats=True),
               "k2_kernel")


if __name__ == "__main__":
    main()
