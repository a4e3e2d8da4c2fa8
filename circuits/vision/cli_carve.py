"""``headscope vlm carve``: CARVE on the synthetic world's scenes or on one image file.

Context:
    ``--world SPLIT --count N`` runs :func:`circuits.vision.carve_study.study_scene` on the first N
    scenes of the split (a present and an absent object each); ``--image FILE --question TEXT`` runs
    :func:`circuits.vision.carve_pipeline.carve` once. Either writes a JSON file holding, per item,
    the answer without and with CARVE, the contrast map's peak and the mask's box. Every argument is
    checked before the model loads.
"""

from __future__ import annotations

import argparse
import json

from circuits.vision.carve_pipeline import CarveOptions, CarvePrompts, prompts_for
from probe.cli_options import UsageError, check_output_path


def check_carve_args(args: argparse.Namespace) -> None:
    """One :class:`UsageError` naming a bad combination, before anything loads."""
    if (args.world is None) == (args.image is None):
        raise UsageError("give either --world SPLIT (scenes of the synthetic world) or --image FILE --question TEXT")
    if args.image is not None and not args.question:
        raise UsageError("--image needs --question TEXT (the question CARVE answers about the image)")
    if args.image is None and args.question:
        raise UsageError("--question goes with --image; --world asks its own questions about each scene")
    if args.image is not None and not args.image.is_file():
        raise UsageError(f"--image: {args.image} does not exist or is not a file; pass a JPEG or PNG file")
    if not 0.0 < args.top_percent <= 1.0:
        raise UsageError(f"--top-percent must lie in (0, 1], got {args.top_percent}; the paper's code uses 0.2")
    check_output_path(args.out)


def carve_options(args: argparse.Namespace) -> CarveOptions:
    base = prompts_for(args.model)
    prompts = CarvePrompts(general=args.general if args.general is not None else base.general,
                           suffix=args.suffix if args.suffix is not None else base.suffix)
    return CarveOptions(prompts=prompts, max_new_tokens=args.max_new_tokens, answer_tokens=args.answer_tokens,
                        layers=args.layers or None, step_mode=args.step_mode, top_percent=args.top_percent)


def run_carve(args: argparse.Namespace) -> int:
    check_carve_args(args)
    options = carve_options(args)
    from probe.models import load_model

    model = load_model(args.model, device=args.device)
    items = _world_items(model, args, options) if args.world else [_image_item(model, args, options)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "general": options.prompts.general,
                                    "suffix": options.prompts.suffix, "step_mode": options.step_mode,
                                    "items": items}, indent=1))
    for item in items:
        print(f"{item.get('scene', args.image)}  {item['object'] if 'object' in item else item['question']!r}: "
              f"without {item['plain_answer']!r}  with CARVE {item['carve_answer']!r}  peak {item['peak']}")
    print(f"wrote {args.out}")
    return 0


def _world_items(model, args: argparse.Namespace, options: CarveOptions) -> list[dict]:
    from circuits.vision.carve_study import study_scene
    from circuits.vision.world import scenes

    return [record for scene in scenes(args.world, args.count) for record in study_scene(model, scene, options)]


def _image_item(model, args: argparse.Namespace, options: CarveOptions) -> dict:
    from circuits.vision.carve_pipeline import carve

    result = carve(model, args.image, args.question, options)
    return {"image": str(args.image), "question": args.question, "plain_answer": result.plain_answer,
            "carve_answer": result.answer, "peak": result.peak, "mask_box": result.box,
            "refined_size": result.refined_image.size}
