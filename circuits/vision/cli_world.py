"""``headscope vlm world``: write the synthetic world's evaluation sets (see :mod:`circuits.vision.item_sets`)."""

from __future__ import annotations

import argparse

from circuits.vision.item_sets import write_world_sets
from circuits.vision.world import WorldConfig
from probe.cli_options import UsageError


def run_world(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; pass a folder for the world's item sets")
    paths = write_world_sets(args.out, args.split, args.count, per_image=args.per_image, seed=args.seed,
                             config=WorldConfig(seed=args.world_seed))
    for what, path in paths.items():
        print(f"{what:12s} {path}")
    pope = " ".join(f"--pope {paths[s]}" for s in ("random", "popular", "adversarial"))
    print(f"evaluate: headscope vlm eval --model synth-llava {pope} --chair-captions --annotations {paths['annotations']} "
          f"--chair-vocabulary {paths['vocabulary']} --caption-prompt 'Describe this image.' --out OUT")
    return 0
