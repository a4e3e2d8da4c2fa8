"""ACT's key scaling (sink attention redistribution) on the kernels' path, exact, after K1.

Modules:
    row_pass:   the pass that rewrites K1's output rows (and entropy, distance) into the edited
                attention's, and the per-row factors (:func:`~.row_pass.act_pass`).
    columns:    column statistics of the edited attention: K2 for the unselected keys, PyTorch
                for the few selected ones.
"""
