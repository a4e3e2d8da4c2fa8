"""Circuit discovery (issue 23): task contrasts, scoring against ground truth, and discovery methods.

Modules:
    ablation: knocking out a circuit, its complement or random heads (mean or corrupted values).
    attribution: EAP (one forward, one backward) and EAP-IG head scores.
    behaviour: :func:`task_behaviour`, a model's accuracy and logit differences on a task.
    circuit_run: a circuit found by one method, ready to draw (behaviour, scores, the top-k heads
        and their SAE edges), for the dashboard's panel and notebooks.
    cli_compare: ``headscope circuits compare``, component reuse between two result files.
    cli_discover: ``headscope circuits discover``, one method on one task, written as a result file.
    cli_score: ``headscope circuits score``, result files scored against a known or reference circuit.
    contrast: :class:`ContrastSet`, the one shape every task produces and every method reads.
    draws: seeded draws that stay the same across Python versions (the task generators' dice).
    ground_truth: the literature's circuits (IOI, greater-than, docstring) as head sets with their
        ambiguities, and reference circuits from patching scores (:func:`circuit_from_scores`).
    head_outputs: each head's contribution to the residual stream, reduced over positions (the
        SAE method's input).
    heads: hooks on the output projection's input, where each head's output is a slice.
    methods: the registry of discovery methods by name (:func:`discover`), for the CLI, the
        dashboard and notebooks.
    patching: activation patching per head (corrupted-to-clean, mean ablation), batched.
    results: the result file of ``circuits discover`` (its JSON fields), as ``score`` and ``compare``
        read it.
    sae_codes: SAE codes, the node score and the sparse co-occurrence ("edge") score.
    sae_method: the SAE method of O'Neill & Bui (2024), end to end.
    sae_train: one sae-lens SAE over every head's output, trained as the reference does, saved
        in sae-lens' format.
    scores: ROC AUC, ACDC's pessimistic staircase AUC, precision/recall at k, component overlap.
    tasks: the task registry (IOI, greater-than, docstring, colored objects): the files in ``data/``
        tokenized into a :class:`ContrastSet`, with the items that do not fit the tokenizer counted.

Importing this package imports nothing else; import the modules you use.
"""
