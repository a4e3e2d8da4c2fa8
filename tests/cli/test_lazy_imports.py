"""Building the parser, ``--help`` and argument errors import neither torch nor transformers.

Each check runs in a fresh interpreter, since this test process has imported both long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers")

SCRIPT = """
import json, sys
from probe.cli import main
try:
    main({argv!r})
except SystemExit as stop:
    code = stop.code
else:
    code = None
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)
"""


def run_in_fresh_interpreter(argv: list[str], cwd: Path) -> dict:
    """Run ``probe.cli.main(argv)`` in a new Python; its exit code and the heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["capture", "--help"],
    ["sinks", "--help"],
    ["act", "search", "--help"],
    ["act", "eval", "--help"],
    ["dashboard", "--help"],
    ["rhythm", "--help"],
    ["rhythm", "traces", "--help"],
    ["rhythm", "analyse", "--help"],
    ["rhythm", "perturb", "--help"],
    ["circuits", "--help"],
    ["circuits", "discover", "--help"],
    ["circuits", "score", "--help"],
    ["circuits", "compare", "--help"],
], ids=lambda argv: " ".join(argv))
def test_help_imports_no_heavy_module(argv, tmp_path):
    result = run_in_fresh_interpreter(argv, tmp_path)
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize("argv", [
    ["capture", "--prompt", "x", "--top", "abc"],
    ["sinks", "--out", "o.jsonl", "--prompt", "x", "--limit", "0"],
    ["dashboard", "--port", "99999"],
    ["rhythm", "analyse", "--out", "o.jsonl", "--traces", "t.jsonl", "--band", "10,5"],
    ["rhythm", "traces", "--problems", "p.jsonl", "--out", "t.jsonl", "--max-new-tokens", "0"],
    ["rhythm", "perturb", "--out", "p.json", "--traces", "t.jsonl", "--rank", "1"],
    ["circuits", "discover", "--task", "ioi", "--method", "eap", "--out", "o.json", "--limit", "0"],
], ids=lambda argv: " ".join(argv))
def test_argument_error_imports_no_heavy_module(argv, tmp_path):
    result = run_in_fresh_interpreter(argv, tmp_path)
    assert result == {"code": 2, "heavy": []}


def test_probe_names_still_import():
    from probe import (DEFAULT_MODEL, AttentionRecord, CaptureConfig, InputError, LoadedModel, ModelNotFoundError,
                       capture, load_model)
    from probe.capture import api
    from probe.models import DEFAULT_MODEL as models_default

    assert capture is api.capture and callable(load_model)
    assert DEFAULT_MODEL == models_default == "smollm2-135m"
    assert all(isinstance(cls, type) for cls in (AttentionRecord, CaptureConfig, InputError, LoadedModel,
                                                 ModelNotFoundError))


def test_probe_lists_its_lazy_names():
    import probe

    for name in ("load_model", "capture", "capture_ids", "CaptureConfig", "AttentionRecord", "InputError", "LoadedModel",
                 "ModelNotFoundError", "DEFAULT_MODEL"):
        assert name in probe.__all__ and name in dir(probe)
    with pytest.raises(AttributeError, match="no_such_name"):
        probe.no_such_name  # noqa: B018


def test_capture_stays_the_function_when_its_subpackage_loads_first(tmp_path):
    script = ("import probe.capture.record, probe; from probe import capture; "
              "import sys; print(callable(capture) and not isinstance(capture, type(sys)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.strip() == "True", done.stderr
