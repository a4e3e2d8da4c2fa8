"""``headscope dashboard``: serve the heads dashboard on localhost."""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.cli_options import port_number, positive_int
from probe.model_names import DEFAULT_MODEL


def register(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="serve the heads dashboard (Dash) in a browser")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"registered name, HF folder or hub id (default {DEFAULT_MODEL})")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8050, help="TCP port, 1..65535 (default 8050)")
    p.add_argument("--record", type=Path, default=None, help="a saved attention record (from `headscope capture`) to show")
    p.add_argument("--no-model", action="store_true", help="do not load a model: show --record only")
    p.add_argument("--vision-model", default="synth-llava",
                   help="the vision panel's vision-language model, loaded on the panel's first run (default synth-llava)")
    p.add_argument("--long-input", type=positive_int, default=256, help="tokens above which heads are shown as summaries (default 256)")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=4096,
                   help="longest prompt the page captures, checked before any work is queued (default 4096)")
    p.add_argument("--job-threads", type=positive_int, default=1,
                   help="torch threads of each background job (default 1: concurrent sessions do not slow each other; "
                        "2 makes one user's long prompts faster, see notes/dashboard.md)")
    p.add_argument("--sync-tokens", type=int, default=128,
                   help="prompts of at most this many tokens are captured in the server, one at a time, without a "
                        "background job (faster first draw; default 128, 0: always a job)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from apps.heads_dashboard.app import serve  # dash is imported only when the command runs
    from apps.heads_dashboard.settings import DashboardSettings

    if args.no_model and args.record is None:
        raise ValueError("--no-model needs --record: there would be nothing to show")
    from probe.capture.record import AttentionRecord

    settings = DashboardSettings(model=args.model, host=args.host, port=args.port, record=args.record,
                                 long_input_tokens=args.long_input, vision_model=args.vision_model,
                                 max_prompt_tokens=args.max_prompt_tokens, job_threads=args.job_threads,
                                 sync_tokens=args.sync_tokens)
    record = AttentionRecord.load(args.record) if args.record is not None else None  # a bad record fails here
    print(f"headscope dashboard on http://{args.host}:{args.port}/ (model {args.model}, loading in the background)")
    serve(settings, record=record, **({"loader": None} if args.no_model else {}))
    return 0
