"""headscope's probe package: load models, capture attention, edit it.

The names below are re-exported lazily: ``import probe`` (and so ``headscope --help``) imports
neither torch nor transformers; the first use of a name imports the module that defines it.

Example:
    >>> from probe import load_model, capture, CaptureConfig
    >>> from probe.edits import apply_edits, act_calibration
    >>> model = load_model("smollm2-135m")
    >>> record = capture(model, "When Mary and John went to the store, John gave a drink to")
    >>> with apply_edits(model, [act_calibration()]):
    ...     calibrated = capture(model, "When Mary and John went to the store, John gave a drink to")
"""

from __future__ import annotations

import importlib
import sys
import types

EXPORTS = {
    "AttentionRecord": "probe.capture",
    "CaptureConfig": "probe.capture",
    "InputError": "probe.capture",
    "capture": "probe.capture",
    "capture_ids": "probe.capture",
    "DEFAULT_MODEL": "probe.model_names",
    "LoadedModel": "probe.models",
    "ModelNotFoundError": "probe.models",
    "load_model": "probe.models",
}
"""Each re-exported name and the module it is read from on first use."""

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(EXPORTS[name]), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})


class ExportsPackage(types.ModuleType):
    """The package's module type: importing ``probe.capture`` keeps ``probe.capture`` the function.

    Importing a submodule binds it as an attribute of its package; ``capture`` names both the
    subpackage and the function it exports, and the function is what ``probe.capture`` means.
    """

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == EXPORTS.get(name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = ExportsPackage
