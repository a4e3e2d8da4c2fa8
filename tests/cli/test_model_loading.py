"""load_model's messages: a broken model folder, an unreachable hub, a device that is not there."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from probe.models import ModelNotFoundError, load_model


def test_corrupt_config_names_the_folder_and_the_file(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError) as caught:
        load_model(str(broken))
    message = str(caught.value)
    assert f"cannot load the model folder {broken}: config.json is not valid JSON" in message
    assert "hub" not in message


def test_config_that_is_not_an_object(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    (broken / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(str(broken))


def test_folder_without_weights_says_so(tiny_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_folder, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ModelNotFoundError) as caught:
        load_model(str(broken))
    assert f"cannot load the model folder {broken}" in str(caught.value)


def test_unreachable_hub_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("org/model")
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    assert "cannot reach the model hub at 127.0.0.1 to load 'org/model'" in message
    assert "smollm2-135m" in message and "gemma-3-270m" in message


def test_offline_hub_reads_the_local_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    asked = []

    def from_pretrained(target, **kwargs):
        asked.append(target)
        raise OSError("not in the cache")

    monkeypatch.setattr("probe.models.loading.AutoTokenizer.from_pretrained", from_pretrained)
    with pytest.raises(ModelNotFoundError, match="org/model"):
        load_model("org/model")
    assert asked == ["org/model"]


@pytest.mark.parametrize("device, words", [
    ("gpu0", ["'gpu0'", "cpu"]),
    ("cuda", ["'cuda'", "CUDA", "cpu"]),
    ("cuda:7", ["'cuda:7'", "cpu"]),
])
def test_bad_device_is_refused_before_loading(device, words, tiny_folder, monkeypatch):
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    monkeypatch.setattr("probe.models.loading.AutoModelForCausalLM.from_pretrained",
                        lambda *a, **k: pytest.fail("the device must be checked before loading"))
    with pytest.raises(ValueError) as caught:
        load_model(str(tiny_folder), device=device)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_cpu_device_still_loads(tiny_folder):
    assert load_model(str(tiny_folder), device="cpu").hf.device.type == "cpu"
