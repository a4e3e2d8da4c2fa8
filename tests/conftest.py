"""Shared fixtures: seeding, tiny random HF models of several architectures, an offline tokenizer."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    # Without a GPU the Triton kernels run in Triton's interpreter. triton.jit reads this when
    # probe.kernels.triton_kernels is imported, and any test module may import the kernels'
    # backend at collection time (before tests/kernels/conftest.py is read), so it is set here.
    # Triton itself is imported first, whichever plugins have or have not imported it yet: its own
    # @jit library (tl.max, tl.zeros, ...) must be compiled functions, which the sm_90a build tests
    # compile; tests/kernels/conftest.py routes their calls from interpreted kernels to the interpreter.
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tests.helpers import TINY_BUILDERS, build_tiny, gpt2_tokenizer, tiny_loaded


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_grad_mode():
    """Commands run in-process (in tests and fixtures) turn gradients off for the whole process
    (``torch.set_grad_enabled(False)``); every test starts with PyTorch's default, on."""
    torch.set_grad_enabled(True)
    yield
    torch.set_grad_enabled(True)


@pytest.fixture(scope="session")
def tokenizer():
    return gpt2_tokenizer()


@pytest.fixture(params=sorted(TINY_BUILDERS))
def tiny_arch(request) -> str:
    return request.param


@pytest.fixture
def tiny_model(tiny_arch):
    return build_tiny(tiny_arch)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here.parent / "shared"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama saved as an HF folder, as a user's local model would be."""
    loaded = tiny_loaded("llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    loaded.hf.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder
