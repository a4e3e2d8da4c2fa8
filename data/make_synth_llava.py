"""Train synth-llava's vision tower and projector on the synthetic world (the language model, the
real SmolLM2-135M-Instruct, stays frozen).

Context:
    Each step draws a batch of training scenes (:mod:`circuits.vision.world`, split ``train``,
    scenes ``step * batch .. (step + 1) * batch - 1``, so a rerun with the same seed sees the
    same data), renders them, and asks for either the caption ("Describe this image.") or a
    yes/no question ("Is there a dog in the image?": half about a present object, half about an
    absent one). The loss is the language model's cross-entropy on the answer tokens only, plus
    (weight ``--aux-weight``) a dense auxiliary loss on the vision tower: a linear head on each
    patch token predicts the category of the object covering that patch (or background). The
    auxiliary head stands in for the CLIP pre-training a real LLaVA starts from: without it, a
    first run of 3,000 steps learnt colours, sizes and counts but not which glyph is which
    (held-out yes/no accuracy 0.52). The head is discarded after training. The vision tower
    (CLIP architecture, 4 layers) and the two-layer projector are the only shipped weights; they
    are written to ``OUT/vision.safetensors`` (float16) with ``OUT/training.json`` (the command,
    seed, settings, the loss curve and the held-out checks).

    The held-out check runs every ``--eval-every`` steps: yes/no accuracy on ``heldout`` scenes
    and the rate of "Yes" to questions about the absent partner of a planted pair on ``broken``
    scenes (the hallucination the planted pairs invite), both read from the logits of " Yes" and
    " No" at the answer position.

Usage (on a GPU; the repository's weights were made this way, see data/synth_llava/training.json):
    python data/make_synth_llava.py --steps 3000 --batch-size 128 --device cuda --out data/synth_llava
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from circuits.vision.language import CAPTION_PROMPT, NO, YES, caption, question, sample_question  # noqa: E402
from circuits.vision.render import render_array  # noqa: E402
from circuits.vision.world import CATEGORIES, PARTNER, Scene, WorldConfig, scene_at  # noqa: E402
from probe.models.synth_llava import IMAGE_TOKEN, IMAGE_TOKENS, PATCH_SIZE, assemble, chat_prompt, vision_state_of  # noqa: E402

IGNORE = -100


def pixels(arrays: list[np.ndarray]) -> torch.Tensor:
    """Rendered images as the processor normalises them (mean 0.5, std 0.5), ``[batch, 3, H, W]``."""
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return stacked / 127.5 - 1.0


def patch_labels(scene: Scene) -> torch.Tensor:
    """``[patches]`` category index + 1 of the object covering most of each patch (at least a
    fifth of it), 0 for background; patches in row-major order, as the vision tower orders them."""
    side = scene.config.image_size // PATCH_SIZE
    labels = torch.zeros(side * side, dtype=torch.long)
    best = torch.zeros(side * side)
    for obj in scene.objects:
        left, top, right, bottom = obj.box
        for row in range(top // PATCH_SIZE, min(side, (bottom - 1) // PATCH_SIZE + 1)):
            for col in range(left // PATCH_SIZE, min(side, (right - 1) // PATCH_SIZE + 1)):
                width = min(right, (col + 1) * PATCH_SIZE) - max(left, col * PATCH_SIZE)
                height = min(bottom, (row + 1) * PATCH_SIZE) - max(top, row * PATCH_SIZE)
                share = width * height / PATCH_SIZE**2
                index = row * side + col
                if share >= 0.2 and share > best[index]:
                    best[index], labels[index] = share, CATEGORIES.index(obj.name) + 1
    return labels


class DenseHead(torch.nn.Module):
    """The auxiliary per-patch classifier, fed by a hook on the vision tower's last hidden state."""

    def __init__(self, model, width: int):
        super().__init__()
        self.linear = torch.nn.Linear(width, len(CATEGORIES) + 1)
        self.features = None
        model.model.vision_tower.register_forward_hook(self.keep)

    def keep(self, module, inputs, output) -> None:
        self.features = output.last_hidden_state[:, 1:]

    def loss_and_accuracy(self, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        logits = self.linear(self.features.float())
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        objects = labels > 0
        hits = (logits.argmax(-1) == labels)[objects].float().mean().item() if objects.any() else float("nan")
        return loss, hits


class TrainingBatches(Dataset):
    """Batch ``step`` of the training stream: token ids, labels (answer tokens only) and pixels."""

    def __init__(self, tokenizer, batch_size: int, caption_share: float, seed: int, config: WorldConfig):
        self.tokenizer, self.batch_size, self.caption_share = tokenizer, batch_size, caption_share
        self.seed, self.config = seed, config
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 7, step])
        rows, arrays, patches = [], [], []
        for i in range(self.batch_size):
            scene = scene_at("train", step * self.batch_size + i, self.config)
            if rng.random() < self.caption_share:
                prompt, answer = CAPTION_PROMPT, caption(scene)
            else:
                prompt, answer = sample_question(scene, rng)
            rows.append(self.encode(prompt, answer))
            arrays.append(render_array(scene))
            patches.append(patch_labels(scene))
        return {**self.pad(rows), "pixel_values": pixels(arrays), "patch_labels": torch.stack(patches)}

    def encode(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        text = chat_prompt(prompt).replace(IMAGE_TOKEN, IMAGE_TOKEN * IMAGE_TOKENS)
        head = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        tail = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.end]
        return head + tail, [IGNORE] * len(head) + tail

    def pad(self, rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows])
        labels = torch.tensor([l + [IGNORE] * (width - len(l)) for _, l in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def yes_rate_and_accuracy(model, processor, cases: list[tuple], device, batch: int = 64) -> tuple[float, float]:
    """(share answered Yes, accuracy) over ``cases`` of (scene, question, label), from the logits of
    "Yes" against "No" at the answer's first token."""
    tok = processor.tokenizer
    yes_id, no_id = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (YES, NO))
    said_yes, correct = [], []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        texts = [chat_prompt(q).replace(IMAGE_TOKEN, IMAGE_TOKEN * IMAGE_TOKENS) for _, q, _ in chunk]
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                           pixel_values=pixels([render_array(s) for s, _, _ in chunk]).to(device),
                           logits_to_keep=1).logits[:, -1].float()
        yes = (logits[:, yes_id] > logits[:, no_id]).cpu().tolist()
        said_yes += yes
        correct += [y == (label == YES) for y, (_, _, label) in zip(yes, chunk)]
    return float(np.mean(said_yes)), float(np.mean(correct))


def heldout_cases(count: int, config: WorldConfig) -> list[tuple]:
    rng = np.random.default_rng([config.seed, 11])
    cases = []
    for i in range(count):
        scene = scene_at("heldout", i, config)
        q, label = sample_question(scene, rng)
        cases.append((scene, q, label))
    return cases


def broken_cases(count: int, config: WorldConfig) -> list[tuple]:
    """On ``broken`` scenes, the question about the absent partner (the answer is always No)."""
    cases = []
    for i in range(count):
        scene = scene_at("broken", i, config)
        kept = next(n for n in scene.names if n in PARTNER)
        cases.append((scene, question(PARTNER[kept]), NO))
    return cases


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", default="smollm2-135m", help="registered name or HF folder of the language model")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--caption-share", type=float, default=0.4)
    parser.add_argument("--aux-weight", type=float, default=1.0, help="weight of the dense patch-category loss")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-count", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "synth_llava")
    return parser.parse_args(argv)


def lm_folder(name: str) -> Path:
    from probe.models.loading import resolve_folder
    import probe.models.offline  # noqa: F401  (registers smollm2-135m)

    folder = resolve_folder(name)
    if folder is None:
        raise SystemExit(f"error: {name!r} is neither a registered model nor a folder")
    return folder


def evaluate(model, processor, device, count: int, config: WorldConfig) -> dict:
    model.eval()
    held_yes, held_acc = yes_rate_and_accuracy(model, processor, heldout_cases(count, config), device)
    broken_yes, _ = yes_rate_and_accuracy(model, processor, broken_cases(count, config), device)
    model.train()
    return {"heldout_accuracy": held_acc, "heldout_yes_rate": held_yes, "broken_partner_yes_rate": broken_yes}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    config = WorldConfig()
    model, processor = assemble(lm_folder(args.lm), None, seed=args.seed)
    model.to(device)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(("model.vision_tower.", "model.multi_modal_projector."))
        if not param.requires_grad and device.type == "cuda":
            param.data = param.data.to(torch.bfloat16)  # frozen: no float32 copy to cast every step
    head = DenseHead(model, model.config.vision_config.hidden_size).to(device)
    trained = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    data = DataLoader(TrainingBatches(processor.tokenizer, args.batch_size, args.caption_share, args.seed, config),
                      batch_size=None, sampler=range(args.steps), num_workers=args.workers, prefetch_factor=4 if args.workers else None)
    curve, checks, started = [], [], time.time()
    model.train()
    for step, batch in enumerate(data):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        labels = batch.pop("patch_labels")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            text_loss = model(**batch).loss
            aux_loss, aux_hits = head.loss_and_accuracy(labels)
            loss = text_loss + args.aux_weight * aux_loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimiser.step()
        if step % 25 == 0 or step == args.steps - 1:
            curve.append({"step": step, "text_loss": round(text_loss.item(), 5), "patch_loss": round(aux_loss.item(), 5),
                          "patch_accuracy": round(aux_hits, 4), "seconds": round(time.time() - started, 1)})
            print(f"step {step:5d}  text loss {text_loss.item():.4f}  patch loss {aux_loss.item():.4f} "
                  f"(object patches right {aux_hits:.3f})  {time.time() - started:7.1f} s", flush=True)
        out_of_time = args.max_minutes is not None and time.time() - started > 60 * args.max_minutes
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1 or out_of_time:
            checks.append({"step": step + 1, **evaluate(model, processor, device, args.eval_count, config)})
            print("check", json.dumps(checks[-1]), flush=True)
        if out_of_time:
            break
    stopped_early = step + 1 < args.steps
    write_outputs(args, model, curve, checks, time.time() - started, argv, stopped_early)
    return 0


def write_outputs(args, model, curve, checks, seconds: float, argv, stopped_early: bool) -> None:
    import transformers

    args.out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half() for k, v in vision_state_of(model).items()}
    save_file(weights, str(args.out / "vision.safetensors"), metadata={"format": "pt"})
    record = {
        "command": "python data/make_synth_llava.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "world": asdict(WorldConfig()), "stopped_early": stopped_early,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "train_seconds": round(seconds, 1), "trained_parameters": sum(v.numel() for v in weights.values()),
        "checks": checks, "curve": curve,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
