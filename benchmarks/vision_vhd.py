"""VHD and VHR on synth-llava: the paper's checks, measured (prints JSON lines and a summary).

1. Ranking stability: mean VHD (caption prompt) over two disjoint sets of held-out scenes;
   Spearman rho over every head and the overlap of the top 20.
2. Heavy tail: the share of all VHD in the top 10% of heads, max / median, excess kurtosis.
3. T-VHD (Eq. 5, k = 3) of the first answer token to "Is there a {partner}?" on broken scenes
   (the partner is absent): hallucinated "Yes" against correct "No".
4. VHR and vhr-random against the model as it is: yes-rate to the absent partner on broken
   scenes, and accuracy on held-out questions (POPE random form, scenes 1000+), paired
   bootstrap intervals.

    python benchmarks/vision_vhd.py [--stability 50] [--broken 200] [--heldout 100] [--alpha 2] [--out FILE.json]
    (a count of 0 skips that part)

VHR's yes/no answers are the first generated token: VHR's from the lockstep pass under
reinforcement (its image stream is VHR's prefill, tests/vision/test_vhr.py), the control's from a
forward inside its edits, so no decode steps are run.

Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kurtosis, spearmanr

from circuits.evaluation.bootstrap import bootstrap_difference, bootstrap_mean
from circuits.vision.language import CAPTION_PROMPT, question, sample_question
from circuits.vision.lockstep import lockstep_heads
from circuits.vision.render import render
from circuits.vision.vhd import prompt_set_vhd, total_vhd
from circuits.vision.vhr import VHRConfig, item_key, random_selection, selection_edits
from circuits.vision.world import PARTNER, scenes
from probe import load_model
from probe.capture.hf import run_forward
from probe.edits import apply_edits
from probe.models.vlm_inputs import vision_inputs


def stability(model, count: int) -> dict:
    images = [render(s) for s in scenes("heldout", 2 * count)]
    first = prompt_set_vhd(model, [CAPTION_PROMPT] * count, images[:count]).mean
    second = prompt_set_vhd(model, [CAPTION_PROMPT] * count, images[count:]).mean
    top = lambda v: set(v.flatten().topk(20).indices.tolist())  # noqa: E731
    both = (first + second) / 2
    flat = both.flatten().sort(descending=True).values
    return {"n_per_set": count, "spearman_rho": float(spearmanr(first.flatten(), second.flatten())[0]),
            "top20_overlap": len(top(first) & top(second)),
            "top10pct_share": float(flat[: len(flat) // 10].sum() / flat.sum()),
            "max_over_median": float(flat[0] / flat.median()), "excess_kurtosis": float(kurtosis(flat.numpy())),
            "top_heads": [(i // both.shape[1], i % both.shape[1], round(float(both.flatten()[i]), 3))
                          for i in both.flatten().topk(10).indices.tolist()],
            "layer_mean": [round(x, 3) for x in both.mean(1).tolist()]}


def partner_items(count: int) -> tuple[list[str], list]:
    prompts, images = [], []
    for scene in scenes("broken", count):
        member = next(name for name in sorted(scene.names) if name in PARTNER)
        prompts.append(question(PARTNER[member]))
        images.append(render(scene))
    return prompts, images


def is_yes(text: str) -> bool:
    return text.strip().lower().startswith("yes")


def first_tokens(model, logits: torch.Tensor) -> list[str]:
    return [model.tokenizer.decode([t]) for t in logits.argmax(-1).tolist()]


def plain_first_tokens(model, prompts, images, edits=()) -> list[str]:
    """The first answer token of one forward over the image rows, inside ``edits``."""
    batch = vision_inputs(model, prompts, images)
    extra = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "attention_mask")}
    with apply_edits(model, list(edits)):
        return first_tokens(model, run_forward(model.hf, batch.input_ids, batch.attention_mask, extra))


def answer_conditions(model, prompts, images, config: VHRConfig, batch: int = 8) -> tuple[dict, list[float]]:
    """First answer tokens under none, vhr and vhr-random, and the plain T-VHD, 8 items a pass.

    VHR's first token is the lockstep pass's image stream under reinforcement (equal to VHR's
    prefill: tests/vision/test_vhr.py); the control's comes from a forward inside its edits.
    """
    answers: dict[str, list[str]] = {"none": [], "vhr": [], "vhr-random": []}
    tvhd: list[float] = []
    for start in range(0, len(prompts), batch):
        p, i = prompts[start:start + batch], images[start:start + batch]
        with torch.no_grad():
            plain = lockstep_heads(model, p, i)
            vhr = lockstep_heads(model, p, i, config.reinforcement(model.geometry.n_layers))
            control = random_selection(vhr.selected, [item_key(a, b) for a, b in zip(p, i)], config.random_seed)
            answers["vhr-random"] += plain_first_tokens(model, p, i, selection_edits(control, config.alpha))
        answers["none"] += first_tokens(model, plain.image_logits)
        answers["vhr"] += first_tokens(model, vhr.image_logits)
        tvhd += total_vhd(plain.vhd, 3).tolist()
    return answers, tvhd


def tvhd_summary(tvhd: np.ndarray, yes: np.ndarray, top_k: int = 3) -> dict:
    halluc, correct = tvhd[yes], tvhd[~yes]
    rng = np.random.default_rng(0)
    diffs = [rng.choice(halluc, halluc.size).mean() - rng.choice(correct, correct.size).mean() for _ in range(2000)]
    ranks = tvhd.argsort().argsort() + 1  # AUROC of "a correct answer has the higher T-VHD"
    auroc = (ranks[~yes].sum() - correct.size * (correct.size + 1) / 2) / (correct.size * halluc.size)
    return {"n": int(tvhd.size), "top_k": top_k, "hallucinated": int(yes.sum()),
            "tvhd_hallucinated": float(halluc.mean()), "tvhd_correct": float(correct.mean()),
            "difference": float(halluc.mean() - correct.mean()),
            "difference_ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
            "auroc_correct_higher": float(auroc)}


def compare(hits: dict[str, list[bool]]) -> dict:
    out = {name: str(bootstrap_mean(h)) for name, h in hits.items()}
    out |= {f"{name} - none": str(bootstrap_difference(hits[name], hits["none"])) for name in ("vhr", "vhr-random")}
    out["vhr - vhr-random"] = str(bootstrap_difference(hits["vhr"], hits["vhr-random"]))
    return out


def broken_scenes(model, count: int, config: VHRConfig) -> dict:
    prompts, images = partner_items(count)
    answers, tvhd = answer_conditions(model, prompts, images, config)
    yes = {name: [is_yes(a) for a in texts] for name, texts in answers.items()}
    return {"tvhd": tvhd_summary(np.array(tvhd), np.array(yes["none"])),
            "partner_yes_rate": compare(yes)}


def heldout_scenes(model, count: int, config: VHRConfig) -> dict:
    rng = np.random.default_rng(0)
    held = [(sample_question(s, rng), render(s)) for s in scenes("heldout", count, start=1000)]
    answers, _ = answer_conditions(model, [q for (q, _), _ in held], [img for _, img in held], config)
    truth = [label == "Yes" for (_, label), _ in held]
    return {"n": count, "accuracy": compare({name: [is_yes(a) == t for a, t in zip(texts, truth)]
                                             for name, texts in answers.items()})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stability", type=int, default=50, help="scenes per set (two disjoint sets)")
    parser.add_argument("--broken", type=int, default=200, help="broken scenes (T-VHD, partner yes-rate)")
    parser.add_argument("--heldout", type=int, default=100, help="held-out scenes (accuracy)")
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = load_model("synth-llava")
    report = {}
    config = VHRConfig(alpha=args.alpha)
    for name, count, run in (("stability", args.stability, lambda: stability(model, args.stability)),
                             ("broken", args.broken, lambda: broken_scenes(model, args.broken, config)),
                             ("heldout", args.heldout, lambda: heldout_scenes(model, args.heldout, config))):
        if not count:
            continue
        start = time.process_time()
        report[name] = run() | {"cpu_seconds": round(time.process_time() - start, 1)}
        print(json.dumps({name: report[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
