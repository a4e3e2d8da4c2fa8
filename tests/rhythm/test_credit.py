"""Rhythm credit weights (the paper's three strategies), shaped advantages and the policy-gradient loss.

Hand-made WAAD / FAI vectors check answers worked out in advance; the model path is checked
against the analysis it reuses, on the tiny Llama."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.rhythm.analysis import analyse_batch
from circuits.rhythm.credit import (
    CREDIT_STRATEGIES,
    CreditConfig,
    bare_trace,
    coupled_sets,
    credit_weights,
    paper_credit_rhythm,
    policy_gradient_loss,
    rhythm_credit,
    shape_advantages,
    stack_weights,
    top_q,
    waad_jumps,
    window_max,
)
from circuits.rhythm.metrics import RhythmConfig, paper_rl_layers
from tests.helpers import tiny_loaded_varied

NAN = math.nan

# Worked example (10 tokens). Delta = |WAAD_t - WAAD_{t+1}| = [1, 4, 5, 0, 2, 1, 0, 1, 0.5, NaN];
# median WAAD (tau_waad) = (1 + 2) / 2 = 1.5; median of the 9 finite Delta (tau_delta) = 1.
WAAD = torch.tensor([1.0, 2, 6, 1, 1, 3, 2, 2, 1, 0.5])
FAI = torch.tensor([0.1, 0.2, 0.1, 0.9, 0.3, 0.05, 0.6, NAN, NAN, NAN])  # NaN: the last H_lo tokens


def mask_of(n: int, *where: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    out[list(where)] = True
    return out


# --- TopQ, Delta and the window --------------------------------------------------------------


def test_top_q_selects_ceil_q_n_of_the_finite_values():
    values = torch.tensor([0.3, NAN, 0.9, 0.1, 0.7, NAN, 0.5])   # 5 finite
    assert top_q(values, 0.4).tolist() == mask_of(7, 2, 4).tolist()   # ceil(2.0) = 2
    assert top_q(values, 0.5).tolist() == mask_of(7, 2, 4, 6).tolist()  # ceil(2.5) = 3
    assert top_q(values, 1.0).tolist() == torch.isfinite(values).tolist()  # every finite value, never NaN
    assert top_q(torch.full((4,), NAN), 0.4).sum() == 0


def test_top_q_count_is_not_spoiled_by_rounding():
    # 0.3 x 10 is 3.0000000000000004 in floating point; TopQ selects 3, not 4.
    assert int(top_q(torch.arange(10.0), 0.3).sum()) == 3
    assert top_q(torch.arange(10.0), 0.3).tolist() == mask_of(10, 7, 8, 9).tolist()


def test_top_q_ties_go_to_the_earlier_token():
    values = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    assert top_q(values, 0.4).tolist() == mask_of(5, 1, 2).tolist()   # ceil(2.0) = 2 of the three 2.0s
    assert top_q(torch.zeros(5), 0.4).tolist() == mask_of(5, 0, 1).tolist()


def test_delta_is_nan_at_the_last_token():
    delta = waad_jumps(WAAD)
    torch.testing.assert_close(delta[:-1], torch.tensor([1.0, 4, 5, 0, 2, 1, 0, 1, 0.5], dtype=torch.float64))
    assert math.isnan(delta[-1])
    assert math.isnan(waad_jumps(torch.tensor([3.0]))[0])


def test_window_max_is_cut_at_the_start():
    delta = torch.tensor([1.0, 4, 5, 0, 2, NAN], dtype=torch.float64)
    assert window_max(delta, 2).tolist() == [-math.inf, 1, 4, 5, 5, 2]
    assert window_max(delta, 1).tolist() == [-math.inf, 1, 4, 5, 0, 2]


# --- the three strategies on the worked example -----------------------------------------------


def test_local_chunk_amplifies_the_top_q_jumps():
    # ceil(0.4 x 9) = 4 of the finite Delta: 5 (t2), 4 (t1), 2 (t4), then the tie at 1 (t0, t5, t7) goes to t0;
    # the last token (Delta NaN) is never selected.
    gamma = credit_weights(WAAD, FAI, CreditConfig(strategy="local_chunk"))
    assert gamma.tolist() == [1.5, 1.5, 1.5, 1.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_global_anchor_amplifies_the_top_q_fai_never_nan():
    # 7 finite FAI: ceil(0.4 x 7) = 3: 0.9 (t3), 0.6 (t6), 0.3 (t4); the NaN tail is never selected.
    gamma = credit_weights(WAAD, FAI, CreditConfig(strategy="global_anchor"))
    assert gamma.tolist() == [1.0, 1.0, 1.0, 1.5, 1.5, 1.0, 1.5, 1.0, 1.0, 1.0]
    with_q1 = credit_weights(WAAD, FAI, CreditConfig(strategy="global_anchor", q=1.0))
    assert with_q1.tolist() == [1.5] * 7 + [1.0] * 3


def test_coupled_sets_of_the_worked_example():
    # Anchors {3, 4, 6}. t3: WAAD 1 <= 1.5 and max Delta over t0..t2 = 5 >= 1: dominated, introduced by the
    # highest WAAD of t0..t2, t2 (6). t4: WAAD 1, max Delta over t1..t3 = 5: dominated, introduced by t2 again.
    # t6: WAAD 2 > 1.5: not dominated.
    sets = coupled_sets(WAAD, FAI, CreditConfig())
    assert (sets.tau_waad, sets.tau_delta) == (1.5, 1.0)
    assert sets.anchors.tolist() == mask_of(10, 3, 4, 6).tolist()
    assert sets.dominated.tolist() == mask_of(10, 3, 4).tolist()
    assert sets.introductory.tolist() == mask_of(10, 2).tolist()


def test_coupled_weights_are_1_125_and_15_where_the_rule_says():
    gamma = credit_weights(WAAD, FAI, CreditConfig())
    assert gamma.tolist() == [1.0, 1.0, 1.25, 1.25, 1.25, 1.0, 1.5, 1.0, 1.0, 1.0]
    assert credit_weights(WAAD, FAI, CreditConfig(alpha=0.0)).tolist() == [1, 1, 1, 1.5, 1.5, 1, 1.5, 1, 1, 1]
    assert credit_weights(WAAD, FAI, CreditConfig(alpha=1.0)).tolist() == [1, 1, 1.5, 1, 1, 1, 1.5, 1, 1, 1]


def test_coupled_window_k_and_thresholds():
    # k = 1: t3's window is t2 alone (Delta 5): dominated, introduced by t2; t4's is t3 (Delta 0 < 1): not.
    sets = coupled_sets(WAAD, FAI, CreditConfig(k=1))
    assert sets.dominated.tolist() == mask_of(10, 3).tolist()
    assert sets.introductory.tolist() == mask_of(10, 2).tolist()
    # The quantiles set the thresholds: with tau_waad = min WAAD (0.5) no anchor is low enough.
    assert coupled_sets(WAAD, FAI, CreditConfig(waad_quantile=0.0)).dominated.sum() == 0


def test_first_token_anchor_is_never_dominated_and_indicators_add_up():
    # t0 is the top anchor with an empty window; t2 (anchor, not dominated: WAAD 3 > median) also introduces t3.
    waad = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0, 0.0])
    fai = torch.tensor([0.9, 0.0, 0.5, 0.8, 0.1, NAN])
    sets = coupled_sets(waad, fai, CreditConfig(q=0.6))          # ceil(0.6 x 5) = 3 anchors: t0, t3, t2
    assert sets.anchors.tolist() == mask_of(6, 0, 2, 3).tolist()
    assert sets.dominated.tolist() == mask_of(6, 3).tolist()
    assert sets.introductory.tolist() == mask_of(6, 2).tolist()
    gamma = credit_weights(waad, fai, CreditConfig(q=0.6))
    assert gamma.tolist() == [1.5, 1.0, 1.75, 1.25, 1.0, 1.0]   # t2: 1 + 0.5 (anchor) + 0.25 (introductory)


def test_introductory_ties_go_to_the_token_nearest_the_anchor():
    waad = torch.tensor([5.0, 5.0, 0.0, 0.0, 0.0])
    fai = torch.tensor([0.0, 0.0, 1.0, 0.0, NAN])
    sets = coupled_sets(waad, fai, CreditConfig(q=0.25))         # one anchor: t2, window t0..t1, both WAAD 5
    assert sets.dominated.tolist() == mask_of(5, 2).tolist()
    assert sets.introductory.tolist() == mask_of(5, 1).tolist()


@pytest.mark.parametrize("strategy", sorted(CREDIT_STRATEGIES))
def test_gamma_amp_one_turns_shaping_off(strategy):
    gamma = credit_weights(WAAD, FAI, CreditConfig(strategy=strategy, gamma_amp=1.0))
    assert gamma.tolist() == [1.0] * 10


@pytest.mark.parametrize("strategy", sorted(CREDIT_STRATEGIES))
def test_one_token_response(strategy):
    gamma = credit_weights(torch.tensor([2.0]), torch.tensor([NAN]), CreditConfig(strategy=strategy))
    assert gamma.tolist() == [1.0]


@pytest.mark.parametrize("kwargs, word", [
    (dict(q=0.0), "q"), (dict(q=1.5), "q"), (dict(gamma_amp=0.9), "gamma_amp"), (dict(alpha=-0.1), "alpha"),
    (dict(alpha=1.5), "alpha"), (dict(k=0), "k"), (dict(k=2.0), "k"), (dict(strategy="random"), "strategy"),
    (dict(waad_quantile=2.0), "waad_quantile"),
])
def test_bad_config(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CreditConfig(**kwargs)


@pytest.mark.parametrize("waad, fai, word", [
    (WAAD, FAI[:-1], "one value of each"),
    (WAAD[None], FAI[None], "1-d"),
    (torch.zeros(0), torch.zeros(0), "empty"),
    (torch.tensor([1.0, NAN]), torch.tensor([1.0, 1.0]), "finite"),
    (torch.tensor([1.0, 1.0]), torch.tensor([math.inf, 1.0]), "finite"),
])
def test_bad_signals(waad, fai, word):
    with pytest.raises(ValueError, match=word):
        credit_weights(waad, fai)


# --- from a model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return tiny_loaded_varied(lm_head_scale=0.3)


PROMPTS = [[464, 3797, 3332], [7, 8, 9, 10, 11], [300, 301]]
RESPONSES = [list(range(1000, 1024)), list(range(2000, 2017)), list(range(3000, 3006))]


def test_rhythm_credit_is_credit_weights_of_the_analysis(model):
    rhythm = paper_credit_rhythm(model)
    assert rhythm.layers == paper_rl_layers(3) and (rhythm.band_lo, rhythm.band_hi) == (10, 100)
    weights = rhythm_credit(model, PROMPTS, RESPONSES)
    traces = [bare_trace(i, p, r) for i, (p, r) in enumerate(zip(PROMPTS[:2], RESPONSES[:2]))]
    for got, metrics in zip(weights, analyse_batch(model, traces, rhythm)):
        torch.testing.assert_close(got, credit_weights(metrics.waad, metrics.fai, CreditConfig()))
        assert (got > 1).any()
    assert weights[2].tolist() == [1.0] * 6          # 6 tokens <= band_lo: no FAI anywhere, no shaping


def test_rhythm_credit_batching_and_mode(model):
    model.hf.train()
    one_by_one = rhythm_credit(model, PROMPTS, RESPONSES, CreditConfig(strategy="local_chunk"), batch_size=1)
    assert model.hf.training and all(m.training for m in model.hf.modules())
    model.hf.eval()
    together = rhythm_credit(model, PROMPTS, RESPONSES, CreditConfig(strategy="local_chunk"))
    for a, b in zip(one_by_one, together):
        torch.testing.assert_close(a, b)


def test_rhythm_credit_bad_inputs(model):
    with pytest.raises(ValueError, match="one prompt per response"):
        rhythm_credit(model, PROMPTS[:2], RESPONSES)
    with pytest.raises(ValueError, match="prompt token"):
        rhythm_credit(model, [[]], [RESPONSES[0]])


def test_stack_weights_pads_with_one():
    out = stack_weights([torch.tensor([1.5, 1.25]), torch.tensor([], dtype=torch.float64)], 3)
    assert out.tolist() == [[1.5, 1.25, 1.0], [1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="width"):
        stack_weights([torch.ones(4)], 3)


# --- shaped advantages and the loss ----------------------------------------------------------


def test_shape_advantages_keeps_the_sign_and_masks():
    advantages = torch.tensor([2.0, -1.0])
    weights = torch.tensor([[1.5, 1.0, 1.25], [1.5, 1.25, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    shaped = shape_advantages(advantages, weights, mask)
    assert shaped.dtype == advantages.dtype
    assert shaped.tolist() == [[3.0, 2.0, 0.0], [-1.5, -1.25, -1.0]]
    per_token = advantages[:, None].expand(2, 3)
    assert shape_advantages(per_token, weights).tolist() == [[3.0, 2.0, 2.5], [-1.5, -1.25, -1.0]]


@pytest.mark.parametrize("advantages, weights, mask", [
    (torch.ones(3), torch.ones(2, 4), None),
    (torch.ones(2, 3), torch.ones(2, 4), None),
    (torch.ones(2), torch.ones(2, 4), torch.ones(2, 3)),
])
def test_shape_advantages_refuses_other_shapes(advantages, weights, mask):
    with pytest.raises(ValueError, match="shape"):
        shape_advantages(advantages, weights, mask)


def test_policy_gradient_loss_is_the_clipped_surrogate():
    torch.manual_seed(3)
    logprobs = (-torch.rand(2, 4)).requires_grad_()
    old = logprobs.detach() + torch.tensor([[0.0, 0.5, -0.5, 0.1], [0.3, -0.3, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    shaped = shape_advantages(torch.tensor([1.0, -2.0]), torch.tensor([[1.5, 1.0, 1.25, 1.0], [1.0, 1.5, 1.0, 1.25]]),
                              mask)
    loss = policy_gradient_loss(logprobs, shaped, mask, old_logprobs=old)
    ratio = torch.exp(logprobs - old)
    per_token = -torch.min(ratio * shaped, ratio.clamp(0.8, 1.2) * shaped)
    expected = ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    torch.testing.assert_close(loss, expected)
    token = policy_gradient_loss(logprobs, shaped, mask, old_logprobs=old, normalise="token")
    torch.testing.assert_close(token, (per_token * mask).sum() / mask.sum())


def test_on_policy_gradient_is_gamma_times_advantage():
    logprobs = torch.zeros(1, 3, requires_grad=True)
    mask = torch.ones(1, 3)
    shaped = shape_advantages(torch.tensor([-2.0]), torch.tensor([[1.0, 1.5, 1.25]]), mask)
    policy_gradient_loss(logprobs, shaped, mask).backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[2.0, 3.0, 2.5]]) / 3)   # -(gamma A) / n per token


def test_policy_gradient_loss_bad_inputs():
    with pytest.raises(ValueError, match="shape_advantages"):
        policy_gradient_loss(torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="normalise"):
        policy_gradient_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), normalise="batch")
