"""From SAE features to integer codes, and from codes to head scores: O'Neill & Bui's node and edge scores.

Context (methods dossier section c, the reference's ``src/node.py`` and ``src/edge.py``):

    - **code**: each (example, head) output is encoded by the SAE and replaced by the index of
      its largest feature (``argmax``; an all-zero encoding gives feature 0, as ``argmax`` does in
      the reference);
    - **node score** of a head: how many codes it shows on positives (clean prompts) and never on
      negatives (corrupted prompts), ``|set(pos) - set(neg)|``. The reference then applies a
      softmax over heads; it is monotone, so it changes no ranking and no ROC, and is left out;
    - **pair score** of heads ``(h1, h2)``, ``h1 != h2``: how many code pairs ``(c1, c2)`` occur
      together on some positive and on no negative;
    - **edge score** of a head (the reference's "edge" ROC is a head-level one): the head pairs
      are sorted by pair score (highest first), listed flat as ``h1, h2, h1', h2', ...``, and
      each head counts its appearances among the first ``k`` entries (``k = n_heads^2 / 2``,
      ``n_heads`` the heads of the whole model).

Counting:
    The reference fills two dense ``[head, head, width, width]`` float64 tensors (6.6 GB each for
    GPT-2 small) in a Python triple loop. :func:`pair_scores` counts the same sets sparsely: each
    (pair, c1, c2) present on an example becomes one integer key, ``torch.unique`` keeps one of
    each, and ``torch.isin`` finds those the negatives share; memory is ``examples x heads^2``
    keys. :func:`dense_pair_scores` is the reference's count, for tests on small inputs.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def codes(sae, outputs: Float[Tensor, "example head d_model"], chunk: int = 4096) -> Int[Tensor, "example head"]:
    """The index of each (example, head) output's largest SAE feature."""
    flat = outputs.reshape(-1, outputs.shape[-1]).float()
    with torch.no_grad():
        out = torch.cat([sae.encode(flat[i : i + chunk]).argmax(-1) for i in range(0, len(flat), chunk)])
    return out.reshape(outputs.shape[:2])


def node_scores(positive: Int[Tensor, "example head"], negative: Int[Tensor, "example head"]) -> Int[Tensor, " head"]:
    """Per head, the number of codes seen on some positive and on no negative."""
    width = int(max(positive.max(), negative.max())) + 1
    seen_pos = _presence(positive, width)
    seen_neg = _presence(negative, width)
    return (seen_pos & ~seen_neg).sum(1)


def _presence(codes_: Int[Tensor, "example head"], width: int) -> Tensor:
    """``[head, width]``: whether head ``h`` shows code ``c`` on some example."""
    n_heads = codes_.shape[1]
    seen = torch.zeros(n_heads, width, dtype=torch.bool)
    seen[torch.arange(n_heads).expand_as(codes_), codes_] = True
    return seen


def pair_keys(codes_: Int[Tensor, "example head"], width: int) -> Int[Tensor, " key"]:
    """The distinct ``((h1 * H + h2) * W + c1) * W + c2`` over examples and pairs ``h1 != h2``."""
    n_heads = codes_.shape[1]
    pair = torch.arange(n_heads)[:, None] * n_heads + torch.arange(n_heads)[None, :]
    off = ~torch.eye(n_heads, dtype=torch.bool)
    keys = (pair[None] * width + codes_[:, :, None]) * width + codes_[:, None, :]  # [example, h1, h2]
    return torch.unique(keys[:, off])


def pair_scores(positive: Int[Tensor, "example head"], negative: Int[Tensor, "example head"],
                width: int) -> Int[Tensor, "head head"]:
    """Per ordered pair ``h1 != h2``, the code pairs seen together on a positive and on no negative (sparse)."""
    n_heads = positive.shape[1]
    pos = pair_keys(positive.long(), width)
    fresh = pos[~torch.isin(pos, pair_keys(negative.long(), width))]
    counts = torch.bincount(fresh // (width * width), minlength=n_heads * n_heads)
    return counts.reshape(n_heads, n_heads)


def dense_pair_scores(positive: Int[Tensor, "example head"], negative: Int[Tensor, "example head"],
                      width: int) -> Int[Tensor, "head head"]:
    """The reference's dense count (``[head, head, width, width]`` co-occurrence tensors): small inputs only."""
    n_heads = positive.shape[1]

    def co_occurrence(c: Tensor) -> Tensor:
        out = torch.zeros(n_heads, n_heads, width, width, dtype=torch.long)
        for example in c:
            for h1 in range(n_heads):
                for h2 in range(n_heads):
                    if h1 != h2:
                        out[h1, h2, example[h1], example[h2]] += 1
        return out

    return ((co_occurrence(positive) > 0) & ~(co_occurrence(negative) > 0)).sum((2, 3))


def edge_head_scores(pairs: Int[Tensor, "head head"], k: int | None = None) -> Int[Tensor, " head"]:
    """Each head's appearances among the first ``k`` endpoints of the pairs sorted by score (module docstring).

    Pairs of equal score keep their flat (row-major) order, so the result is deterministic.
    """
    n_heads = pairs.shape[0]
    k = n_heads * n_heads // 2 if k is None else k
    order = torch.sort(pairs.flatten(), descending=True, stable=True).indices
    endpoints = torch.stack([order // n_heads, order % n_heads], dim=1).flatten()[:k]
    return torch.bincount(endpoints, minlength=n_heads)
