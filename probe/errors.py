"""The error a user can fix: one class, so every front end (the command line, the dashboard,
notebooks) can tell a bad input from a bug and print its message without a traceback."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (empty prompts, prompts too long, layers or heads out of range, edits that
    cannot be applied ...); the message names the problem and the fix."""
