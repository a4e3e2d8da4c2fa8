"""Model names that the command line needs without importing torch or transformers.

Context:
    ``probe.models`` imports torch (its package ``__init__`` loads the loaders), so a name that
    ``headscope --help`` prints cannot live there; it lives here and ``probe.models`` re-exports it.
"""

DEFAULT_MODEL = "smollm2-135m"
