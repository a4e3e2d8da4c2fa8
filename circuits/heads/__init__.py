"""Head-level measurements on one prompt, for the dashboard and notebooks (issue 20).

Modules:
    target_foil: a target and a foil token (" Mary" against " John"), checked against the
        tokenizer, and the logit difference between them, before and after edits.
    direct_attribution: direct logit attribution of the logit difference to every head (and to
        the embeddings, MLPs and biases), through the final norm with its scale frozen.
    ablation_sweep: the change of the logit difference when each head is ablated (zero or mean),
        many heads per forward.
    roles: named token positions of a prompt set (IOI's IO, S1, S2, END), for averages over
        prompts aligned by role.

Importing this package imports nothing else; import the modules you use.
"""
