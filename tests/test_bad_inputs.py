"""The bad-input battery as one parametrised table (rows in ``tests/bad_inputs/cases_*.py``).

Every row must end with exit status ``code``, one ``error:`` line (argparse's own usage errors may
print the usage first) that contains ``word``, and no traceback.
"""

from __future__ import annotations

import pytest

from probe.cli import main, run_guarded
from tests.bad_inputs import (cases_api, cases_carve, cases_cli, cases_edits, cases_hallucination, cases_records,
                              cases_vhd, cases_vision, cases_vlm)
from tests.bad_inputs.table import Env
from tests.helpers import tiny_loaded, untyped

TABLE = [*cases_records.CASES, *cases_cli.CASES, *cases_api.CASES, *cases_edits.CASES, *cases_hallucination.CASES,
         *cases_vision.CASES, *cases_vlm.CASES, *cases_vhd.CASES, *cases_carve.CASES]


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory, tiny_folder):
    from probe import CaptureConfig, capture

    loaded = tiny_loaded("llama")
    folder = tiny_folder
    record = capture(loaded, ["Hello there, general", "Hi"], CaptureConfig(layers=(0, 2)))
    saved = record.save(tmp_path_factory.mktemp("record") / "rec")
    path = saved[0] if isinstance(saved, tuple) else saved
    return {"tiny_folder": folder, "tiny": loaded, "record": path}


def test_table_is_large_enough():
    assert len(TABLE) >= 40, f"the bad-input table has {len(TABLE)} rows; the hardening issue asks for 40"
    names = [case.name for case in TABLE]
    assert len(names) == len(set(names)), "row names must be unique"


@pytest.mark.parametrize("case", TABLE, ids=lambda case: case.name)
def test_bad_input(case, shared_env, tmp_path, capsys):
    env = Env(tmp=tmp_path, **shared_env)
    if case.kind == "cli":
        try:
            code = main(case.run(env))
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
    else:
        with untyped():
            code = run_guarded(lambda: case.run(env))
    err = capsys.readouterr().err
    assert code == case.code, f"exit status {code}, expected {case.code}; stderr: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:") or "error:" in line]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert case.word.lower() in lines[0].lower(), f"{case.word!r} not in {lines[0]!r}"
