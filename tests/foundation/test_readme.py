"""The README's Python examples run as written, in order, on the real default model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_examples():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and all("from probe" in block for block in blocks)


@pytest.mark.real_model
def test_readme_python_examples_run(tmp_path, monkeypatch):
    """One namespace for all blocks, as a reader pasting them into one session would have."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(README.read_text(encoding="utf-8")):
        exec(compile(block, str(README), "exec"), namespace)  # the repository's own README, not an input
    assert (tmp_path / "rec.safetensors").exists() and not (tmp_path / "rec.json").exists()
    prompt_length = namespace["inputs"]["input_ids"].shape[1]
    assert namespace["out"].shape[1] == prompt_length + 20
    assert namespace["record"].stat(5, "entropy").shape[0] == namespace["model"].geometry.n_heads
    image_mask = namespace["vrecord"].image_mask  # the vision-language block
    assert image_mask[0].sum() == 64 and image_mask[1].sum() == 0
    assert namespace["heads"].with_image.shape == namespace["heads"].without_image.shape
    assert namespace["answers"] == ["Yes"]  # heldout scene 0 holds a pizza
