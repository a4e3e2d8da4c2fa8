"""``headscope capture``: capture attention for prompts, print a per-layer summary, save a record.

torch, transformers and the capture code are imported in :func:`run`, so building the parser
stays light (``headscope --help`` answers at once).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from probe.cli_options import check_output_path, int_list, non_negative_int, positive_int
from probe.model_names import DEFAULT_MODEL

if TYPE_CHECKING:
    from probe.capture import AttentionRecord


def register(subparsers) -> None:
    p = subparsers.add_parser("capture", help="capture attention for prompts and save a record")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name, HF folder or hub id (default {DEFAULT_MODEL})")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    source.add_argument("--prompts-file", type=Path, help="text file, one prompt per line")
    p.add_argument("--mode", choices=("stats", "pattern"), default="stats")
    p.add_argument("--layers", type=int_list, default=None, help="comma-separated layer indices (default: all)")
    p.add_argument("--block-size", type=positive_int, default=None, help="also record block summaries over BxB tiles")
    p.add_argument("--head-positions", type=int_list, default=(), help="positions whose per-head outputs to keep")
    p.add_argument("--backend", default="fast",
                   help="attention backend for recorded layers (fast, reference, triton)")
    p.add_argument("--engine", choices=("hf", "lens"), default="hf")
    p.add_argument("--top", type=non_negative_int, default=3, help="non-initial sinks to list per layer")
    p.add_argument("--out", type=Path, default=Path("attention_record"), help="output path stem of the saved record (default attention_record)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from probe.capture import CaptureConfig, capture
    from probe.models import load_model

    prompts = args.prompt if args.prompt else read_prompts(args.prompts_file)
    config = CaptureConfig(
        mode=args.mode,
        layers=args.layers,
        block_size=args.block_size,
        head_output_positions=tuple(args.head_positions),
        backend=args.backend,
    )
    check_output_path(args.out, stem=True)
    model = load_model(args.model)
    torch.set_grad_enabled(False)
    record = capture(model, prompts, config, engine=args.engine)
    print_summary(record, args.top)
    print(f"saved {record.save(args.out)}")
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
    """Per layer of the first prompt: first-token share and the strongest non-initial sinks."""
    from probe.summary import image_summary, layer_summaries

    n_prompts, n_tokens = record.batch_size, len(record.tokens[0])
    print(f"model {record.model}: {n_prompts} prompt(s), {n_tokens} tokens in the first")
    if record.image_mask is not None:
        print(image_summary(record, prompt=0))
    if n_prompts > 1:
        print(f"summary of prompt 0 of {n_prompts} (the record holds all {n_prompts})")
    print(f"{'layer':>5}  {'first-token share':>17}  strongest non-initial sinks (token@pos: ACT score)")
    rows = layer_summaries(record, top=top)
    for row in rows:
        sinks = ", ".join(f"{s.token!r}@{s.position}: {s.score:.2f}" for s in row.sinks) or "-"
        print(f"{row.layer:>5}  {row.first_token_share:>17.3f}  {sinks}")
    if n_tokens == 1 and any(math.isnan(row.first_token_share) for row in rows):
        print("nan: the first-token share is undefined for a one-token prompt "
              "(no query after the first token to attend to it)")
