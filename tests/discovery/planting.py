"""A tiny random Llama with one planted head: its output alone carries the answer.

Items end in a cue token: ``A`` (answer ``X`` over ``Y``) or ``B`` (answer ``Y`` over ``X``); the
corrupted twin ends in a neutral ``C``. The plant, in weights only:

- a direction ``e`` of the residual stream (orthogonal to ``u = W_U[X] - W_U[Y]``) is removed
  from every token embedding, then ``A`` gets ``+e`` and ``B`` gets ``-e``;
- the value projection of the planted head's key-value group reads ``e`` alone (``v = f (e . x)``);
- the planted head's output projection writes ``u`` from ``f``: ``W_O^h = s u f^T``.

So the planted head writes ``+u`` after ``A``, ``-u`` after ``B`` and nothing after ``C``: the
clean logit difference is large for both groups, the corrupted one is the untouched model's,
and the mean over the clean items cancels (what mean ablation needs). The other two heads of the
key-value group read the same values but write them with their small random projections.
"""

from __future__ import annotations

import torch

from circuits.discovery.contrast import ContrastSet
from probe.models.loading import LoadedModel
from tests.helpers import tiny_loaded

PLANTED = (2, 4)
A, B, C, X, Y = 7, 11, 13, 17, 19


def planted_contrast(padded: bool = True, n_pairs: int = 3) -> ContrastSet:
    """``2 n_pairs`` items (prefix lengths 4..6 when ``padded``, else all 5)."""
    generator = torch.Generator().manual_seed(3)
    clean, corrupted, answer, other = [], [], [], []
    for i in range(2 * n_pairs):
        length = 4 + i % 3 if padded else 5
        prefix = torch.randint(20, 110, (length,), generator=generator).tolist()
        cue = A if i % 2 == 0 else B
        clean.append(prefix + [cue])
        corrupted.append(prefix + [C])
        answer.append(X if cue == A else Y)
        other.append(Y if cue == A else X)
    return ContrastSet.left_padded("planted", clean, corrupted, answer, other, ["item"] * len(clean), pad_id=0)


def planted_model(dtype: torch.dtype = torch.float32, strength: float = 1.0, isolate: bool = False) -> LoadedModel:
    """The tiny Llama with head ``PLANTED`` made to write the answer (module docstring).

    With ``isolate``, the planted head is the only reader of the cue (what the SAE method needs:
    it counts distinct codes, so every other head must write the same on clean and corrupted
    prompts): ``A`` and ``B`` become ``C`` plus and minus ``e``, and every projection that reads
    the residual stream (queries, keys, values, the MLPs) stops reading ``e`` and every writer
    stops writing it, except the planted group's values, which read it; the cue is small (5% of
    the embedding's norm), so the norms' scale hardly sees it.
    """
    loaded = tiny_loaded("llama")
    hf, geometry = loaded.hf, loaded.geometry
    layer, head = PLANTED
    d = geometry.head_dim
    group = head // (geometry.n_heads // geometry.n_kv_heads)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        unembed = hf.lm_head.weight
        u = unembed[X] - unembed[Y]
        u = u / u.norm()
        e = torch.randn(u.shape, generator=generator)
        e = e - (e @ u) * u
        e = e / e.norm()
        f = torch.randn(d, generator=generator)
        f = f / f.norm()
        embed = hf.get_input_embeddings().weight
        embed -= torch.outer(embed @ e, e)
        embed[A] += e
        embed[B] -= e
        attention = hf.model.layers[layer].self_attn
        reads = torch.outer(f, e)
        if isolate:
            _blind_to(hf, e)
            cue = 0.05 * embed[C].norm()  # small: the norms' scale hardly sees it
            embed[A], embed[B] = embed[C] + cue * e, embed[C] - cue * e
            reads = reads * embed[C].norm() / (cue * embed.shape[1] ** 0.5)  # v = +-f after the RMS norm
        attention.v_proj.weight[group * d : (group + 1) * d] = reads
        attention.o_proj.weight[:, head * d : (head + 1) * d] = strength * torch.outer(u, f)
        if isolate:
            per_group = geometry.n_heads // geometry.n_kv_heads
            for other in set(range(group * per_group, (group + 1) * per_group)) - {head}:
                cols = slice(other * d, (other + 1) * d)
                attention.o_proj.weight[:, cols] -= torch.outer(attention.o_proj.weight[:, cols] @ f, f)
    hf.to(dtype)
    return loaded


def _blind_to(hf, e: torch.Tensor) -> None:
    """No linear map reads or writes ``e`` on the residual stream: readers ``W <- W (I - e e^T)``,
    writers ``W <- (I - e e^T) W``; the embeddings alone put ``e`` there."""
    for block in hf.model.layers:
        readers = (block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj, block.mlp.gate_proj,
                   block.mlp.up_proj)
        for proj in readers:
            proj.weight -= torch.outer(proj.weight @ e, e)
        for proj in (block.self_attn.o_proj, block.mlp.down_proj):
            proj.weight -= torch.outer(e, e @ proj.weight)
