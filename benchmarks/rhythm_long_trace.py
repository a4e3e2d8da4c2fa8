"""Time and peak memory of the rhythm analysis of one long trace, against eager attention maps.

The paper computes WAAD and FAI from full eager attention maps (``output_attentions=True``:
``layers x heads x n x n`` floats), which caps it at a few thousand tokens. headscope computes
them from statistics (``lookback``, ``band_sum``, ``distance``: linear in the trace). This script
measures both on one trace of each length, each run in its own process:

    rhythm   :func:`circuits.rhythm.analysis.analyse_traces` on the trace (statistics capture of
             every layer, head roles, WAAD, FAI, receiver FAI, and token entropy's extra forward).
    eager    the model's forward with eager attention and ``output_attentions=True``: what the
             paper's pipeline holds before it can compute anything.

The trace is real text: a GSM8K question under the chat template, then GSM8K solutions from
``--text`` (JSON lines with "answer") appended until the trace has the asked length.

CPU memory is the process's peak resident size over the run (``benchmarks/capture_cpu.py``'s
``PeakMemory``: VmHWM reset before the measured call, resident size before it subtracted). GPU
memory is ``torch.cuda.max_memory_allocated`` over the run minus what was allocated before (the
weights and the inputs). A run that does not fit reports ``out of memory``.

    python benchmarks/rhythm_long_trace.py --lengths 1024 2048 4096 [--modes rhythm eager]
        [--model smollm2-135m | --random gemma-3-270m --tokenizer DIR] [--device cuda]
        [--backend triton] [--dtype bfloat16] [--repeat 2] [--out notes/rhythm_long_trace.md]

``--random NAME`` builds the architecture of a registered model from a config written here,
with random weights (for machines without the weights: time and memory do not depend on the
weights' values; the rhythm itself does, so such runs report cost only). Not a test: it reports,
it does not assert.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from capture_cpu import PeakMemory, machine_info  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"

RANDOM_CONFIGS = {
    # Gemma-3-270M's architecture (its GGUF's metadata): 18 layers, 4 heads, 1 KV head, head_dim
    # 256, a sliding window of 512 on five of every six layers, a 32k context.
    "gemma-3-270m": dict(model_type="gemma3_text", vocab_size=262144, hidden_size=640, intermediate_size=2048,
                         num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                         max_position_embeddings=32768, sliding_window=512, rope_theta=1_000_000.0,
                         query_pre_attn_scalar=256),
    # SmolLM2-135M's architecture with its context stretched to 32k (RoPE extrapolates; cost only).
    "smollm2-135m-32k": dict(model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                             num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                             max_position_embeddings=32768, rope_theta=100000.0, tie_word_embeddings=True),
}


def load(args: argparse.Namespace):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Tokenizer

    from probe.models import LoadedModel, load_model
    from probe.models.loading import prepare_tokenizer

    dtype = getattr(torch, args.dtype)
    if args.random is None:
        return load_model(args.model, dtype=dtype, device=args.device)
    settings = dict(RANDOM_CONFIGS[args.random])
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(0)
    with torch.device(args.device):
        hf = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    tokenizer = GPT2Tokenizer.from_pretrained(args.tokenizer)  # vocab.json + merges.txt: any BPE text will do
    prepare_tokenizer(tokenizer)
    return LoadedModel(name=f"random {args.random}", hf=hf, tokenizer=tokenizer)


def long_trace(model, length: int, text: Path):
    """A trace of ``length`` tokens: a chat-template question, then GSM8K solutions appended."""
    from circuits.rhythm.traces import traces_from_text

    records = [json.loads(line) for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    question = f"{records[0]['question']}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    messages = [{"role": "user", "content": question}]
    tok = model.tokenizer
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) if tok.chat_template else question
    response, i = "", 0
    while len(tok(response, add_special_tokens=False)["input_ids"]) < length:
        chunk = "\n\n".join(r["answer"].split("####")[0].strip() for r in records[i:i + 200])
        response, i = response + "\n\n" + chunk, i + 200
    trace = traces_from_text(tok, prompt, response)
    keep = length - len(trace.prompt_ids)
    return replace(trace, response_ids=trace.response_ids[:keep], response=tok.decode(trace.response_ids[:keep]))


def measure(args: argparse.Namespace, mode: str, length: int) -> dict:
    import torch

    torch.set_grad_enabled(False)
    model = load(args)
    trace = long_trace(model, length, args.text)
    row = {"mode": mode, "length": len(trace.prompt_ids) + len(trace.response_ids), "model": model.name,
           "device": args.device, "dtype": args.dtype, "backend": args.backend if mode == "rhythm" else "eager"}
    warm_up(model, args)
    try:
        for _ in range(args.repeat):  # the last run is reported (earlier ones compile kernels for this length)
            with Peak(args.device) as peak:
                result = RUNS[mode](model, trace, args)
    except torch.OutOfMemoryError as err:
        return {**row, "refused": f"out of memory: {str(err).splitlines()[0][:160]}"}
    return {**row, **result, **peak.figures()}


def warm_up(model, args: argparse.Namespace) -> None:
    """One short forward, so that paging the weights in and compiling kernels are not measured."""
    import torch

    from circuits.rhythm.analysis import analyse_traces
    from circuits.rhythm.metrics import RhythmConfig
    from circuits.rhythm.traces import traces_from_text

    trace = traces_from_text(model.tokenizer, "Warm up: 1 + 1 =", " 2. " * 20)
    analyse_traces(model, [trace], RhythmConfig(band_hi=None, backend=args.backend), progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def run_rhythm(model, trace, args: argparse.Namespace) -> dict:
    from circuits.rhythm.analysis import analyse_traces
    from circuits.rhythm.metrics import RhythmConfig
    from circuits.rhythm.peaks import fai_peaks, waad_peaks

    config = RhythmConfig(band_hi=None if args.band_to_end else 100, backend=args.backend)
    (rhythm,) = analyse_traces(model, [trace], config, progress=False)
    return {"response_tokens": len(rhythm.tokens), "waad_peaks": len(waad_peaks(rhythm.waad)),
            "fai_peaks": len(fai_peaks(rhythm.fai))}


def run_eager(model, trace, args: argparse.Namespace) -> dict:
    import torch

    model.hf.set_attn_implementation("eager")
    ids = torch.tensor([list(trace.prompt_ids) + list(trace.response_ids)], device=args.device)
    out = model.hf(input_ids=ids, use_cache=False, output_attentions=True, logits_to_keep=1)
    held = sum(a.numel() * a.element_size() for a in out.attentions)
    return {"attention_maps_mib": held / 2**20}


RUNS = {"rhythm": run_rhythm, "eager": run_eager}


class Peak:
    """Seconds and peak memory of a block: CPU resident memory, or CUDA allocations."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> "Peak":
        if not self.cuda:
            self.cpu = PeakMemory().__enter__()
            return self
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.before = torch.cuda.memory_allocated()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if not self.cuda:
            self.cpu.__exit__(*exc)
            return
        import torch

        torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.peak = torch.cuda.max_memory_allocated()

    def figures(self) -> dict:
        if not self.cuda:
            return self.cpu.figures()
        return {"seconds": self.seconds, "extra_mib": (self.peak - self.before) / 2**20, "memory": "cuda allocated"}


def format_row(row: dict) -> str:
    head = f"| {row['mode']:6} | {row['length']:6} | {row['backend']:9} |"
    if "refused" in row:
        return f"{head} {row['refused']} | | |"
    extra = f"{row['extra_mib']:9.0f}"
    note = (f"{row['attention_maps_mib']:.0f} MiB of maps returned" if "attention_maps_mib" in row
            else f"{row['response_tokens']} response tokens, {row['waad_peaks']} WAAD / {row['fai_peaks']} FAI peaks")
    return f"{head} {row['seconds']:8.2f} | {extra} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--modes", nargs="+", default=["rhythm", "eager"], choices=sorted(RUNS))
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="smollm2-135m", help="registered name or folder (real weights)")
    which.add_argument("--random", choices=sorted(RANDOM_CONFIGS), default=None,
                       help="an architecture with random weights (cost only)")
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared" / "data" / "gpt2-tokenizer"),
                        help="GPT-2-style tokenizer folder (vocab.json, merges.txt) for --random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="reference", choices=("reference", "triton"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--band-to-end", action="store_true", help="FAI's band to the end (section 4), not 10..100")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="GSM8K JSON lines whose answers fill the trace")
    parser.add_argument("--repeat", type=int, default=1, help="runs per child; the last is reported (2 on a GPU: "
                        "the first compiles the kernels' variants for the length)")
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.random is not None:
        args.model = None
    if args.child:
        print(json.dumps(measure(args, args.child[0], int(args.child[1]))))
        return
    machine = machine_info()
    lines = [f"machine: {json.dumps(machine)}", f"model: {args.model or 'random ' + args.random}, {args.dtype}, "
             f"{args.device}; band {'10..end' if args.band_to_end else '10..100'}", "",
             "| mode   | tokens | backend   | seconds  | peak MiB over the model | notes |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for length in args.lengths:
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", mode, str(length)],
                                 capture_output=True, text=True)
            row = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else
                   {"mode": mode, "length": length, "backend": args.backend if mode == "rhythm" else "eager",
                    "refused": f"exit {out.returncode}: {out.stderr.strip()[-300:]}"})
            lines.append(format_row(row))
            print(lines[-1], flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
