"""Edit sessions beyond one plain ``with`` block: out-of-order exits, ACT during ``generate()``,
edits limited to some prompts of a batch. Each test failed before the hardening fixes."""

from __future__ import annotations

import contextlib

import pytest
import torch

from probe import CaptureConfig, capture, load_model
from probe.attention.hf import AttentionSession, LayerPlan, active_session, active_sessions, attention_modules
from probe.attention.hf import use_headscope_attention
from probe.attention.spec import KeyScale, LayerEdit
from probe.capture.hf import recording
from probe.edits import BiasKeys, Positions, ScaleHeads, act_calibration, apply_edits

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return load_model(str(tiny_folder))  # a folder, so that the TransformerLens engine can load it too


def _logits(model, prompts=PROMPT):
    return capture(model, prompts, CaptureConfig(layers=(0,))).last_logits


def test_blocks_closed_out_of_order_leave_nothing_behind(tiny):
    base = _logits(tiny)
    with apply_edits(tiny, [BiasKeys(Positions([0]), -3.0, layers=[2])]):
        only_second_expected = _logits(tiny)
    first = apply_edits(tiny, [ScaleHeads(0.0, layers=[1])])
    second = apply_edits(tiny, [BiasKeys(Positions([0]), -3.0, layers=[2])])
    first.__enter__()
    second.__enter__()
    both = _logits(tiny)
    first.__exit__(None, None, None)  # first in, first out
    only_second = _logits(tiny)
    second.__exit__(None, None, None)
    after = _logits(tiny)
    assert not torch.allclose(both, base, atol=1e-3)
    torch.testing.assert_close(only_second, only_second_expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(after, base, atol=1e-6, rtol=0)
    assert active_sessions() == ()
    assert tiny.hf.config._attn_implementation == "sdpa"  # as loaded


def test_attention_switch_survives_out_of_order_exits(tiny):
    outer, inner = use_headscope_attention(tiny.hf), use_headscope_attention(tiny.hf)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    assert tiny.hf.config._attn_implementation == "headscope"  # inner still open
    inner.__exit__(None, None, None)
    assert tiny.hf.config._attn_implementation == "sdpa"  # as loaded


def _sink_edit(factor: float, selections: dict[int, torch.Tensor]):
    """A session whose layers scale fixed key sets (the prefill's sinks, padded to each call)."""

    def plan(selected):
        def resolve(mask, heads):
            keys = torch.zeros(selected.shape[0], heads, mask.kv_length, dtype=torch.bool)
            keys[..., : selected.shape[-1]] = selected
            return LayerEdit(key_scales=(KeyScale(factor=torch.full((heads,), factor), keys=keys),))

        return LayerPlan(edit=resolve)

    return {layer: plan(selected) for layer, selected in selections.items()}


def test_act_during_generate_reuses_the_prefill_sinks(tiny):
    """Cached generation under ACT equals a loop of full forwards whose sinks are fixed to the
    prompt's (found once, at the prefill)."""
    tau, beta, layers, steps = 0.05, 0.4, (1, 2), 4
    inputs = tiny.tokenizer([PROMPT, "Hi there"], return_tensors="pt", padding=True)
    edit = act_calibration(tau=tau, beta=beta, layers=list(layers))
    with apply_edits(tiny, [edit]):
        with recording(tiny.hf, CaptureConfig(received=False, entropy=False, distance=False, first_token=False),
                       layers, inputs["attention_mask"]) as recorder:
            tiny.hf(**inputs)
        generated = tiny.hf.generate(**inputs, max_new_tokens=steps, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True, pad_token_id=tiny.tokenizer.pad_token_id)
    sinks = {layer: recorder.prefill(layer)["sinks"][0] for layer in layers}
    assert any(bool(s.any()) for s in sinks.values()), "the test needs some sinks to be meaningful"

    session = AttentionSession(layer_of=attention_modules(tiny.hf), plans=_sink_edit(beta, sinks))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with use_headscope_attention(tiny.hf), active_session(session), torch.no_grad():
        for step in range(steps):
            positions = (mask.cumsum(1) - 1).clamp_min(0)
            logits = tiny.hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
            torch.testing.assert_close(generated.scores[step], logits, atol=1e-4, rtol=1e-4, msg=f"step {step}")
            ids = torch.cat([ids, generated.sequences[:, ids.shape[1]:ids.shape[1] + 1]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)


def test_lens_generation_under_act_matches_hf(tiny):
    """TransformerLens' cached decoding reuses the prefill's sinks too: its logits at each step
    equal those of HF's cached generation under the same edit."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    edit, steps = act_calibration(tau=0.05, beta=0.4, layers=[1, 2]), 4
    inputs = tiny.tokenizer([PROMPT], return_tensors="pt")
    with apply_edits(tiny, [edit]):
        hf = tiny.hf.generate(**inputs, max_new_tokens=steps, do_sample=False, output_scores=True,
                              return_dict_in_generate=True, pad_token_id=tiny.tokenizer.pad_token_id)
    lens = tiny.lens()
    cache = TransformerLensKeyValueCache.init_cache(lens.cfg, lens.cfg.device, 1)
    tokens = inputs["input_ids"]
    with apply_edits(lens, [edit]), torch.no_grad():
        for step in range(steps):
            logits = lens(tokens, past_kv_cache=cache)[:, -1]
            torch.testing.assert_close(logits.log_softmax(-1), hf.scores[step].log_softmax(-1), atol=1e-4, rtol=0,
                                       msg=f"step {step}")
            tokens = hf.sequences[:, inputs["input_ids"].shape[1] + step][:, None]


def test_prompts_limit_an_edit_to_rows_of_the_batch(tiny):
    """One forward of four copies runs four ablations, each equal to its own run."""
    heads = [(1, 0), (1, 3), (2, 5)]
    edits = [ScaleHeads(0.0, layers=[layer], heads=[head], prompts=[row + 1]) for row, (layer, head) in enumerate(heads)]
    with apply_edits(tiny, edits):
        batched = _logits(tiny, [PROMPT] * 4)
    torch.testing.assert_close(batched[0], _logits(tiny)[0], atol=1e-5, rtol=0)
    for row, (layer, head) in enumerate(heads):
        with apply_edits(tiny, [ScaleHeads(0.0, layers=[layer], heads=[head])]):
            alone = _logits(tiny)
        torch.testing.assert_close(batched[row + 1], alone[0], atol=1e-5, rtol=0, msg=f"L{layer}H{head}")


def test_prompts_edits_on_the_lens_engine_match_hf(tiny):
    edits = [ScaleHeads(0.0, layers=[1], heads=[2], prompts=[1]), BiasKeys(Positions([0]), -2.0, prompts=[0])]
    with apply_edits(tiny, edits):
        hf = capture(tiny, [PROMPT, PROMPT], CaptureConfig(layers=(0,))).last_logits
    with apply_edits(tiny.lens(), edits):
        lens = capture(tiny, [PROMPT, PROMPT], CaptureConfig(layers=(0,)), engine="lens").last_logits
    torch.testing.assert_close(lens.log_softmax(-1), hf.log_softmax(-1), atol=1e-4, rtol=0)
    assert not torch.allclose(hf[0], hf[1], atol=1e-3)


def test_a_prompt_past_the_batch_is_an_error(tiny):
    with apply_edits(tiny, [ScaleHeads(0.0, layers=[1], prompts=[3])]), pytest.raises(ValueError, match="prompt 3"):
        _logits(tiny, [PROMPT, PROMPT])
    assert active_sessions() == ()


def test_nothing_is_left_after_an_error_inside_nested_blocks(tiny):
    with contextlib.suppress(RuntimeError):
        with apply_edits(tiny, [ScaleHeads(2.0, layers=[0])]), apply_edits(tiny, [ScaleHeads(0.5, layers=[1])]):
            raise RuntimeError("boom")
    assert active_sessions() == () and tiny.hf.config._attn_implementation == "sdpa"


def test_key_scalings_limited_to_a_prompt_match_separate_runs(tiny):
    """``prompts=`` on ScaleKeys (explicit keys and ACT's sink rule): row 1 as the edit alone, row 0 plain."""
    from probe.edits import ScaleKeys

    pairs = [(ScaleKeys(Positions([0, 2]), 0.2, layers=[1, 2]), ScaleKeys(Positions([0, 2]), 0.2, layers=[1, 2], prompts=[1])),
             (act_calibration(tau=0.05, layers=[1, 2]), act_calibration(tau=0.05, layers=[1, 2], prompts=[1]))]
    for edit, limited in pairs:
        with apply_edits(tiny, [limited]):
            batched = _logits(tiny, [PROMPT, PROMPT])
        with apply_edits(tiny, [edit]):
            alone = _logits(tiny)
        torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[0], _logits(tiny)[0], atol=1e-5, rtol=0)
        assert not torch.allclose(alone[0], _logits(tiny)[0], atol=1e-4)
