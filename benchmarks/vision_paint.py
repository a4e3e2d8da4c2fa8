"""PAINT on synth-llava: which tokens it picks, and what it does to yes/no answers and captions.

Parts (each written to ``OUT/paint_<part>.json`` as it finishes, so a slow machine keeps what
it measured):

    tokens   local / summary tokens per image on held-out scenes, and the share of each that
             falls on an object (patch square overlapping an object's box) against all patches.
    absent   yes-rate to the absent planted partner on broken scenes ("Is there a knife ..." for
             a scene with a fork and no knife), per condition (none, paint, paint-random).
    heldout  yes/no accuracy on held-out scenes (one sampled question per scene, half present).
    chair    CHAIR_S / CHAIR_I / recall of captions of broken scenes (the world vocabulary of
             ``write_world_sets``).
    mass     attention mass the last query pays to the image tokens (``span_mass``), mean over heads,
             per edited layer, without and with PAINT (absent-partner questions of broken scenes).
    scaled   absent and heldout with PAINT's alpha and beta multiplied by ``--scale`` (the code's
             0.7 / 0.3 break synth-llava's answers).

Intervals: percentile bootstrap over items (paired differences against ``none``).

Usage:
    python benchmarks/vision_paint.py --out benchmarks/vision_paint_results --pope 100 --captions 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from circuits.evaluation.bootstrap import bootstrap_difference, bootstrap_mean
from circuits.hallucination.chair import ChairVocabulary, chair_metrics
from circuits.hallucination.conditions import batch_edits, edits_for
from circuits.vision.item_sets import write_world_sets
from circuits.vision.language import CAPTION_PROMPT, YES, question, sample_question
from circuits.vision.paint import ALPHA, BETA, paint_edits, paint_tokens
from circuits.vision.render import render
from circuits.vision.world import PARTNER, scenes
from probe.edits import apply_edits
from probe.models import load_model
from probe.models.vlm_inputs import generate_answers

CONDITIONS = ("none", "paint", "paint-random")
PATCH = 14
GRID = 8


def patch_box(index: int) -> tuple[int, int, int, int]:
    row, col = divmod(index, GRID)
    return col * PATCH, row * PATCH, (col + 1) * PATCH, (row + 1) * PATCH


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def on_object(index: int, scene) -> bool:
    return any(overlaps(patch_box(index), obj.box) for obj in scene.objects)


def token_part(model, count: int) -> dict:
    chosen = scenes("heldout", count)
    images = [render(s) for s in chosen]
    tokens = paint_tokens(model, images)
    local = [len(t) for t in tokens.local]
    summary = [len(t) for t in tokens.summary]
    local_hits = [on_object(i, s) for t, s in zip(tokens.local, chosen) for i in t]
    summary_hits = [on_object(i, s) for t, s in zip(tokens.summary, chosen) for i in t]
    base = [on_object(i, s) for s in chosen for i in range(GRID * GRID)]
    return {
        "n_images": count,
        "local_per_image": {"mean": float(np.mean(local)), "min": min(local), "max": max(local)},
        "summary_per_image": {"mean": float(np.mean(summary)), "min": min(summary), "max": max(summary)},
        "local_on_object": bootstrap_mean(local_hits).as_dict(),
        "summary_on_object": bootstrap_mean(summary_hits).as_dict() if summary_hits else None,
        "all_patches_on_object": bootstrap_mean(base).as_dict(),
        "note": "items of the bootstrap are tokens (pooled over images)",
    }


def answers(model, condition: str, prompts: list[str], images: list, max_new_tokens: int, batch: int) -> list[str]:
    built = edits_for(condition, model)
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        p, im = prompts[start:start + batch], images[start:start + batch]
        edits = batch_edits(built, p, im)
        with apply_edits(model, edits) if edits else torch.no_grad():
            out += generate_answers(model, p, im, max_new_tokens=max_new_tokens, batch_size=len(p))
    return out


def scaled_answers(model, scale: float, prompts: list[str], images: list, batch: int) -> list[str]:
    """Answers under PAINT with alpha and beta times ``scale``."""
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        p, im = prompts[start:start + batch], images[start:start + batch]
        edits = paint_edits(paint_tokens(model, im), model.geometry.n_layers, ALPHA * scale, BETA * scale)
        with apply_edits(model, edits):
            out += generate_answers(model, p, im, max_new_tokens=2, batch_size=len(p))
    return out


def scaled_part(model, count: int, batch: int, scale: float, folder: Path) -> dict:
    """Yes-rate to absent partners and held-out accuracy under PAINT scaled, against ``none``
    read back from the absent and heldout parts' answers (same items and order)."""
    result = {"n": count, "scale": scale, "alpha": ALPHA * scale, "beta": BETA * scale}
    broken = scenes("broken", count)
    prompts = [question(PARTNER[next(o.name for o in s.objects if o.name in PARTNER)]) for s in broken]
    said = scaled_answers(model, scale, prompts, [render(s) for s in broken], batch)
    base = [yes(a) for a in answers(model, "none", prompts, [render(s) for s in broken], 2, batch)]
    result["yes_rate_to_absent_partner"] = compare({"none": base, "paint-scaled": [yes(a) for a in said]})
    result["absent_answers_sample"] = said[:8]
    rng = np.random.default_rng(0)
    held = scenes("heldout", count)
    asked = [sample_question(s, rng) for s in held]
    images = [render(s) for s in held]
    said = scaled_answers(model, scale, [q for q, _ in asked], images, batch)
    base = answers(model, "none", [q for q, _ in asked], images, 2, batch)
    hits = {c: [yes(a) == (t == YES) for a, (_, t) in zip(ans, asked)] for c, ans in (("none", base), ("paint-scaled", said))}
    result["heldout_accuracy"] = compare(hits)
    return result


def mass_part(model, count: int) -> dict:
    """Image-token attention mass of the last query, per layer, plain and under PAINT."""
    from probe import CaptureConfig, capture

    layers = tuple(range(2, model.geometry.n_layers))
    config = CaptureConfig(image_span=True, layers=layers)
    rows = {"none": [], "paint": [], "paint-random": []}
    for scene in scenes("broken", count):
        image = render(scene)
        prompt = question(PARTNER[next(o.name for o in scene.objects if o.name in PARTNER)])
        for condition in rows:
            edits = batch_edits(edits_for(condition, model), [prompt], [image])
            with apply_edits(model, edits) if edits else torch.no_grad():
                record = capture(model, [prompt], config, images=[image])
            rows[condition].append([float(record.stat(layer, "span_mass", 0)[:, -1].mean()) for layer in layers])
    table = {c: np.asarray(v) for c, v in rows.items()}
    return {"n": count, "layers": list(layers),
            "per_layer_mean": {c: [round(float(x), 4) for x in t.mean(0)] for c, t in table.items()},
            "all_layers_mean": {c: bootstrap_mean(t.mean(1)).as_dict() for c, t in table.items()}}


def yes(text: str) -> bool:
    return text.strip().lower().startswith("yes")


def compare(hits: dict[str, list[bool]]) -> dict:
    rows = {c: bootstrap_mean(h).as_dict() for c, h in hits.items()}
    for c in hits:
        if c != "none":
            rows[f"{c} - none"] = bootstrap_difference(hits[c], hits["none"]).as_dict()
    return rows


def absent_part(model, count: int, batch: int) -> dict:
    chosen = scenes("broken", count)
    prompts = [question(PARTNER[next(o.name for o in s.objects if o.name in PARTNER)]) for s in chosen]
    images = [render(s) for s in chosen]
    said = {c: answers(model, c, prompts, images, 2, batch) for c in CONDITIONS}
    return {"n": count, "yes_rate_to_absent_partner": compare({c: [yes(a) for a in said[c]] for c in said}),
            "answers_sample": {c: said[c][:5] for c in said}}


def heldout_part(model, count: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    chosen = scenes("heldout", count)
    asked = [sample_question(s, rng) for s in chosen]
    images = [render(s) for s in chosen]
    said = {c: answers(model, c, [q for q, _ in asked], images, 2, batch) for c in CONDITIONS}
    hits = {c: [yes(a) == (truth == YES) for a, (_, truth) in zip(said[c], asked)] for c in said}
    return {"n": count, "present_share": float(np.mean([t == YES for _, t in asked])), "accuracy": compare(hits)}


def chair_part(model, count: int, batch: int, folder: Path, max_new_tokens: int) -> dict:
    paths = write_world_sets(folder / "world_sets", "broken", count)
    vocabulary = ChairVocabulary.from_file(paths["vocabulary"])
    chosen = scenes("broken", count)
    images = [render(s) for s in chosen]
    truths = [s.names for s in chosen]
    result = {"n": count, "max_new_tokens": max_new_tokens}
    for c in CONDITIONS:
        captions = answers(model, c, [CAPTION_PROMPT] * count, images, max_new_tokens, batch)
        metrics = chair_metrics(vocabulary, captions, truths)
        result[c] = {"chair_s": metrics.chair_s, "chair_i": metrics.chair_i, "recall": metrics.recall,
                     "intervals": {k: v.as_dict() for k, v in metrics.intervals().items()},
                     "captions_sample": captions[:4]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/vision_paint_results"))
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--pope", type=int, default=100)
    parser.add_argument("--captions", type=int, default=50)
    parser.add_argument("--caption-tokens", type=int, default=40)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--parts", default="tokens,absent,heldout,chair")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.2, help="the scaled part: alpha, beta times this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_model("synth-llava")
    runs = {
        "tokens": lambda: token_part(model, args.tokens),
        "absent": lambda: absent_part(model, args.pope, args.batch),
        "heldout": lambda: heldout_part(model, args.pope, args.batch),
        "chair": lambda: chair_part(model, args.captions, args.batch, args.out, args.caption_tokens),
        "mass": lambda: mass_part(model, args.pope),
        "scaled": lambda: scaled_part(model, args.pope, args.batch, args.scale, args.out),
    }
    for part in args.parts.split(","):
        start, cpu = time.time(), time.process_time()
        result = runs[part]()
        result["wall_s"], result["cpu_s"] = time.time() - start, time.process_time() - cpu
        name = f"scaled_{args.scale:g}" if part == "scaled" else part
        (args.out / f"paint_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(part, json.dumps(result)[:600], flush=True)


if __name__ == "__main__":
    main()
