"""The kernel benchmark's sections: name -> what it measures and where its code is.

``bench_kernels.py --section NAME`` runs the named sections in the order given
(``--list-sections`` prints this table). A section is imported only when it runs, so listing and
checking names needs neither a GPU nor the kernels. ``report`` sections feed the rendered notes
(``notes/kernels.md``, between its generated-block markers); the others are experiments whose
lines go to the run's ``log.txt`` only. Each section's module docstring says what it measures
and how; ``notes/kernels.md`` says what the figures showed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Section:
    """One named part of the kernel benchmark.

    Attributes:
        name: the ``--section`` name.
        description: one line: what it measures.
        target: ``"module:function"`` inside this package, run with no arguments.
        report: whether its records feed the rendered notes.
    """

    name: str
    description: str
    target: str
    report: bool = False

    def load(self) -> Callable[[], object]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)


_ALL = (
    Section("env", "device, versions, and the matmul / copy ceilings measured in the run", "acceptance:section_env",
            report=True),
    Section("tune", "K1 tiles and load path per head dim and causal, K2 warps/stages/query step, Gluon K1 tiles; "
            "the best are used for the rest of the run", "tune:section_tune", report=True),
    Section("check", "outputs and every statistic against a float32 materialised reference (48 shapes, edits, "
            "block-sparse)", "acceptance:section_check", report=True),
    Section("dense", "K1 against cuDNN, K1 + K2 with statistics against SDPA, 4k/16k/32k hd128 (interleaved and "
            "paired)", "acceptance:section_dense_and_stats", report=True),
    Section("sparse", "32k block-sparse and sliding-window K1 against the dense causal K1 (share of the ideal "
            "speed-up)", "acceptance:section_sparse", report=True),
    Section("edits", "key bias + head scale and ACT against the unedited K1 at 16k (interleaved and paired)",
            "acceptance:section_edits", report=True),
    Section("e2e", "Llama-3-8B-shaped model and 32 attention layers at 32k/128k with statistics in every layer "
            "(not in the default run)", "e2e:section_e2e", report=True),
    Section("head-dim-64", "the Gluon K1 and K2 at head dim 64 against the Triton ones (checks, paired timings)",
            "head_dim_64:section_head_dim_64"),
    Section("head-dim-split", "head dims 80/96 as two column parts against padding to 128 (checks, paired "
            "timings)", "head_dim_split:section_head_dim_split"),
    Section("head-dim-split-tiles", "K1/K2 tile sweep at head dims 80/96",
            "head_dim_split:section_head_dim_split_tiles"),
    Section("head-dim-256", "K1/K2 tile sweep at head dim 256, then the chosen tiles against SDPA and the "
            "reference route", "head_dim_256:section_head_dim_256"),
    Section("k1-distance", "K1's mean distance summed on the tensor cores against the float32 FMA sum (checks, "
            "paired timings)", "k1_distance:section_k1_distance"),
    Section("program-overhead", "fixed cost per K1 and K2 program, from programs of 8-256 tiles (132-SM GPUs)",
            "program_overhead:section_program_overhead"),
    Section("profile-k2", "GPU kernels and gaps of the K1, K2 and all-statistics calls at 4k (torch.profiler)",
            "profiles:section_profile_k2"),
    Section("profile-act", "GPU kernels of K1 with ACT at 16k and ACT's pass time per tile",
            "profiles:section_profile_act"),
    Section("profile-host", "cProfile of the host side of K1, K2 and the all-statistics call at 4k",
            "profiles:section_profile_host"),
    Section("profile-edits", "the edits' calls as GPU busy, host, back-to-back and do_bench times",
            "profiles:section_profile_edits"),
    Section("profile-timing", "the edit ratio under four timing methods (why the verdicts use paired ratios)",
            "profiles:section_profile_timing"),
    Section("profile-allstats", "the all-statistics call against SDPA under every timing method, with its "
            "timeline at 16k", "profiles:section_profile_allstats"),
)

SECTIONS: dict[str, Section] = {section.name: section for section in _ALL}
DEFAULT_SECTIONS: tuple[str, ...] = ("env", "tune", "check", "dense", "sparse", "edits")
