"""One sparse autoencoder over every head's output, trained as O'Neill & Bui train theirs, kept in sae-lens' format.

Context:
    The SAE method (methods dossier section c) encodes each head's output vector (``d_model``)
    with one small dictionary shared by all heads, trained full-batch on the outputs of a handful
    of prompts. The model is sae-lens' :class:`~sae_lens.StandardSAE`:

        f = ReLU((x - b_dec) W_enc + b_enc),   x_hat = f W_dec + b_dec

    which is the reference's tied pre-encoder/post-decoder bias. Training follows the reference
    (``src/train.py``, ``experiments/main_results.py``):

    - loss ``MSE(x_hat, x) + l1 * mean_rows(||f||_1)`` (MSE averaged over every element);
    - Adam, learning rate ``1e-3``, ``epochs`` full-batch steps (500);
    - dictionary width 200, ``l1`` 0.02 (0.05 for docstring);
    - ``b_dec`` starts at zero (the reference passes no geometric median), ``b_enc`` uniform in
      ``+-1/sqrt(d_model)``, the encoder's and decoder's vectors drawn normal and scaled to unit
      norm;
    - every step keeps the vectors at unit norm: the gradient's component along each vector is
      removed before the step, and the vector is renormalised after it.

    Deviation, named: the reference constrains its decoder matrix ``[d_model, width]`` along the
    width axis, i.e. each *input dimension's* row, not each dictionary vector (its layer class
    normalises the last axis of every weight it wraps). We keep each dictionary vector (a row of
    sae-lens' ``W_dec``, ``[width, d_model]``) at unit norm, as the dossier and sae-lens do; the
    encoder's feature vectors (columns of ``W_enc``) are unit norm as in the reference.

Files:
    :func:`save_sae` writes sae-lens' own layout (``cfg.json`` and ``sae_weights.safetensors``
    in a folder), so ``sae_lens.SAE.load_from_disk(folder)`` opens it. What headscope needs to
    check that a file fits a model (the model's name, layers and heads, the position rule, the
    seed and the training options) travels in the config's ``metadata``. The folder is written
    beside its final place and renamed into it, so a kill leaves either the old SAE or the new.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from probe.errors import InputError


@dataclass(frozen=True)
class SAETraining:
    """How the SAE is trained (defaults: the reference's IOI and greater-than runs).

    Attributes:
        width: dictionary size (the reference's ``num_unique``).
        l1: weight of the sparsity term.
        lr: Adam's learning rate.
        epochs: full-batch steps.
    """

    width: int = 200
    l1: float = 0.02
    lr: float = 1e-3
    epochs: int = 500

    def __post_init__(self) -> None:
        for name in ("width", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"SAE {name} must be a positive integer, got {value!r}")
        for name in ("l1", "lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (name == "lr" and not value):
                raise InputError(f"SAE {name} must be a finite number{' above' if name == 'lr' else ' >='} 0, "
                                 f"got {value!r}")


def new_sae(d_in: int, width: int, generator: torch.Generator, metadata: dict | None = None):
    """A sae-lens ``StandardSAE`` initialised as the reference initialises its autoencoder."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    cfg = StandardSAEConfig(d_in=d_in, d_sae=width, apply_b_dec_to_input=True,
                            metadata=SAEMetadata(**(metadata or {})))
    sae = StandardSAE(cfg)
    bound = 1 / math.sqrt(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(_unit(torch.randn(d_in, width, generator=generator), dim=0))
        sae.W_dec.copy_(_unit(torch.randn(width, d_in, generator=generator), dim=1))
        sae.b_enc.copy_(torch.rand(width, generator=generator) * 2 * bound - bound)
        sae.b_dec.zero_()
    return sae


def train_sae(rows: Float[Tensor, "row d_model"], training: SAETraining, seed: int, metadata: dict | None = None):
    """Train a fresh SAE on ``rows`` full-batch (module docstring); deterministic for a seed."""
    if rows.ndim != 2 or len(rows) == 0:
        raise InputError(f"SAE training needs a [row, d_model] matrix with rows, got shape {tuple(rows.shape)}")
    generator = torch.Generator().manual_seed(seed)
    sae = new_sae(rows.shape[1], training.width, generator, metadata)
    rows = rows.float()
    optimizer = torch.optim.Adam([sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec], lr=training.lr)
    with torch.enable_grad():
        for _ in range(training.epochs):
            optimizer.zero_grad()
            loss = sae_loss(sae, rows, training.l1)
            loss.backward()
            _remove_radial_gradients(sae)
            optimizer.step()
            _renormalise(sae)
    sae.eval()
    return sae


def sae_loss(sae, rows: Float[Tensor, "row d_model"], l1: float) -> Tensor:
    """``MSE(x_hat, x) + l1 * mean_rows(||f||_1)``, the reference's loss."""
    features = sae.encode(rows)
    recon = sae.decode(features)
    return torch.nn.functional.mse_loss(recon, rows) + l1 * features.abs().sum(1).mean()


def _unit(x: Tensor, dim: int) -> Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp_min(1e-12)


def _remove_radial_gradients(sae) -> None:
    """Drop the gradient's component along each unit vector, so a plain step would keep its norm."""
    for weight, dim in ((sae.W_enc, 0), (sae.W_dec, 1)):
        if weight.grad is not None:
            weight.grad -= (weight.grad * weight).sum(dim, keepdim=True) * weight


def _renormalise(sae) -> None:
    with torch.no_grad():
        sae.W_enc.copy_(_unit(sae.W_enc, dim=0))
        sae.W_dec.copy_(_unit(sae.W_dec, dim=1))


def save_sae(sae, folder: str | Path) -> Path:
    """Write ``sae`` in sae-lens' layout to ``folder`` (replaced whole, atomically)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder: an SAE is saved as a folder; pick another path")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        sae.save_model(staging)
        old = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_sae(folder: str | Path):
    """An SAE saved by :func:`save_sae` (or any sae-lens SAE folder), through sae-lens' loader."""
    from sae_lens import SAE

    folder = Path(folder)
    if not (folder / "cfg.json").is_file():
        raise InputError(f"{folder} is not an SAE folder (no cfg.json); pass the folder written by "
                         "`headscope circuits discover --method sae --save-sae DIR`")
    return SAE.load_from_disk(folder)


def sae_metadata(sae) -> dict:
    """The ``metadata`` of an SAE's config as a plain dict (empty where it has none)."""
    meta = getattr(sae.cfg, "metadata", None)
    if meta is None:
        return {}
    return dict(meta.__dict__) if not hasattr(meta, "to_dict") else dict(meta.to_dict())


def training_metadata(training: SAETraining) -> dict:
    return {f"training_{k}": v for k, v in asdict(training).items()}
