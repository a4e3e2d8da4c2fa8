"""The public capture API, records on disk, TransformerLens engine, CLI errors."""

from __future__ import annotations

import pytest
import torch

from probe import CaptureConfig, InputError, capture, capture_ids, load_model
from probe.capture.record import AttentionRecord
from probe.cli import main
from probe.edits import ScaleHeads, act_calibration, apply_edits
from tests.helpers import untyped

PROMPTS = ["When Mary and John went to the store, John gave a drink to", "The capital of France is"]


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return load_model(str(tiny_folder))


def test_record_round_trip(tiny, tmp_path):
    config = CaptureConfig(mode="pattern", block_size=4, head_output_positions=(0, -1))
    record = capture(tiny, PROMPTS, config)
    assert record.pattern(1, prompt=1).shape[-1] == len(record.tokens[1])
    assert record.head_outputs[2].shape == (2, 2, tiny.geometry.n_heads, tiny.geometry.head_dim)
    record.save(tmp_path / "rec")
    loaded = AttentionRecord.load(tmp_path / "rec.safetensors")
    assert loaded.tokens == record.tokens and loaded.config == record.config
    for layer in record.layers:
        torch.testing.assert_close(loaded.patterns[layer], record.patterns[layer])
        for name, value in record.stats[layer].items():
            torch.testing.assert_close(loaded.stats[layer][name], value, equal_nan=True)
    meta = loaded.metadata()
    assert meta["model"] == tiny.name and meta["layers"] == record.layers


def test_stats_and_pattern_modes_agree(tiny):
    stats = capture(tiny, PROMPTS, CaptureConfig(mode="stats", chunk_size=3))
    full = capture(tiny, PROMPTS, CaptureConfig(mode="pattern"))
    for layer in stats.layers:
        for prompt in range(2):
            pattern = full.pattern(layer, prompt)
            torch.testing.assert_close(stats.stat(layer, "received_sum", prompt), pattern.sum(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats.last_logits, full.last_logits, atol=1e-5, rtol=0)


def test_lens_engine_matches_hf(tiny):
    hf = capture(tiny, PROMPTS, CaptureConfig(mode="pattern", head_output_positions=(-1,)))
    lens = capture(tiny, PROMPTS, CaptureConfig(mode="pattern", head_output_positions=(-1,)), engine="lens")
    for layer in hf.layers:
        for prompt in range(2):
            torch.testing.assert_close(lens.pattern(layer, prompt), hf.pattern(layer, prompt), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lens.head_outputs[layer], hf.head_outputs[layer], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lens.stats[layer]["entropy"], hf.stats[layer]["entropy"], atol=1e-4, rtol=1e-4, equal_nan=True)
    torch.testing.assert_close(lens.last_logits.log_softmax(-1), hf.last_logits.log_softmax(-1), atol=1e-4, rtol=0)


def test_lens_edits_match_hf_edits(tiny):
    edits = [act_calibration(tau=0.08, layers=[1]), ScaleHeads(2.0, layers=[2], heads=[3])]
    with apply_edits(tiny, edits):
        hf = capture(tiny, PROMPTS, CaptureConfig(layers=(0,)))
    with apply_edits(tiny.lens(), edits):
        lens = capture(tiny, PROMPTS, CaptureConfig(layers=(0,)), engine="lens")
    plain = capture(tiny, PROMPTS, CaptureConfig(layers=(0,)))
    torch.testing.assert_close(lens.last_logits.log_softmax(-1), hf.last_logits.log_softmax(-1), atol=1e-4, rtol=0)
    assert (hf.last_logits - plain.last_logits).abs().max() > 1e-4
    assert not tiny.lens().hook_dict["blocks.1.attn.hook_pattern"].fwd_hooks, "TransformerLens hook left behind"


def test_lens_hooks_removed_after_exception(tiny):
    with pytest.raises(RuntimeError):
        with apply_edits(tiny.lens(), [ScaleHeads(0.0, layers=[0])]):
            raise RuntimeError("boom")
    leftover = [name for name, hp in tiny.lens().hook_dict.items() if hp.fwd_hooks]
    assert leftover == []


def test_bad_inputs_raise_clear_errors(tiny):
    with pytest.raises(InputError, match="empty"):
        capture(tiny, ["   "])
    with pytest.raises(InputError, match="context window"):
        capture(tiny, ["word " * 400])
    with pytest.raises(InputError, match="out of range"):
        capture(tiny, PROMPTS, CaptureConfig(layers=(7,)))
    with pytest.raises(InputError, match="GiB"):
        capture(tiny, PROMPTS, CaptureConfig(mode="pattern", pattern_bytes_limit=10))


def test_capture_ids_matches_capture_on_the_same_ids(tiny):
    """The same batch as ids gives the same record as text (tokens, ids, statistics, logits)."""
    text = capture(tiny, PROMPTS, CaptureConfig(chunk_size=5))
    ids = capture_ids(tiny, text.input_ids, text.attention_mask, CaptureConfig(chunk_size=5))
    assert ids.tokens == text.tokens
    assert torch.equal(ids.input_ids, text.input_ids) and torch.equal(ids.attention_mask, text.attention_mask)
    for layer in text.layers:
        for name, value in text.stats[layer].items():
            torch.testing.assert_close(ids.stats[layer][name], value, equal_nan=True)
    torch.testing.assert_close(ids.last_logits, text.last_logits)


def test_capture_ids_reads_ids_that_text_would_merge(tiny):
    """" world" tokenized on its own is one token; as two pieces (" wor" + "ld") the record keeps both."""
    tok = tiny.tokenizer
    pieces = tok("Hello wor", add_special_tokens=False)["input_ids"] + tok("ld", add_special_tokens=False)["input_ids"]
    merged = tok("Hello world", add_special_tokens=False)["input_ids"]
    assert len(pieces) > len(merged)  # the premise: text would re-tokenize the boundary
    ids = torch.tensor([pieces, [tok.pad_token_id] * (len(pieces) - len(merged)) + merged])
    mask = torch.tensor([[1] * len(pieces), [0] * (len(pieces) - len(merged)) + [1] * len(merged)])
    record = capture_ids(tiny, ids, mask, CaptureConfig(layers=(1,)))
    assert len(record.tokens[0]) == len(pieces) and len(record.tokens[1]) == len(merged)
    assert "".join(record.tokens[0]) == "".join(record.tokens[1]) == "Hello world"
    assert record.stat(1, "entropy", 0).shape[-1] == len(pieces)


def test_capture_ids_refuses_bad_batches(tiny):
    """Each bad batch is one InputError (type checks off: the calls are made as users make them)."""
    ids, mask = torch.tensor([[5, 6, 7]]), torch.tensor([[1, 1, 1]])
    with untyped():
        with pytest.raises(InputError, match="left padding"):
            capture_ids(tiny, ids, torch.tensor([[1, 1, 0]]))
        with pytest.raises(InputError, match="empty"):
            capture_ids(tiny, ids, torch.tensor([[0, 0, 0]]))
        with pytest.raises(InputError, match="vocabulary"):
            capture_ids(tiny, torch.tensor([[5, 10**6, 7]]), mask)
        with pytest.raises(InputError, match="same non-empty shape"):
            capture_ids(tiny, ids, torch.tensor([[1, 1]]))
        with pytest.raises(InputError, match="0 .padding. and 1"):
            capture_ids(tiny, ids, torch.tensor([[1, 2, 1]]))
        with pytest.raises(InputError, match="integer token ids"):
            capture_ids(tiny, ids.float(), mask)
        long = torch.full((1, tiny.geometry.context_length + 1), 5)
        with pytest.raises(InputError, match="context window"):
            capture_ids(tiny, long, torch.ones_like(long))


def test_cli_capture_and_errors(tiny_folder, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["capture", "--model", str(tiny_folder), "--prompt", PROMPTS[0], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "first-token share" in printed and (tmp_path / "rec.safetensors").exists()
    assert main(["capture", "--model", "no-such-model", "--prompt", "hi"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["capture", "--model", str(tiny_folder), "--prompt", ""]) == 2
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "word " * 400]) == 2
    assert "context window" in capsys.readouterr().err
    assert main(["capture", "--model", str(tiny_folder), "--prompt", "hi", "--layers", "9"]) == 2
    assert main(["capture", "--model", str(tiny_folder), "--prompts-file", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read prompts file" in capsys.readouterr().err


def test_malformed_record_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read attention record"):
        AttentionRecord.load(tmp_path / "bad")
