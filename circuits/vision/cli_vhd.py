"""``headscope vlm vhd``: VHD of every head over a prompt set, written as one JSON file.

Items are the synthetic world's scenes (``--world SPLIT --count N``, each asked ``--prompt``,
by default the caption request) or a POPE question file's (image, question) pairs (``--pope FILE``
with ``--images DIR``, the first ``--count``). Everything the user can get wrong is checked before
the model loads; the file is written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from probe.cli_options import UsageError, check_output_path


def world_items(split: str, count: int, start: int, seed: int, prompt: str) -> tuple[list[str], list, list[str]]:
    """``count`` scenes of ``split`` from ``start``: prompts, rendered images, references."""
    from circuits.vision.render import render
    from circuits.vision.world import WorldConfig, scenes

    drawn = scenes(split, count, WorldConfig(seed=seed), start=start)
    return [prompt] * count, [render(s) for s in drawn], [s.reference for s in drawn]


def pope_items(path: Path, images_dir: Path | None, count: int) -> tuple[list[str], list, list[str]]:
    """The first ``count`` questions of a POPE file with their images (an unreadable one stops the run)."""
    from circuits.hallucination.items import ImageError, load_image
    from circuits.hallucination.questions import load_pope_questions

    questions = load_pope_questions(path)[:count]
    if not questions:
        raise UsageError(f"--pope: {path} holds no questions; pass a file of JSON lines "
                         "{question_id, image, text, label}")
    try:
        images = [load_image(q.image, images_dir) for q in questions]
    except ImageError as err:
        raise UsageError(f"--pope: {err}; pass --images DIR, the folder the file's image paths are relative "
                         "to") from None
    return [q.text for q in questions], images, [q.image for q in questions]


def check_args(args: argparse.Namespace) -> None:
    if (args.world is None) == (args.pope is None):
        raise UsageError("give one item source: --world SPLIT (the synthetic world's scenes) or --pope FILE")
    if args.pope is not None and not Path(args.pope).is_file():
        raise UsageError(f"--pope: {args.pope} is not a file; pass a POPE question file (JSON lines)")
    if args.images is not None and not Path(args.images).is_dir():
        raise UsageError(f"--images: {args.images} is not a folder; pass the folder of the POPE file's images")
    if not args.prompt.strip():
        raise UsageError("--prompt is empty; pass the request asked of every scene (default 'Describe this image.')")
    check_output_path(args.out)


def vhd_report(result, references: list[str], prompts: list[str], top_k: int) -> dict:
    """The JSON document of ``headscope vlm vhd`` (see :func:`run_vhd`)."""
    from circuits.vision.vhd import head_ranking, per_layer_view, total_vhd

    per_prompt_total = total_vhd(result.per_prompt, top_k)
    return {
        "count": result.count,
        "layers": result.mean.shape[0],
        "heads": result.mean.shape[1],
        "top_k": top_k,
        "vhd_mean": result.mean.tolist(),
        "vhd_cleaned_mean": result.cleaned_mean.tolist(),
        "text_norm_sq_mean": result.text_norm_sq.mean(0).tolist(),
        "outlier_mask": result.mean_outliers.tolist(),
        "outlier_rate": result.outlier_rate.tolist(),
        "t_vhd_mean": float(per_prompt_total.mean()),
        "t_vhd_of_mean": float(total_vhd(result.mean, top_k)),
        "ranking": [vars(head) for head in head_ranking(result.mean)],
        "per_layer": per_layer_view(result.mean),
        "items": [{"image": ref, "prompt": prompt, "t_vhd": float(t)}
                  for ref, prompt, t in zip(references, prompts, per_prompt_total)],
        "vhd_per_prompt": result.per_prompt.tolist(),
    }


def run_vhd(args: argparse.Namespace) -> int:
    """Measure, print the ten highest heads and T-VHD, write ``--out``."""
    from circuits.vision.vhd import prompt_set_vhd
    from probe.files import write_text_atomic
    from probe.models import load_model
    from probe.models.vlm_inputs import check_vision_model

    check_args(args)
    if args.world is not None:
        prompts, images, references = world_items(args.world, args.count, args.start, args.seed, args.prompt)
    else:
        prompts, images, references = pope_items(args.pope, args.images, args.count)
    model = load_model(args.model, device=args.device)
    check_vision_model(model)
    if args.top_k > model.geometry.n_heads:
        raise UsageError(f"--top-k {args.top_k}: layers of {args.model} have {model.geometry.n_heads} heads; "
                         f"pass 1..{model.geometry.n_heads}")
    result = prompt_set_vhd(model, prompts, images, batch_size=args.batch_size)
    report = {"model": args.model, "source": _source(args), **vhd_report(result, references, prompts, args.top_k)}
    write_text_atomic(args.out, json.dumps(report))
    print(f"VHD over {result.count} prompts; T-VHD (k={args.top_k}) mean {report['t_vhd_mean']:.3f}")
    for head in report["ranking"][:10]:
        print(f"  layer {head['layer']:3d} head {head['head']:3d}  VHD {head['vhd']:.4f}")
    print(f"wrote {args.out}")
    return 0


def _source(args: argparse.Namespace) -> dict:
    if args.world is not None:
        return {"world": args.world, "start": args.start, "count": args.count, "seed": args.seed, "prompt": args.prompt}
    return {"pope": str(args.pope), "images": str(args.images) if args.images else None, "count": args.count}
