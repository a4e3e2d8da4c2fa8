"""RhythmCreditGRPOTrainer: the shaped advantages reach TRL's GRPO loss exactly as defined.

Everything runs offline on the tiny Llama (GPT-2 tokenizer from ../shared): the overridden loss
path on fixed inputs, compared with a direct computation, and one real ``train()`` step."""

from __future__ import annotations

import ast
import copy

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from circuits.rhythm.credit import (  # noqa: E402
    CreditConfig,
    policy_gradient_loss,
    rhythm_credit,
    shape_advantages,
    stack_weights,
)
from circuits.rhythm.grpo import RhythmCreditGRPOTrainer, TRLInternalsError, check_trl_internals  # noqa: E402
from probe.models import LoadedModel  # noqa: E402
from tests.helpers import REPO, tiny_loaded_varied  # noqa: E402

COMPLETION = 16  # > band_lo = 10, so the completions get credit


def reward_length(completions, **kwargs):
    """A local reward: the completion's length in characters (varied, so advantages are not all 0)."""
    return [float(len(c)) for c in completions]


def make_trainer(tmp_path, loaded: LoadedModel, **overrides) -> RhythmCreditGRPOTrainer:
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=COMPLETION, max_steps=1, report_to="none", use_cpu=True, bf16=False,
                      fp16=False, use_vllm=False, save_strategy="no", learning_rate=1e-3, temperature=1.0,
                      gradient_accumulation_steps=1, logging_steps=1, **overrides)
    dataset = Dataset.from_dict({"prompt": ["The cat sat on the mat and", "Seven dogs ran past",
                                            "One tall tree", "Two red boxes"]})
    return RhythmCreditGRPOTrainer(model=loaded.hf, reward_funcs=reward_length, args=args, train_dataset=dataset,
                                   processing_class=loaded.tokenizer)


def completion_logprobs(model, prompt_ids, completion_ids, completion_mask):
    """log p(completion token) under ``model``: rows P-1 .. P+C-2 predict the completion."""
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([torch.ones_like(prompt_ids), completion_mask], dim=1)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt_ids.shape[1] - 1 : -1]
    return logits.float().log_softmax(-1).gather(-1, completion_ids[..., None])[..., 0]


@pytest.fixture(scope="module")
def base() -> LoadedModel:
    """The tiny Llama with varied embeddings, built once (the embedding resize is slow); tests train copies."""
    return tiny_loaded_varied(lm_head_scale=0.3)


def fresh(base: LoadedModel) -> LoadedModel:
    return LoadedModel(name=base.name, hf=copy.deepcopy(base.hf), tokenizer=base.tokenizer)


def test_trl_internals_are_present():
    check_trl_internals()


def test_missing_trl_internals_fail_clearly():
    class OldTrainer(GRPOTrainer):
        def _compute_loss(self, model, inputs):
            return inputs["advantages"].unsqueeze(1)

    with pytest.raises(TRLInternalsError, match="trl==1.16.0"):
        check_trl_internals(OldTrainer)


def test_only_the_grpo_module_imports_trl():
    """``import circuits.rhythm`` (and every other rhythm module) stays free of trl, an optional extra."""
    importers = []
    for path in sorted((REPO / "circuits" / "rhythm").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "trl" for name in names):
                importers.append(path.name)
    assert sorted(set(importers)) == ["grpo.py"]


@pytest.mark.parametrize("loss_type, normalise", [("grpo", "sequence"), ("dapo", "token")])
def test_loss_uses_the_shaped_advantages(tmp_path, base, loss_type, normalise):
    """``_compute_loss`` on fixed inputs equals the clipped surrogate -min(r A~, clip(r) A~) averaged as TRL's
    loss type does (grpo: per response, then over responses; dapo: over all tokens), and so do its gradients."""
    loaded = fresh(base)
    trainer = make_trainer(tmp_path, loaded, loss_type=loss_type)
    assert trainer.credit == CreditConfig() and trainer.rhythm is None           # coupled, paper settings
    model = trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1               # set by Trainer.train(); the loss divides by it
    generator = torch.Generator().manual_seed(7)
    prompt_ids = torch.randint(300, 3000, (4, 5), generator=generator)
    completion_ids = torch.randint(300, 3000, (4, COMPLETION), generator=generator)
    completion_mask = torch.ones(4, COMPLETION, dtype=torch.long)
    completion_mask[1, 13:] = 0                                    # a shorter completion, right-padded
    completion_mask[3, 12:] = 0
    weights = stack_weights(rhythm_credit(loaded, prompt_ids.tolist(),
                                          [ids[m.bool()].tolist() for ids, m in zip(completion_ids, completion_mask)]),
                            COMPLETION)
    assert (weights > 1).any()
    advantages = torch.tensor([1.2, -0.4, 0.7, -1.5])
    with torch.no_grad():
        logprobs = completion_logprobs(model, prompt_ids, completion_ids, completion_mask)
    old = logprobs + 0.3 * torch.randn(logprobs.shape, generator=generator)   # off-policy: ratios clip
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
              "completion_mask": completion_mask, "old_per_token_logps": old,
              "num_items_in_batch": completion_mask.sum()}
    params = [model.lm_head.weight, model.model.layers[1].self_attn.q_proj.weight]

    def trl_loss(per_token_advantages):
        loss = trainer._compute_loss(model, {**inputs, "advantages": per_token_advantages})
        return loss, torch.autograd.grad(loss, params)

    def direct_loss(per_token_advantages):
        logps = completion_logprobs(model, prompt_ids, completion_ids, completion_mask)
        loss = policy_gradient_loss(logps, per_token_advantages, completion_mask, old_logprobs=old,
                                    epsilon_low=trainer.epsilon_low, epsilon_high=trainer.epsilon_high,
                                    normalise=normalise)
        return loss, torch.autograd.grad(loss, params)

    shaped = shape_advantages(advantages, weights, completion_mask)
    got, got_grads = trl_loss(shaped)
    expected, expected_grads = direct_loss(shaped)
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e)
    plain, plain_grads = trl_loss(advantages)                      # TRL's own [batch] path, unweighted
    unshaped, _ = direct_loss(shape_advantages(advantages, torch.ones_like(weights), completion_mask))
    torch.testing.assert_close(plain, unshaped)
    assert not torch.isclose(got, plain)
    assert not torch.allclose(got_grads[0], plain_grads[0])


def test_one_train_step_shapes_the_advantages(tmp_path, base, monkeypatch):
    """A real ``train()`` step: the advantages TRL's loss reads are A x gamma of the policy at generation."""
    trainer = make_trainer(tmp_path, fresh(base))
    seen: dict = {}
    parent = GRPOTrainer._generate_and_score_completions

    def generated(self, inputs):                                   # TRL's own result, before shaping
        output = parent(self, inputs)
        seen["advantages"] = output["advantages"].clone()
        seen["weights"] = trainer.credit_weights(output)           # the policy before the optimizer step
        seen["mask"] = output["completion_mask"].clone()
        seen["completion_ids"] = output["completion_ids"].clone()
        return output

    def loss_of(model, inputs):
        seen["inputs"] = inputs
        seen["loss"] = original_loss(model, inputs)
        return seen["loss"]

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", generated)
    original_loss = trainer._compute_loss
    monkeypatch.setattr(trainer, "_compute_loss", loss_of)
    trainer.train()

    expected = seen["advantages"][:, None] * seen["weights"].float() * seen["mask"]
    assert (seen["weights"][seen["mask"].bool()] > 1).any()
    inputs = seen["inputs"]                                        # shuffled by TRL: match rows by completion
    order = [next(i for i in range(len(expected)) if torch.equal(seen["completion_ids"][i], row))
             for row in inputs["completion_ids"]]
    torch.testing.assert_close(inputs["advantages"], expected[order])
    # On-policy (ratio 1), TRL's default loss type "dapo": the loss is -sum_{b,t} gamma_t A_b / (number of tokens).
    assert trainer.loss_type == "dapo"
    mask = inputs["completion_mask"].float()
    direct = policy_gradient_loss(torch.zeros_like(mask), inputs["advantages"], mask, normalise="token")
    torch.testing.assert_close(seen["loss"].detach(), direct)
    # The per-token advantages differ along each response (the loss's *value* barely moves here: on-policy,
    # each row's sum of gamma is the same for equal-length responses, and the group's advantages sum to 0;
    # the gradient moves, as the fixed-input test checks).
    assert not torch.equal(inputs["advantages"], seen["advantages"][order][:, None].expand_as(mask))
