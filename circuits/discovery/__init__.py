"""Circuit discovery (issue 23): task contrasts, scoring against ground truth, and discovery methods.

Modules:
    contrast: :class:`ContrastSet`, the one shape every task produces and every method reads.
    ground_truth: the literature's circuits (IOI, greater-than, docstring) as head sets with their
        ambiguities, and reference circuits from patching scores (:func:`circuit_from_scores`).
    scores: ROC AUC, ACDC's pessimistic staircase AUC, precision/recall at k, component overlap.

Importing this package imports nothing else; import the modules you use.
"""
