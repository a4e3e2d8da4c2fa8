"""The SAE method of circuit discovery (O'Neill & Bui 2024): per-head outputs, one SAE, codes, scores.

Context:
    The steps (methods dossier section c; :mod:`circuits.discovery.head_outputs`,
    :mod:`circuits.discovery.sae_train`, :mod:`circuits.discovery.sae_codes`):

    1. each head's output on every clean (positive) and corrupted (negative) prompt, averaged
       over positions (or at the last one);
    2. one SAE shared by all heads, trained on the outputs of ``n_train`` prompts drawn at random
       from positives and negatives together (the reference's ``num_sae_examples = 10``: the
       paper's "5-10 examples");
    3. each (prompt, head) output's code (its largest feature) on *all* prompts;
    4. a head's score: codes it shows on positives and never on negatives (``score="node"``), or
       its count among the top head pairs by co-occurrence (``score="edge"``).

    Every random choice (the training prompts, the SAE's initial weights) comes from ``seed``,
    which is recorded in the saved SAE's metadata with the rest of the options.

    An SAE trained before (``sae=`` or ``--load-sae DIR``) is reused only if its metadata names
    the same model geometry; one trained on another model is refused with the reason.

Scores:
    The returned :class:`~circuits.discovery.patching.HeadScores` carries the raw counts as
    ``scores`` (integers; higher = more in the circuit) and the logit differences of the two
    recording passes. Counts are not effects: only their ranking compares with patching.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.head_outputs import POSITIONS, HeadOutputs, record_head_outputs
from circuits.discovery.patching import HeadScores, check_inputs
from circuits.discovery.sae_codes import codes, edge_head_scores, node_scores, pair_scores
from circuits.discovery.sae_train import SAETraining, sae_metadata, train_sae, training_metadata
from probe.errors import InputError

SCORES = ("node", "edge")

SAE_METHODS = {"sae": "node", "sae-edge": "edge"}
"""The registered method names that train an SAE (:mod:`circuits.discovery.methods`), and the
score each asks :func:`sae_discovery` for."""


@dataclass(frozen=True)
class SAEOptions:
    """The SAE method's options.

    Attributes:
        seed: seeds the training prompts' draw and the SAE's initial weights.
        n_train: prompts whose head outputs train the SAE (all heads of each).
        position: ``"mean"`` over the prompt's tokens (the reference) or ``"last"``.
        training: width, sparsity weight, learning rate, epochs.
    """

    seed: int = 0
    n_train: int = 10
    position: str = "mean"
    training: SAETraining = field(default_factory=SAETraining)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(self.n_train, bool) or not isinstance(self.n_train, int) or self.n_train < 1:
            raise InputError(f"n_train must be a positive integer, got {self.n_train!r}")
        if self.position not in POSITIONS:
            raise InputError(f"position must be one of {POSITIONS}, got {self.position!r}")


@dataclass(frozen=True)
class SAEDiscovery:
    """What one run of the SAE method produced.

    Attributes:
        scores: per-head scores (node or edge counts) with time and logit differences.
        sae: the trained (or given) sae-lens SAE.
        positive_codes: ``[item, layer*head]`` codes on the clean prompts.
        negative_codes: ``[item, layer*head]`` codes on the corrupted prompts.
        train_rows: the prompts (indices into positives then negatives) the SAE was trained on;
            empty when the SAE was given.
        seconds: ``{"record": ..., "train": ..., "score": ...}``.
    """

    scores: HeadScores
    sae: object
    positive_codes: Int[Tensor, "item head"]
    negative_codes: Int[Tensor, "item head"]
    train_rows: tuple[int, ...]
    seconds: dict


def sae_discovery(model, contrast: ContrastSet, options: SAEOptions | None = None, *, score: str = "node",
                  batch_size: int = 8, sae=None, model_name: str | None = None,
                  outputs: HeadOutputs | None = None) -> SAEDiscovery:
    """Run the SAE method (module docstring) and score every head.

    Args:
        model: a :class:`~probe.models.LoadedModel`, an HF causal LM or a ``HookedTransformer``.
        contrast: the task's items for that model.
        options: seed, training prompts, position rule and training options.
        score: ``"node"`` or ``"edge"``.
        batch_size: prompts per recording forward.
        sae: an SAE to use instead of training one (checked against the model).
        model_name: recorded in a trained SAE's metadata (default: ``model.name`` where it has one).
        outputs: head outputs recorded before on ``contrast`` with ``options.position`` (a study
            that trains several SAEs records once); their time is then not in ``seconds``.

    Raises:
        InputError: an unknown score, an SAE that does not fit the model, an empty set, a set
            tokenized for another model, a ``batch_size`` below 1.
    """
    options = options or SAEOptions()
    if score not in SCORES:
        raise InputError(f"score must be one of {SCORES}, got {score!r}")
    check_inputs(model, contrast, batch_size=batch_size)  # sizes, an empty set, another tokenizer's ids
    name = model_name or getattr(model, "name", None) or type(getattr(model, "hf", model)).__name__
    start = time.perf_counter()
    if outputs is None:
        outputs = record_head_outputs(model, contrast, position=options.position, batch_size=batch_size)
    elif outputs.position != options.position or len(outputs.positives) != len(contrast):
        raise InputError(f"the recorded head outputs ({len(outputs.positives)} items at position "
                         f"{outputs.position!r}) do not match this run ({len(contrast)} items at "
                         f"{options.position!r}); record them again")
    recorded = time.perf_counter()
    train_rows: tuple[int, ...] = ()
    if sae is None:
        train_rows = training_prompts(2 * len(contrast), options)
        sae = train_sae(_training_rows(outputs, train_rows), options.training, options.seed,
                        metadata=describe(name, outputs, options, contrast.task))
    else:
        check_sae_fits(sae, outputs, name)
    trained = time.perf_counter()
    positive, negative = codes(sae, outputs.positives), codes(sae, outputs.negatives)
    width = int(sae.cfg.d_sae)
    per_head = node_scores(positive, negative) if score == "node" else edge_head_scores(pair_scores(positive, negative, width))
    end = time.perf_counter()
    scores = HeadScores(method="sae" if score == "node" else "sae-edge",
                        scores=per_head.double().reshape(outputs.n_layers, outputs.n_heads), seconds=end - start,
                        clean_logit_diff=outputs.clean_logit_diff, corrupted_logit_diff=outputs.corrupted_logit_diff,
                        forwards=2 * -(-len(contrast) // batch_size))
    return SAEDiscovery(scores=scores, sae=sae, positive_codes=positive, negative_codes=negative, train_rows=train_rows,
                        seconds={"record": recorded - start, "train": trained - recorded, "score": end - trained})


def training_prompts(n_prompts: int, options: SAEOptions) -> tuple[int, ...]:
    """``options.n_train`` distinct prompt indices out of ``n_prompts`` (positives then negatives), seeded."""
    generator = torch.Generator().manual_seed(options.seed)
    chosen = torch.randperm(n_prompts, generator=generator)[: options.n_train]
    return tuple(sorted(int(i) for i in chosen))


def _training_rows(outputs: HeadOutputs, prompts: tuple[int, ...]) -> Float[Tensor, "row d_model"]:
    both = torch.cat([outputs.positives, outputs.negatives])
    return both[list(prompts)].reshape(-1, both.shape[-1])


def describe(model_name: str, outputs: HeadOutputs, options: SAEOptions, task: str) -> dict:
    """The metadata saved with a trained SAE: what it was trained on, and how."""
    return {"model_name": model_name, "hook_name": f"attn head outputs ({outputs.position} over positions)",
            "headscope_n_layers": outputs.n_layers, "headscope_n_heads": outputs.n_heads,
            "headscope_position": outputs.position, "headscope_task": task, "headscope_seed": options.seed,
            "headscope_n_train": options.n_train, **training_metadata(options.training)}


def check_sae_fits(sae, outputs: HeadOutputs, model_name: str) -> None:
    """Refuse an SAE whose input size, recorded model geometry or position rule differs from
    ``outputs``'; warn when only the recorded model name differs (a model loaded by another name
    or from a folder may be the same one)."""
    d_model = outputs.positives.shape[-1]
    meta = sae_metadata(sae)
    trained_on = meta.get("model_name") or "an unknown model"
    fix = f"train one for {model_name} (omit --load-sae, or pass --save-sae DIR to keep it)"
    if int(sae.cfg.d_in) != d_model:
        raise InputError(f"the SAE reads vectors of size {sae.cfg.d_in} (trained on {trained_on}), but "
                         f"{model_name}'s heads write vectors of size {d_model}: {fix}")
    geometry = (meta.get("headscope_n_layers"), meta.get("headscope_n_heads"))
    if None not in geometry and geometry != (outputs.n_layers, outputs.n_heads):
        raise InputError(f"the SAE was trained on {trained_on} ({geometry[0]} layers x {geometry[1]} heads), "
                         f"not on {model_name} ({outputs.n_layers} x {outputs.n_heads}): {fix}")
    if meta.get("model_name") and meta["model_name"] != model_name:
        warnings.warn(f"the SAE was trained on {meta['model_name']!r}, this model is {model_name!r}: same geometry, "
                      "but its codes mean something only if the weights are the same model's", stacklevel=3)
    if meta.get("headscope_position") not in (None, outputs.position):
        raise InputError(f"the SAE was trained on head outputs at position {meta['headscope_position']!r}, "
                         f"this run reads {outputs.position!r}: pass --position {meta['headscope_position']}")
