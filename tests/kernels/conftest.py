"""Fixtures for the kernel tests: seeding, CUDA skip, and the Triton-interpreter numpy patch.

Triton 3.6's interpreter turns loop bounds into Python ints with ``int(ndarray)``; numpy >= 2.3
refuses that for 1-element arrays that are not 0-d ("only 0-dimensional arrays can be converted
to Python scalars", kernels.md section 2.4; still true with numpy 2.4.6). We patch the one
``__index__`` the interpreter installs on ``tl.tensor`` instead of pinning numpy.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

# TRITON_INTERPRET=1 (the interpreter on machines without a GPU) is set in tests/conftest.py, which
# is read before any test module can import the kernels.


def _patch_triton_interpreter() -> None:
    try:
        int(np.zeros(1))
        return  # old numpy: nothing to patch
    except TypeError:
        pass
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


def _interpret_preloaded_library() -> None:
    """Make Triton's own ``@jit`` library functions (``tl.zeros`` ...) interpretable.

    tests/conftest.py imports triton before it sets TRITON_INTERPRET, so those functions are built
    as compiled ``JITFunction`` s (which the sm_90a build tests need);
    calling one from interpreted code raises "Cannot call @triton.jit'd outside of the scope
    of a kernel". Route such calls through an ``InterpretedFunction`` of the same source.
    """
    if "triton" not in sys.modules or os.environ.get("TRITON_INTERPRET") != "1":
        return
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    def call_interpreted(self, *args, **kwargs):
        interpreted = self.__dict__.get("_interpreted")
        if interpreted is None:
            interpreted = self.__dict__["_interpreted"] = InterpretedFunction(self.fn)
        return interpreted(*args, **kwargs)

    JITFunction.__call__ = call_interpreted


_patch_triton_interpreter()
_interpret_preloaded_library()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
