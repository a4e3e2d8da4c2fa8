"""ACT's arithmetic through probe's functions: a hand-made matrix, then a tiny random model."""

from __future__ import annotations

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from probe.attention.reference import apply_key_scale, select_sinks
from probe.attention.spec import SinkRule
from probe.edits import act_calibration, apply_edits
from tests.helpers import build_tiny, random_batch


def _causal_rows(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random causal attention matrix ``[n, n]`` with a strong column 0 and column 2."""
    logits = torch.randn(n, n, generator=generator)
    logits[:, 0] += 3.0
    logits[:, 2] += 2.0
    mask = torch.ones(n, n).tril().bool()
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def act_scores(pattern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ACT's ``s_j = sum_i A[i, j] / (N - j)`` written out, and ``visible(j) = N - j``."""
    n = pattern.shape[-1]
    visible = torch.arange(n, 0, -1).float()
    return pattern.sum(-2) / visible, visible


def test_hand_made_matrix():
    torch.manual_seed(0)
    probs = _causal_rows(7, torch.Generator().manual_seed(3))[None, None]  # [1, 1, 7, 7]
    score, visible = act_scores(probs[0, 0])
    rule = SinkRule(tau=0.1, min_visible=2)  # last key (seen once) cannot be a sink
    sinks = select_sinks(score[None, None], visible[None], rule)[0, 0]
    raw = (score > 0.1) & (visible >= 2)
    assert raw[0] and raw[2], "the test matrix must have sinks at 0 and 2"
    assert not sinks[0], "the first sink is kept"
    assert torch.equal(sinks, raw & (torch.arange(7) != 0))
    beta = 0.4
    out = apply_key_scale(probs, sinks[None, None], torch.tensor([beta]))[0, 0]
    torch.testing.assert_close(out.sum(-1), torch.ones(7))
    p = probs[0, 0]
    torch.testing.assert_close(out[:, sinks], beta * p[:, sinks])
    freed = (1 - beta) * p[:, sinks].sum(-1, keepdim=True)
    rest = p[:, ~sinks]
    expected_rest = rest + freed * rest / rest.sum(-1, keepdim=True)
    torch.testing.assert_close(out[:, ~sinks], expected_rest)
    assert out[0, 0] == pytest.approx(1.0)
    assert torch.all(out[:, 0] >= p[:, 0]), "the first token receives redistributed mass, never loses any"


def test_rule_and_edit_reject_out_of_range():
    with pytest.raises(ValueError, match="tau"):
        SinkRule(tau=1.5)
    with pytest.raises(ValueError, match="tau"):
        act_calibration(tau=0.0)
    with pytest.raises(ValueError, match="beta"):
        act_calibration(beta=1.2)


LAYER, HEADS, TAU, BETA = 1, (0, 4), 0.1, 0.4


def _hand_act_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention with ACT written out by hand on the chosen layer and heads."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = query @ key.transpose(-1, -2) * scaling
    n = scores.shape[-1]
    if attention_mask is None:  # HF may leave the causal mask to the kernel
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        attention_mask = torch.zeros(scores.shape[0], 1, n, n).masked_fill(~causal, torch.finfo(scores.dtype).min)
    if attention_mask.dtype == torch.bool:
        attention_mask = torch.zeros(attention_mask.shape).masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    scores = scores + attention_mask[..., : key.shape[-2]]
    probs = torch.softmax(scores.float(), dim=-1)
    if module.layer_idx == LAYER:
        probs = _hand_act(probs, attention_mask)
    out = (probs.to(value.dtype) @ value).transpose(1, 2).contiguous()
    return out, probs


def _hand_act(probs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    probs = probs.clone()
    valid_q = attention_mask[:, 0, :, :].diagonal(dim1=-2, dim2=-1) == 0  # [batch, q]: real queries
    for b in range(probs.shape[0]):
        real = torch.nonzero(valid_q[b]).flatten()
        for h in HEADS:
            a = probs[b, h][real][:, real]  # [n, n] over real tokens
            n = a.shape[0]
            score = a.sum(0) / torch.arange(n, 0, -1)
            sinks = torch.nonzero(score > TAU).flatten()[1:]  # ACT: drop the first sink
            if sinks.numel() == 0:
                continue
            mask = torch.zeros(n, dtype=torch.bool)
            mask[sinks] = True
            p_sink = a[:, mask].sum(-1, keepdim=True)
            new = torch.where(mask, BETA * a, a * (1 - BETA * p_sink) / (1 - p_sink))
            rows = real[:, None], real[None, :]
            probs[b, h][rows] = new
    return probs


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@torch.no_grad()  # probe's sink detection uses out= ops that refuse autograd (reported)
def test_tiny_model_edit_equals_hand_written_eager(arch):
    model = build_tiny(arch)
    ids, mask = random_batch(batch=3, length=19, pad=(0, 4, 9))
    with apply_edits(model, [act_calibration(TAU, BETA, layers=[LAYER], heads=HEADS)]):
        edited = model(input_ids=ids, attention_mask=mask).logits
    plain = model(input_ids=ids, attention_mask=mask).logits
    AttentionInterface.register("hand_act", _hand_act_attention)
    AttentionMaskInterface.register("hand_act", ALL_MASK_ATTENTION_FUNCTIONS["eager"])  # padded float masks
    model.set_attn_implementation("hand_act")
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    model.set_attn_implementation("eager")
    real = mask.bool()
    assert (edited - plain)[real].abs().max() > 1e-4, "the edit must change something on this input"
    torch.testing.assert_close(edited[real], out.logits[real], atol=2e-5, rtol=1e-4)
    rows = out.attentions[LAYER][:, list(HEADS)].sum(-1)  # [batch, head, q]
    torch.testing.assert_close(rows[real[:, None, :].expand_as(rows)], torch.ones_like(rows[real[:, None, :].expand_as(rows)]))
