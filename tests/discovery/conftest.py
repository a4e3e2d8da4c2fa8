"""Fixtures of the discovery tests: one torch thread, and the planted-head model with its contrast."""

from __future__ import annotations

import pytest
import torch

from tests.discovery.planting import planted_contrast, planted_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matmuls: threads only contend (20x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted():
    return planted_model(), planted_contrast(padded=True)


@pytest.fixture(scope="module")
def planted64():
    return planted_model(torch.float64), planted_contrast(padded=False)  # HF's float64 eager masks NaN padding
