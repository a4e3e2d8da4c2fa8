"""Bad-input rows: edits."""

from __future__ import annotations

from tests.bad_inputs.table import Case, api, cli  # noqa: F401

CASES: list[Case] = []
