"""The bad-input battery: one table of (input, expected exit code, a word the message must contain).

Each ``cases_*.py`` module holds the rows of one area as a ``CASES`` list; ``tests/test_bad_inputs.py``
joins them into one parametrised table. Rows run either the command line (``probe.cli.main``) or an
API call through :func:`probe.cli.run_guarded`, the same error handler the command line uses, so
both must end in one ``error:`` line naming the problem and exit status 2.
"""
