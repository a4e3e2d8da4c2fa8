"""The preplan-and-anchor rhythm: attention statistics over reasoning traces.

Implements the analysis of Li et al., "Attention Illuminates LLM Reasoning: The Preplan-and-Anchor
Rhythm Enables Fine-Grained Policy Optimization" (arXiv 2510.13554; methods dossier section d).
:mod:`circuits.rhythm.traces` produces the traces (GSM8K problems, the paper's prompt, resumable
generation, or a user's own model outputs) and the teacher-forcing alignment the metrics use.

Nothing is imported here, so ``import circuits.rhythm`` stays light; import the submodule:

Example:
    >>> from circuits.rhythm.traces import TraceConfig, generate_traces, load_problems
"""
