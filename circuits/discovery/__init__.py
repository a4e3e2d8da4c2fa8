"""Circuit discovery (issue 23): task contrasts, scoring against ground truth, and discovery methods.

Modules:
    attribution: EAP (one forward, one backward) and EAP-IG head scores.
    behaviour: :func:`task_behaviour`, a model's accuracy and logit differences on a task.
    contrast: :class:`ContrastSet`, the one shape every task produces and every method reads.
    draws: seeded draws that stay the same across Python versions (the task generators' dice).
    ground_truth: the literature's circuits (IOI, greater-than, docstring) as head sets with their
        ambiguities, and reference circuits from patching scores (:func:`circuit_from_scores`).
    heads: hooks on the output projection's input, where each head's output is a slice.
    patching: activation patching per head (corrupted-to-clean, mean ablation), batched.
    scores: ROC AUC, ACDC's pessimistic staircase AUC, precision/recall at k, component overlap.
    tasks: the task registry (IOI, greater-than, docstring, colored objects): the files in ``data/``
        tokenized into a :class:`ContrastSet`, with the items that do not fit the tokenizer counted.

Importing this package imports nothing else; import the modules you use.
"""
