"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_loaded


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama saved as an HF folder, as a user's local model would be."""
    loaded = tiny_loaded("llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    loaded.hf.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder
