"""Where headscope keeps what it converts or links once: ``$HEADSCOPE_CACHE`` or ``~/.cache/headscope``.

Context:
    The offline models (:mod:`probe.models.offline`, :mod:`probe.models.synth_llava`) cache their
    converted HF folders here, and the TransformerLens view (:mod:`probe.models.lens`) its
    neutral-named links. A module of its own so that none of them needs :mod:`probe.models.loading`
    for it (loading builds the lens view, so the lens importing loading back was a cycle).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Where converted models are cached (``$HEADSCOPE_CACHE`` or ``~/.cache/headscope``)."""
    return Path(os.environ.get("HEADSCOPE_CACHE", Path.home() / ".cache" / "headscope"))
