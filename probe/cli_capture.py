"""``headscope capture``: capture attention for prompts, print a per-layer summary, save a record."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from probe.capture import AttentionRecord, CaptureConfig, capture
from probe.models import DEFAULT_MODEL, load_model
from probe.summary import layer_summaries


def register(subparsers) -> None:
    p = subparsers.add_parser("capture", help="capture attention for prompts and save a record")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name, HF folder or hub id (default {DEFAULT_MODEL})")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    source.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    p.add_argument("--mode", choices=("stats", "pattern"), default="stats")
    p.add_argument("--layers", type=_int_list, default=None, help="comma-separated layer indices (default: all)")
    p.add_argument("--block-size", type=int, default=None, help="also record block summaries over BxB tiles")
    p.add_argument("--head-positions", type=_int_list, default=(), help="positions whose per-head outputs to keep")
    p.add_argument("--backend", default="reference", help="attention backend for recorded layers")
    p.add_argument("--engine", choices=("hf", "lens"), default="hf")
    p.add_argument("--top", type=int, default=3, help="non-initial sinks to list per layer")
    p.add_argument("--out", type=Path, default=Path("attention_record"), help="output stem (.safetensors + .json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prompts = args.prompt if args.prompt else read_prompts(args.prompts_file)
    config = CaptureConfig(
        mode=args.mode,
        layers=args.layers,
        block_size=args.block_size,
        head_output_positions=tuple(args.head_positions),
        backend=args.backend,
    )
    model = load_model(args.model)
    torch.set_grad_enabled(False)
    record = capture(model, prompts, config, engine=args.engine)
    print_summary(record, args.top)
    tensors, meta = record.save(args.out)
    print(f"saved {tensors} and {meta}")
    return 0


def read_prompts(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read prompts file {path}: {err}") from err
    prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompts file {path} has no non-empty line; put one prompt per line")
    return prompts


def print_summary(record: AttentionRecord, top: int) -> None:
    print(f"model {record.model}: {record.batch_size} prompt(s), {len(record.tokens[0])} tokens in the first")
    print(f"{'layer':>5}  {'first-token share':>17}  strongest non-initial sinks (token@pos: ACT score)")
    for row in layer_summaries(record, top=top):
        sinks = ", ".join(f"{s.token!r}@{s.position}: {s.score:.2f}" for s in row.sinks) or "-"
        print(f"{row.layer:>5}  {row.first_token_share:>17.3f}  {sinks}")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
