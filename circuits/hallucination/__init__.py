"""Vision-language hallucination (issue 24): POPE and CHAIR metrics, evaluation items, the batch
runner (batched generation, resumable JSON-lines results, torchrun shards) and its summary.

Modules import torch only where they run a model, so the ``headscope vlm`` parser stays light.
"""
