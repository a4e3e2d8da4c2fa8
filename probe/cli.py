"""The ``headscope`` command line: a registry of subcommands.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser
and sets ``func`` (called with the parsed arguments, returning an exit code; a
:class:`probe.cli_options.LazyCommand` where the run function lives in a module too heavy to
import for ``--help``). Modules are listed
in :data:`COMMAND_MODULES`; adding a command is adding one line there.

Errors a user can fix (unknown model, empty prompt, prompt too long, layer out of range,
unreadable file) print one ``error:`` line and exit with status 2.

Building the parser imports no command's heavy dependencies: the command modules import torch,
transformers and the models inside their run functions, so ``--help`` and argument errors answer
at once. Shared argument types and path checks are in :mod:`probe.cli_options`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from probe.cli_options import UsageError as UsageError
from probe.files import terminate_as_exit

COMMAND_MODULES = (
    "probe.cli_capture",
    "circuits.cli",
    "circuits.cli_vlm",
    "apps.heads_dashboard.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headscope", description="See and change what attention heads do.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that command's package is not part of this installation
            raise
        module.register(subparsers)
    return parser


USER_ERRORS = (UsageError, ValueError, KeyError, OSError)


def run_guarded(action) -> int:
    """Run ``action()``; an error the user can fix becomes one ``error:`` line and status 2.

    The command line runs every subcommand through this; tests run API calls through it too, so
    both are held to the same rule.
    """
    try:
        return int(action() or 0)
    except USER_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with terminate_as_exit():  # a SIGTERM unwinds like an error: half-written files are removed
        return run_guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
