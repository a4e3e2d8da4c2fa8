"""Fixtures of the discovery tests: one torch thread, and the planted-head model with its contrast."""

from __future__ import annotations

import pytest
import torch

from tests.discovery.planting import planted_contrast, planted_model
from tests.helpers import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def planted():
    return planted_model(), planted_contrast(padded=True)


@pytest.fixture(scope="module")
def planted64():
    return planted_model(torch.float64), planted_contrast(padded=False)  # HF's float64 eager masks NaN padding
