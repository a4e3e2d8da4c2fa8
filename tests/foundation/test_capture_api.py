"""The public capture API, records on disk, TransformerLens engine, CLI errors."""

from __future__ import annotations

import pytest
import torch

from probe import CaptureConfig, InputError, capture, load_model
from probe.capture.record import AttentionRecord
from probe.cli import main
from probe.edits import ScaleHeads, act_calibration, apply_edits

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
