"""Circuit discovery (issue 23): task contrasts, scoring against ground truth, and discovery methods.

Modules:
    contrast: :class:`ContrastSet`, the one shape every task produces and every method reads.

Importing this package imports nothing else; import the modules you use.
"""
