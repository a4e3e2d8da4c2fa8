"""Capture options users set, beyond the defaults: layer subsets, long left padding, chunk sizes,
float64 models, huge tiles; each test here failed before the hardening fixes."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from probe import CaptureConfig, InputError, capture
from probe.attention import register_backend, reference_attention
from probe.capture.hf import recording, run_forward
from probe.cli import main
from tests.helpers import tiny_loaded

PROMPTS = ["When Mary and John went to the store, John gave a drink to", "Hi"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")


@pytest.mark.parametrize("layers", [(0, 1), (-1,), (2, 0, 2)])
def test_only_the_asked_layers_are_recorded(tiny, layers):
    record = capture(tiny, PROMPTS, CaptureConfig(layers=layers))
    expected = sorted({layer % 3 for layer in layers})
    assert record.layers == expected
    assert sorted(record.stats) == expected and all(record.stats[layer] for layer in expected)


def test_an_empty_layer_list_is_an_error(tiny):
    with pytest.raises(InputError, match="empty"):
        capture(tiny, PROMPTS, CaptureConfig(layers=()))


@pytest.mark.parametrize("layers", [(1.5,), ("1",), (True,), (0, 2.0)])
def test_non_integer_layers_are_an_error(tiny, layers):
    # The test suite type-checks CaptureConfig's fields (jaxtyping + beartype); users do not, so
    # the value is put in place behind the checker's back, as an untyped caller would.
    config = CaptureConfig()
    object.__setattr__(config, "layers", layers)
    with pytest.raises(InputError, match="integers"):
        capture(tiny, PROMPTS, config)


def test_cli_layer_subset(tiny_folder, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "Hello world", "--layers", "0,-1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split()[0] for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert rows == ["0", "2"], printed


def _long_model(dtype: torch.dtype) -> LlamaForCausalLM:
    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=61, hidden_size=42, intermediate_size=30, num_hidden_layers=2,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=10, max_position_embeddings=2048)
    return LlamaForCausalLM(cfg).to(dtype).eval()


def _stats(model, ids, mask, config):
    with recording(model, config, (0, 1), mask) as recorder:
        logits = run_forward(model, ids, mask)
    return {layer: recorder.prefill(layer)["stats"] for layer in (0, 1)}, logits


def _left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return ids, mask


@pytest.mark.parametrize("gap", [0, 1, 255, 256, 257, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_statistics_with_long_left_padding_equal_per_prompt_runs(gap, dtype):
    """Two prompts whose lengths differ by ``gap``: the short one's statistics in the padded batch
    equal those of its run alone (statistics mode, default chunk of 256 rows)."""
    model = _long_model(dtype)
    generator = torch.Generator().manual_seed(gap)
    short = torch.randint(1, 61, (3,), generator=generator)
    long = torch.randint(1, 61, (3 + gap,), generator=generator)
    config = CaptureConfig(block_size=None)
    ids, mask = _left_pad([short, long])
    batch_stats, batch_logits = _stats(model, ids, mask, config)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    for row, tokens in enumerate([short, long]):
        alone_stats, alone_logits = _stats(model, tokens[None], torch.ones(1, len(tokens), dtype=torch.long), config)
        start = ids.shape[1] - len(tokens)
        torch.testing.assert_close(batch_logits[row], alone_logits[0], **tol)
        for layer in (0, 1):
            for name, alone in alone_stats[layer].items():
                got = batch_stats[layer][name][row][..., start:]
                assert torch.isfinite(got).all(), (gap, name)
                torch.testing.assert_close(got, alone[0], **tol, msg=f"gap {gap} row {row} layer {layer} {name}")


def test_float64_model_with_padding_gives_finite_logits(tiny):
    model = _long_model(torch.float64)
    ids, mask = _left_pad([torch.arange(1, 5), torch.arange(1, 12)])
    for mode in ("stats", "pattern"):
        with recording(model, CaptureConfig(mode=mode), (0, 1), mask):
            logits = run_forward(model, ids, mask)
        assert torch.isfinite(logits).all(), mode


def test_chunk_size_reaches_the_backend(tiny):
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_size"))
        return reference_attention(*args, **kwargs)

    register_backend("chunk-spy", spy, overwrite=True)
    capture(tiny, PROMPTS, CaptureConfig(backend="chunk-spy", chunk_size=5, layers=(1,)))
    assert seen == [5]


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1000])
def test_every_chunk_size_gives_the_same_statistics(tiny, chunk_size):
    base = capture(tiny, PROMPTS, CaptureConfig(block_size=3))
    other = capture(tiny, PROMPTS, CaptureConfig(block_size=3, chunk_size=chunk_size))
    for layer in base.layers:
        for name, value in base.stats[layer].items():
            torch.testing.assert_close(other.stats[layer][name], value, atol=1e-6, rtol=1e-5, equal_nan=True,
                                       msg=f"chunk {chunk_size} {name}")


def test_tiles_larger_than_the_input_cost_nothing_extra(tiny):
    """A block size of 10^9 was an allocation of 10^18 floats; now it is one tile per prompt."""
    huge = capture(tiny, PROMPTS, CaptureConfig(block_size=10**9, layers=(0,)))
    whole = capture(tiny, PROMPTS, CaptureConfig(layers=(0,)))
    block_sum = huge.stats[0]["block_sum"]  # [batch, head, 1, 1]
    assert block_sum.shape[-2:] == (1, 1)
    received = whole.stats[0]["received_sum"].sum(-1)
    torch.testing.assert_close(block_sum[..., 0, 0], received, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("prompts, word", [(b"bytes prompt", "bytes"), ([b"x"], "string"), (42, "string")])
def test_prompts_that_are_not_text(tiny, prompts, word):
    untyped_capture = inspect.unwrap(capture)  # past the suite's type checker, as users call it
    with pytest.raises(InputError, match=word):
        untyped_capture(tiny, prompts)


def test_nested_sessions_use_the_smaller_chunk_size(tiny):
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_size"))
        return reference_attention(*args, **kwargs)

    register_backend("chunk-spy-nested", spy, overwrite=True)
    ids = tiny.tokenizer(PROMPTS[0], return_tensors="pt")
    outer = CaptureConfig(backend="chunk-spy-nested", chunk_size=5, layers=(1,))
    inner = CaptureConfig(backend="chunk-spy-nested", chunk_size=3, layers=(1,))
    with recording(tiny.hf, outer, (1,), ids["attention_mask"]), recording(tiny.hf, inner, (1,), ids["attention_mask"]):
        run_forward(tiny.hf, ids["input_ids"], ids["attention_mask"])
    assert seen == [3]
