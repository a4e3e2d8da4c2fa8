"""Run functions of ``headscope rhythm traces``, ``headscope rhythm analyse`` and ``headscope rhythm
perturb``; their parsers are in :mod:`circuits.cli`.

``rhythm traces`` generates GSM8K traces into a resumable JSON-lines file
(:func:`circuits.rhythm.traces.generate_traces`). ``rhythm analyse`` captures each batch of
traces once in statistics mode (:func:`circuits.rhythm.analysis.analyse_traces`), writes one
JSON line per trace (tokens, WAAD, FAI, receiver FAI, entropy, peaks, head roles) and a last line
with the three couplings of the paper's Table 2 and where the peaks fall
(:mod:`circuits.rhythm.anchors`: shares at numbers, line and sentence starts), prints the
couplings next to the paper's
figures, and optionally writes a self-contained HTML report. ``rhythm perturb`` runs the
perturbation test of the paper's Table 1 (:mod:`circuits.rhythm.perturb`) and writes one JSON
file. Bad input (an unwritable output, a
missing or empty trace file, traces longer than the context, responses too short for the band)
raises ``ValueError`` naming the problem, before the model loads where the arguments alone show
it; the CLI prints it as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from circuits.rhythm.analysis import analyse_traces
from circuits.rhythm.anchors import Placement, all_placements, format_placements
from circuits.rhythm.content_words import stop_words
from circuits.rhythm.metrics import RhythmConfig, TokenRhythm, paper_rl_layers
from circuits.rhythm.perturb import PerturbConfig, check_long_enough, perturb_traces
from circuits.rhythm.perturb_summary import format_summary, perturbation_record, summarise
from circuits.rhythm.peaks import (COUPLINGS, PAPER_COUPLINGS, Coupling, CouplingConfig, fai_peaks, rhythm_couplings,
                                   waad_peaks)
from circuits.rhythm.problems import load_problems
from circuits.rhythm.report import format_couplings, write_report
from circuits.rhythm.trace_fai import analysis_fai, compute_fai, read_analysis
from circuits.rhythm.traces import Trace, TraceConfig, check_trace_file, generate_traces, read_text_traces, read_traces
from probe.capture.inputs import check_layers
from probe.cli_options import UsageError, check_output_path
from probe.files import write_text_atomic
from probe.model_names import DEFAULT_MODEL
from probe.models import LoadedModel, load_model


def run_traces(args: argparse.Namespace) -> int:
    config = TraceConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                         batch_size=args.batch_size)
    check_output_path(args.out)
    already = max(0, len(check_trace_file(args.out)) - 1)  # lines after the header
    problems = load_problems(args.problems, limit=args.limit)
    torch.set_grad_enabled(False)
    traces = generate_traces(load_model(args.model), problems, config, args.out)
    print(traces_summary(traces, already))
    print(f"saved {args.out}")
    return 0


def traces_summary(traces: list[Trace], already: int) -> str:
    """One line: traces, how many were there before, answers correct, responses ended, length."""
    judged = [t.correct for t in traces if t.correct is not None]
    ended = sum(bool(t.stopped_at_eos) for t in traces)
    mean = np.mean([len(t.response_ids) for t in traces])
    return (f"{len(traces)} traces ({len(traces) - already} generated now, {already} already in the file); "
            f"answers correct {sum(judged)}/{len(judged)}; {ended}/{len(traces)} ended before the token limit; "
            f"mean response {mean:.0f} tokens")


def run_analyse(args: argparse.Namespace) -> int:
    if args.traces is None and args.text_traces is None:
        raise UsageError("nothing to analyse: pass --traces FILE (from `headscope rhythm traces`), "
                         "--text-traces FILE, or both")
    config = RhythmConfig(window=args.window, band_lo=args.band[0], band_hi=args.band[1], backend=args.backend)
    check_output_path(args.out)
    if args.report is not None:
        check_output_path(args.report, "--report")
    generated = read_traces(args.traces) if args.traces is not None else []
    torch.set_grad_enabled(False)
    model = load_model(analysis_model(args.model, generated), device=args.device)
    text = read_text_traces(args.text_traces, model.tokenizer) if args.text_traces is not None else []
    traces = generated + text
    sources = [str(args.traces)] * len(generated) + [str(args.text_traces)] * len(text)
    if args.skip_short:
        traces, sources = long_enough(traces, sources, config.band_lo + 1, f"a band {config.band_lo} tokens ahead")
    config = replace(config, layers=ranked_layers(args, model))
    rhythms = analyse_traces(model, traces, config, batch_size=args.batch_size)
    coupling_config = CouplingConfig()
    couplings = rhythm_couplings(rhythms, coupling_config, allow_missing=True)
    records = [trace_record(t, s, r, coupling_config) for t, s, r in zip(traces, sources, rhythms)]
    placements = all_placements(rhythms, coupling_config)
    records.append(couplings_record(couplings, config, coupling_config, model.name, len(traces)))
    records[-1]["anchors"] = [placement_entry(p) for p in placements]
    write_text_atomic(args.out, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
    print(f"{len(traces)} traces, {model.name}, W={config.window}, band {config.band_lo}..{band_end(config)}, "
          f"layers {'all' if config.layers is None else list(config.layers)}")
    print(format_couplings(couplings))
    print("where peaks fall (share of peaks on a token class against its share of tokens):")
    print(format_placements(placements))
    print(f"saved {args.out}")
    if args.report is not None:
        labels = [trace_label(t, s) for t, s in zip(traces, sources)]
        write_report(rhythms, couplings, args.report, labels=labels, rule=coupling_config.rule, placements=placements)
        print(f"saved {args.report}")
    return 0


def run_perturb(args: argparse.Namespace) -> int:
    if args.traces is None and args.text_traces is None:
        raise UsageError("nothing to perturb: pass --traces FILE (from `headscope rhythm traces`), "
                         "--text-traces FILE, or both")
    if args.analysis is not None and args.band is not None:
        raise UsageError("--band sets the band of FAI computed here; with --analysis the file's FAI is used as it is")
    config = PerturbConfig(pairs=args.pairs, skip_first=args.skip_first, min_after=args.min_after, rank=args.rank,
                           rollout_tokens=args.rollout_tokens, stop_words=args.stop_words)
    check_output_path(args.out)
    stop_words(config.stop_words)  # a missing stop-word source fails before the model loads
    analysis = read_analysis(args.analysis) if args.analysis is not None else None
    generated = read_traces(args.traces)[:args.limit] if args.traces is not None else []
    if not args.skip_short:
        check_long_enough(generated, config)
    torch.set_grad_enabled(False)
    model = load_model(analysis_model(args.model, generated), device=args.device)
    text = read_text_traces(args.text_traces, model.tokenizer) if args.text_traces is not None else []
    text = text[:max(0, args.limit - len(generated))] if args.limit is not None else text
    traces = generated + text
    sources = [str(args.traces)] * len(generated) + [str(args.text_traces)] * len(text)
    if args.skip_short:
        traces, sources = long_enough(traces, sources, config.min_response, "a high- and a low-FAI position")
    check_long_enough(traces, config)
    if analysis is not None:
        fais = analysis_fai(analysis, traces, sources)
        fai = {"analysis": str(analysis.path), "settings": analysis.settings}
    else:
        band = args.band or (10, None)
        rhythm = RhythmConfig(band_lo=band[0], band_hi=band[1])
        fais = compute_fai(model, traces, rhythm, batch_size=args.batch_size)
        fai = {"computed": asdict(rhythm)}
    trials = perturb_traces(model, traces, fais, config, batch_size=args.batch_size)
    summary = summarise(trials, n_boot=config.n_boot, seed=config.seed)
    record = perturbation_record(trials, summary, traces, sources, config, model=model.name, fai=fai)
    write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")
    print(format_summary(summary))
    print(f"saved {args.out}")
    return 0


def long_enough(traces: list[Trace], sources: list[str], minimum: int, need: str) -> tuple[list[Trace], list[str]]:
    """The traces with at least ``minimum`` response tokens (and their sources); the others are
    named on stderr (``--skip-short``). Leaving every trace out is an error."""
    kept = [i for i, trace in enumerate(traces) if len(trace.response_ids) >= minimum]
    left_out = [trace for trace in traces if len(trace.response_ids) < minimum]
    if left_out:
        named = ", ".join(f"trace {t.index}: {len(t.response_ids)}" for t in left_out[:8])
        print(f"warning: left out {len(left_out)} trace(s) with fewer than {minimum} response tokens, too short for "
              f"{need} ({named}{', ...' if len(left_out) > 8 else ''})", file=sys.stderr)
    if not kept:
        raise ValueError(f"every trace has fewer than {minimum} response tokens, too short for {need}; "
                         "generate longer responses (--max-new-tokens)")
    return [traces[i] for i in kept], [sources[i] for i in kept]


def analysis_model(requested: str | None, traces: list[Trace]) -> str:
    """The model to analyse with: ``requested``, else the one that generated ``traces``, else the
    default. A requested model other than the generator gets a warning: the traces' token ids
    are read with its vocabulary."""
    generators = sorted({t.generation["model"] for t in traces if t.generation})
    if requested is None:
        return generators[0] if generators else DEFAULT_MODEL
    if generators and requested not in generators:
        print(f"warning: the traces were generated by {', '.join(generators)}; their token ids are read as "
              f"{requested}'s (the same tokenizer is needed; for another model's text use --text-traces)",
              file=sys.stderr)
    return requested


def ranked_layers(args: argparse.Namespace, model: LoadedModel) -> tuple[int, ...] | None:
    """``--paper-layers``, ``--layers`` (checked against the model) or None (every layer)."""
    if args.paper_layers:
        return paper_rl_layers(model.geometry.n_layers)
    if args.layers is not None:
        return check_layers(args.layers, model.geometry)
    return None


def band_end(config: RhythmConfig) -> str:
    return "end" if config.band_hi is None else str(config.band_hi)


def trace_label(trace: Trace, source: str) -> str:
    """A report heading: the trace, its file, and its answer against the reference."""
    label = f"trace {trace.index} ({Path(source).name})"
    if trace.reference is not None:
        verdict = "correct" if trace.correct else "wrong"
        label += f": answer {trace.predicted}, reference {trace.reference} ({verdict})"
    return label


# --- JSON lines ----------------------------------------------------------------------------


def numbers(values) -> list[float | None]:
    """JSON-ready floats, NaN and infinities as null."""
    array = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    return [float(v) if math.isfinite(v) else None for v in array]


def heads(pairs) -> list[list[int]]:
    return [[int(layer), int(head)] for layer, head in pairs]


def trace_record(trace: Trace, source: str, rhythm: TokenRhythm, config: CouplingConfig) -> dict:
    """One trace's line: where it came from, its tokens, its per-token signals, peaks and heads.

    Index ``i`` of ``tokens``, ``waad``, ``fai``, ``receiver_fai``, ``entropy`` is response token
    ``i`` (position ``response_start + i`` of prompt + response); FAI is null where its band is
    empty; peaks are indices into these lists.
    """
    roles = rhythm.roles
    return {
        "kind": "trace", "source": source, "index": trace.index, "question": trace.question,
        "reference": trace.reference, "predicted": trace.predicted, "correct": trace.correct,
        "response_start": rhythm.response_start, "tokens": list(rhythm.tokens),
        "waad": numbers(rhythm.waad), "fai": numbers(rhythm.fai), "receiver_fai": numbers(rhythm.receiver_fai),
        "entropy": numbers(rhythm.entropy) if rhythm.entropy is not None else None,
        "peaks": {"waad": waad_peaks(rhythm.waad, config.rule).tolist(),
                  "fai": fai_peaks(rhythm.fai, config.rule).tolist(),
                  "receiver_fai": fai_peaks(rhythm.receiver_fai, config.rule).tolist()},
        "heads": {"layers": list(roles.layers), "spans": [numbers(row) for row in roles.spans],
                  "local": heads(roles.local_heads), "global": heads(roles.global_heads),
                  "receiver": heads(roles.receiver_heads)},
    }


def coupling_entry(name: str, coupling: Coupling | None) -> dict:
    """One coupling as JSON, with the paper's figures; ``measured: false`` where it had no peaks."""
    paper = PAPER_COUPLINGS[name]
    entry = {"label": paper.label, "paper": {"observed": paper.observed, "random": paper.random, "lift": paper.lift}}
    if coupling is None:
        return {**entry, "measured": False, "reason": "no peaks of the shuffled signal in any trace"}
    lift = coupling.lift
    return {**entry, "measured": True, "observed": numbers([coupling.observed])[0],
            "random": numbers([coupling.random])[0], "lift": dict(zip(("value", "low", "high"),
                                                                       numbers([lift.value, lift.low, lift.high]))),
            "n_traces": coupling.n_traces, "n_peaks": coupling.n_peaks}


def placement_entry(placement: Placement) -> dict:
    """One anchor placement as JSON (null where a share is undefined: no peaks of that signal)."""
    entry = placement.as_dict()
    entry["share"], entry["base"] = numbers([placement.share, placement.base])
    entry["lift"] = dict(zip(("value", "low", "high"), numbers([placement.lift.value, placement.lift.low,
                                                                   placement.lift.high])))
    return entry


def couplings_record(couplings: dict[str, Coupling], config: RhythmConfig, coupling_config: CouplingConfig,
                     model: str, n_traces: int) -> dict:
    """The last line: the settings and the three couplings, each next to the paper's figures."""
    settings = {**asdict(config), "layers": list(config.layers) if config.layers is not None else None,
                **asdict(coupling_config), "model": model}
    return {"kind": "couplings", "n_traces": n_traces, "settings": settings,
            "couplings": {name: coupling_entry(name, couplings.get(name)) for name in COUPLINGS}}
