"""Time and peak memory of a plain forward, pattern mode and statistics mode on SmolLM2 (CPU).

Modes:
    plain    the HF model's own forward (SDPA attention), logits at every position.
    pattern  ``capture(mode="pattern")``, every layer.
    stats    ``capture(mode="stats")``, every layer.
    eager    HF's eager attention with ``output_attentions=True`` (every layer's pattern).
    lens     TransformerLens ``run_with_cache``, keeping only the patterns (``hook_pattern``).
    nnsight  nnsight tracing the HF model (eager attention), saving every layer's pattern;
             reported as not installed when ``nnsight`` is absent (``pip install nnsight``).
    stats1   ``capture(mode="stats", layers=[0])``: one layer recorded, the others run SDPA.
    attn     one ``reference_attention`` call in statistics mode (the capture's default
             statistics) on random inputs of the model's geometry: one recorded layer's own
             working set, without the rest of the model.

Each (mode, length, chunk size) runs in its own process. Memory is the run's own peak: the
process's peak resident size (``VmHWM``) is reset just before the measured call (Linux
``/proc/self/clear_refs``) and the resident size before it (the loaded model, its weights paged
in by a short warm-up forward, and the inputs) is subtracted. Where the reset is unavailable
the peak is ``ru_maxrss``, which also holds the model loading's peak; the table says so.

    python benchmarks/capture_cpu.py [--lengths 512 2048 8192] [--modes stats attn]
        [--chunk-sizes 64 256] [--mmap-threshold 131072] [--out notes/capture_cpu.md] [--section NAME]
        [--rounds 3] [--backend fast] [--threads 2]

Peers table (``--rounds N``, the issue's protocol): every (tool, length) runs in its own
process, the tools interleaved within each round (plain, then each tool, per length), ``N``
rounds; the table gives each tool's median time, its median ratio to the plain forward *of the
same round* (which cancels much of a shared machine's drift) and its median peak memory. The
plain forward here keeps one position's logits (``logits_to_keep=1``, as ``capture`` does), so
the ratio is the cost of the attention tooling, not of a 49k-word unembedding at every position.

With glibc's default ``malloc`` a freed block can stay resident (its mmap threshold grows with
the blocks freed), so the resident peak exceeds the tensors alive at once, unevenly from run to
run. ``--mmap-threshold BYTES`` sets ``MALLOC_MMAP_THRESHOLD_`` in the children (fixed, so every
larger block is returned when freed): the peak is then the live tensors'.

The table (and the machine it ran on) goes between the markers of its section in ``--out``;
everything else in that file, such as the reading of the figures, is kept. A section not yet in
the file is appended. Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

MODES = ("plain", "pattern", "stats", "stats1", "attn", "eager", "lens", "nnsight")
PEER_MODES = ("plain", "eager", "lens", "nnsight", "pattern", "stats")
DEFAULT_CHUNK = 256  # CaptureConfig's default


def run_one(mode: str, length: int, chunk_size: int = DEFAULT_CHUNK, backend: str = "fast",
            keep_logits: int | None = None) -> dict:
    """Measure one configuration in this process (called in a child)."""
    import torch

    from probe import CaptureConfig, capture, load_model
    from probe.capture.inputs import InputError

    if mode == "nnsight" and not _installed("nnsight"):
        return {"mode": mode, "length": length, "chunk": None, "refused": "nnsight is not installed (pip install nnsight)"}
    model = load_model("smollm2-135m")
    if mode == "attn":
        geometry = model.geometry
        del model
        return attn_peak(length, chunk_size, geometry.n_heads, geometry.n_kv_heads, geometry.head_dim)
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * (length // 9 + 2))
    ids = model.tokenizer(text)["input_ids"][: length - 1]
    prompt = model.tokenizer.decode(ids)
    row = {"mode": mode, "length": length, "chunk": chunk_size if mode != "plain" else None}
    # The weights are memory-mapped and paged in by the first forward (about 500 MiB for SmolLM2):
    # one short forward first, so that the figure is the long input's cost, not the page-in.
    with torch.no_grad():
        model.hf(**model.tokenizer("Warm up.", return_tensors="pt"), use_cache=False)
    try:
        if mode in PEERS:
            batch = model.tokenizer(prompt, return_tensors="pt")
            run = PEERS[mode](model, batch, keep_logits)
            with PeakMemory() as peak, torch.no_grad():
                run()
            tokens = batch["input_ids"].shape[1]
        else:
            layers = (0,) if mode == "stats1" else None
            config = CaptureConfig(mode="pattern" if mode == "pattern" else "stats", layers=layers,
                                   chunk_size=chunk_size, pattern_bytes_limit=16 * 2**30, backend=backend)
            with PeakMemory() as peak:
                record = capture(model, prompt, config)
            tokens = len(record.tokens[0])
    except InputError as err:
        return {**row, "refused": str(err)}
    return {**row, "tokens": tokens, **peak.figures()}


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def plain_forward(model, batch, keep_logits):
    """HF's forward with SDPA attention (``keep_logits``: positions unembedded, None: all)."""
    extra = {} if keep_logits is None else {"logits_to_keep": keep_logits}
    return lambda: model.hf(**batch, use_cache=False, **extra)


def eager_forward(model, batch, keep_logits):
    """HF's eager attention returning every layer's pattern (``output_attentions=True``)."""
    model.hf.set_attn_implementation("eager")
    extra = {} if keep_logits is None else {"logits_to_keep": keep_logits}
    return lambda: model.hf(**batch, use_cache=False, output_attentions=True, **extra)


def lens_forward(model, batch, keep_logits):
    """TransformerLens ``run_with_cache`` keeping only the patterns."""
    lens = model.lens()
    ids = batch["input_ids"]
    return lambda: lens.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"))


def nnsight_forward(model, batch, keep_logits):
    """nnsight tracing the HF model with eager attention, saving each layer's pattern."""
    from nnsight import NNsight

    model.hf.set_attn_implementation("eager")
    traced = NNsight(model.hf)
    layers = model.hf.model.layers
    extra = {} if keep_logits is None else {"logits_to_keep": keep_logits}

    def run():
        saved = []  # filled inside the trace (nnsight runs the block's code itself)
        with traced.trace(**batch, use_cache=False, output_attentions=True, **extra):
            for i in range(len(layers)):
                saved.append(traced.model.layers[i].self_attn.output[1].save())
        return saved

    return run


PEERS = {"plain": plain_forward, "eager": eager_forward, "lens": lens_forward, "nnsight": nnsight_forward}


def attn_peak(length: int, chunk_size: int, n_heads: int, n_kv_heads: int, head_dim: int) -> dict:
    """Peak memory and time of one statistics-mode ``reference_attention`` call over ``length``
    causal tokens (batch 1, float32, random inputs; the inputs themselves are not counted)."""
    import torch

    from probe import CaptureConfig
    from probe.attention.mask import LazyMask
    from probe.attention.reference import reference_attention

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, n_heads, length, head_dim, generator=generator)
    key = torch.randn(1, n_kv_heads, length, head_dim, generator=generator)
    value = torch.randn(1, n_kv_heads, length, head_dim, generator=generator)
    mask = LazyMask(1, length, length)
    want = CaptureConfig(mode="stats").request()
    with PeakMemory() as peak, torch.no_grad():
        out = reference_attention(query, key, value, mask, want=want, chunk_size=chunk_size)
    del out
    return {"mode": "attn", "length": length, "chunk": chunk_size, "tokens": length, **peak.figures()}


class PeakMemory:
    """Time and peak resident memory of the ``with`` block, over the resident memory before it."""

    def __enter__(self) -> "PeakMemory":
        self.reset = _reset_peak()
        self.before = _status_mib("VmRSS:")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
        self.peak = _status_mib("VmHWM:") if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def figures(self) -> dict:
        return {"seconds": self.seconds, "rss_before_mib": self.before, "peak_mib": self.peak,
                "extra_mib": max(0.0, self.peak - self.before), "memory": "VmHWM" if self.reset else "ru_maxrss"}


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current resident size (Linux >= 4.0); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_info() -> dict:
    """What the figures were measured on (the load average is read at the call)."""
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    return {"date": str(date.today()), "arch": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__, "python": platform.python_version(),
            "load": [round(x, 2) for x in os.getloadavg()], "ram_gib": _ram_gib()}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _ram_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--modes", nargs="+", default=["plain", "pattern", "stats"], choices=MODES)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[DEFAULT_CHUNK],
                        help="CaptureConfig(chunk_size=...) values (query rows per block of the reference)")
    parser.add_argument("--mmap-threshold", type=int, default=None,
                        help="MALLOC_MMAP_THRESHOLD_ for the children (default: glibc's dynamic threshold)")
    parser.add_argument("--out", type=Path, default=Path("notes/capture_cpu.md"))
    parser.add_argument("--section", default="main", help="name of the table's section in --out")
    parser.add_argument("--rounds", type=int, default=None,
                        help="peers table: this many interleaved rounds, medians and ratios to plain (see above)")
    parser.add_argument("--backend", default="fast", help="attention backend of headscope's modes (fast, reference)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the children (default: torch's)")
    parser.add_argument("--max-pattern-tokens", type=int, default=2048,
                        help="peers table: tools that hold every pattern (eager, lens, nnsight, pattern) are not "
                             "run past this length (their memory is quadratic)")
    parser.add_argument("--child", nargs=5, metavar=("MODE", "LENGTH", "CHUNK", "BACKEND", "KEEP"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    problem = bad_arguments(args)
    if problem:
        parser.error(problem)
    if args.child:
        mode, length, chunk, backend, keep = args.child
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_one(mode, int(length), int(chunk), backend, None if keep == "all" else int(keep))))
        return
    env = dict(os.environ)
    if args.mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    before = machine_info()
    if args.threads:
        before["torch_threads"] = args.threads
    before["malloc"] = (f"MALLOC_MMAP_THRESHOLD_={env['MALLOC_MMAP_THRESHOLD_']}" if env.get("MALLOC_MMAP_THRESHOLD_")
                        else "glibc malloc, default (dynamic) mmap threshold")
    command = " ".join(["python benchmarks/capture_cpu.py"] + sys.argv[1:])
    if args.rounds:
        modes = args.modes if "--modes" in sys.argv else list(PEER_MODES)
        rows = peer_rounds(args, modes, env)
        after = machine_info()
        section = args.section if "--section" in sys.argv else "peers"
        write_block(peers_report(rows, {**before, "load_after": after["load"]}, command, args), args.out, section)
        return
    rows = []
    for length in args.lengths:
        for mode in args.modes:
            for chunk in args.chunk_sizes if mode != "plain" else [DEFAULT_CHUNK]:
                row = run_child(mode, length, chunk, args, env, keep="all")
                rows.append(row)
                print(format_row(row), flush=True)
    after = machine_info()
    write_notes(rows, args.out, section=args.section, machine={**before, "load_after": after["load"]},
                command=command)


def bad_arguments(args) -> str | None:
    """What is wrong with the command line (one line naming the fix), or None; checked before any
    child runs, so a 30-minute table does not fail in every child."""
    from probe.attention.backends import available_backends

    positive = {"--lengths": args.lengths, "--chunk-sizes": args.chunk_sizes,
                "--rounds": [args.rounds] if args.rounds is not None else [],
                "--threads": [args.threads] if args.threads is not None else [],
                "--max-pattern-tokens": [args.max_pattern_tokens]}
    for flag, values in positive.items():
        if any(value < 1 for value in values):
            return f"{flag} takes positive integers, got {' '.join(map(str, values))}"
    if args.backend not in available_backends():
        return f"unknown --backend {args.backend!r}; choose one of {', '.join(available_backends())}"
    if args.out.is_dir():
        return f"--out {args.out} is a folder; give the notes file to write (e.g. notes/capture_cpu.md)"
    return None


QUADRATIC = ("eager", "lens", "nnsight", "pattern")  # hold every layer's full pattern


def run_child(mode: str, length: int, chunk: int, args, env: dict, keep: str = "1") -> dict:
    """One configuration in its own process."""
    cmd = [sys.executable, __file__, "--child", mode, str(length), str(chunk), args.backend, keep]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode == 0:
        return json.loads(out.stdout.strip().splitlines()[-1])
    return {"mode": mode, "length": length, "chunk": chunk, "refused": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"}


def peer_rounds(args, modes: list[str], env: dict) -> list[dict]:
    """``args.rounds`` rounds; in each, every length, and at each length every tool in turn."""
    rows = []
    for round_index in range(args.rounds):
        for length in args.lengths:
            for mode in modes:
                if mode in QUADRATIC and length > args.max_pattern_tokens:
                    row = {"mode": mode, "length": length, "chunk": None,
                           "refused": f"not run: holds every pattern, over --max-pattern-tokens {args.max_pattern_tokens}"}
                else:
                    row = run_child(mode, length, args.chunk_sizes[0], args, env)
                row["round"] = round_index
                rows.append(row)
                print(f"round {round_index}: " + format_row(row), flush=True)
    return rows


def peer_table(rows: list[dict]) -> list[dict]:
    """Per (length, tool): medians over rounds of the time, of the ratio to the same round's
    plain forward, and of the peak memory over the resident size before the call."""
    import statistics

    plain = {(r["length"], r["round"]): r["seconds"] for r in rows if r["mode"] == "plain" and "refused" not in r}
    table = []
    for length in sorted({r["length"] for r in rows}):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            runs = [r for r in rows if r["length"] == length and r["mode"] == mode]
            done = [r for r in runs if "refused" not in r]
            if not done:
                table.append({"length": length, "mode": mode, "note": runs[0]["refused"] if runs else "-"})
                continue
            ratios = [r["seconds"] / plain[(length, r["round"])] for r in done if (length, r["round"]) in plain]
            table.append({"length": length, "mode": mode, "tokens": done[0]["tokens"], "rounds": len(done),
                          "seconds": statistics.median(r["seconds"] for r in done),
                          "ratio": statistics.median(ratios) if ratios else None,
                          "extra_mib": statistics.median(r["extra_mib"] for r in done), "note": ""})
    return table


def peers_report(rows: list[dict], machine: dict, command: str, args) -> str:
    """The peers block: machine and load, the command, and one row per (length, tool)."""
    load = f"load average {machine['load'][0]:.2f} (1 min) before the runs, {machine['load_after'][0]:.2f} after"
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['arch']}, {machine['cores']} cores, "
        f"{machine.get('ram_gib')} GiB RAM), torch threads {machine['torch_threads']}, torch {machine['torch']}, "
        f"Python {machine['python']}; {load}. Each (tool, length) in its own process, tools interleaved, "
        f"{args.rounds} rounds; medians. Ratio: to the plain forward (SDPA, last position's logits) of the same "
        f"round. headscope backend: {args.backend}.",
        "", f"`{command}`", "",
        "| tokens | tool | rounds | median s | ratio to plain | peak over RSS MiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in peer_table(rows):
        if "seconds" not in row:
            lines.append(f"| {row['length']} | {row['mode']} | 0 | - | - | - | {row['note'][:120]} |")
            continue
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        lines.append(f"| {row['tokens']} | {row['mode']} | {row['rounds']} | {row['seconds']:.2f} | {ratio} | "
                     f"{row['extra_mib']:.0f} | {row['note']} |")
    return "\n".join(lines)


def format_row(row: dict) -> str:
    chunk = row.get("chunk") or "-"
    if "refused" in row:
        return f"| {row['mode']} | {row['length']} | {chunk} | - | - | - | {row['refused'][:160]} |"
    note = "" if row.get("memory", "VmHWM") == "VmHWM" else "peak from ru_maxrss (includes model loading)"
    return (f"| {row['mode']} | {row['tokens']} | {chunk} | {row['seconds']:.2f} | {row['rss_before_mib']:.0f} | "
            f"{row['extra_mib']:.0f} | {note} |")


def growth(rows: list[dict]) -> list[str]:
    """Per mode and chunk size measured at two lengths or more: how the peak grows, MiB per 1k
    tokens between the shortest and the longest length measured (a secant, not a fit)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if "refused" not in row:
            groups.setdefault((row["mode"], row.get("chunk")), []).append(row)
    lines = []
    for (mode, chunk), measured in groups.items():
        measured = sorted(measured, key=lambda r: r["tokens"])
        if len(measured) < 2 or measured[-1]["tokens"] == measured[0]["tokens"]:
            continue
        first, last = measured[0], measured[-1]
        slope = (last["extra_mib"] - first["extra_mib"]) / ((last["tokens"] - first["tokens"]) / 1000)
        where = f"{mode}" + (f", chunk {chunk}" if chunk else "")
        lines.append(f"- {where}: {first['extra_mib']:.0f} MiB at {first['tokens']} tokens, "
                     f"{last['extra_mib']:.0f} MiB at {last['tokens']}: {slope:+.1f} MiB per 1k tokens")
    return lines


def _markers(section: str) -> tuple[str, str]:
    return f"<!-- capture_cpu.py section={section}: begin -->", f"<!-- capture_cpu.py section={section}: end -->"


def report(rows: list[dict], machine: dict, command: str = "") -> str:
    """The generated block: the machine, the table, and the growth per 1k tokens (measurements only)."""
    load = f"load average {machine['load'][0]:.2f} (1 min) before the runs"
    if machine.get("load_after"):
        load += f", {machine['load_after'][0]:.2f} after"
    lines = [
        f"Measured {machine['date']} on {machine['cpu']} ({machine['arch']}, {machine['cores']} cores, "
        f"{machine.get('ram_gib')} GiB RAM), torch threads {machine['torch_threads']} (OMP_NUM_THREADS="
        f"{machine.get('omp_num_threads')}), torch {machine['torch']}, Python {machine['python']}; {load}. "
        "One run each; times depend on what else the machine runs, memory does not.",
    ]
    if machine.get("malloc"):
        lines += ["", f"Allocator: {machine['malloc']}."]
    if command:
        lines += ["", f"`{command}`"]
    lines += [
        "",
        "| mode | tokens | chunk | seconds | RSS before MiB | peak over it MiB | note |",
        "|---|---|---|---|---|---|---|",
    ] + [format_row(r) for r in rows]
    slopes = growth(rows)
    if slopes:
        lines += ["", "Growth of the peak with length:"] + slopes
    return "\n".join(lines)


def write_notes(rows: list[dict], out: Path, section: str = "main", machine: dict | None = None,
                command: str = "") -> None:
    """Put the report of ``rows`` into ``out`` between ``section``'s markers, keeping the rest."""
    machine = machine if machine is not None else machine_info()
    write_block(report(rows, machine, command), out, section)


def write_block(body: str, out: Path, section: str) -> None:
    """Put ``body`` into ``out`` between ``section``'s markers, keeping the rest of the file."""
    begin, end = _markers(section)
    block = f"{begin}\n{body}\n{end}"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text() if out.exists() else "# Capture on CPU: SmolLM2-135M-Instruct (fp32)\n"
    if begin in text and end in text and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    out.write_text(text)


if __name__ == "__main__":
    main()
