"""The preplan-and-anchor rhythm: attention statistics over reasoning traces.

Implements the analysis of Li et al., "Attention Illuminates LLM Reasoning: The Preplan-and-Anchor
Rhythm Enables Fine-Grained Policy Optimization" (arXiv 2510.13554; methods dossier section d):

- :mod:`circuits.rhythm.problems` and :mod:`circuits.rhythm.traces`: GSM8K problems, the paper's
  prompt, resumable generation or a user's own model outputs, and the teacher-forcing alignment;
- :mod:`circuits.rhythm.metrics`: head spans and roles, WAAD, FAI, receiver-head FAI and token
  entropy from one statistics capture;
- :mod:`circuits.rhythm.analysis`: many traces, each batch captured once from its token ids;
- :mod:`circuits.rhythm.peaks`: peaks and the three couplings of the paper's Table 2;
- :mod:`circuits.rhythm.perturb` (with :mod:`~circuits.rhythm.perturb_summary`,
  :mod:`~circuits.rhythm.content_words` and :mod:`~circuits.rhythm.trace_fai`): the perturbation
  test of the paper's Table 1 (a forced token at high- against low-FAI positions, greedy
  rollouts, content-word Jaccard);
- :mod:`circuits.rhythm.credit`: the paper's RL credit weights (local-chunk, global-anchor,
  coupled), shaped advantages and a GRPO loss for a plain PyTorch loop;
- :mod:`circuits.rhythm.grpo`: TRL's ``GRPOTrainer`` with rhythm credit (needs the ``rl`` extra);
- :mod:`circuits.rhythm.report`: plotly figures and a self-contained HTML report;
- :mod:`circuits.rhythm.cli`: ``headscope rhythm traces``, ``headscope rhythm analyse`` and
  ``headscope rhythm perturb``.

Nothing is imported here, so ``import circuits.rhythm`` stays light; import the submodule:

Example:
    >>> from circuits.rhythm.traces import TraceConfig, generate_traces
    >>> from circuits.rhythm.analysis import analyse_traces
"""
