"""The discovery methods by name: one call, :func:`discover`, for the CLI, the dashboard and notebooks.

Context:
    Every method maps a model and a :class:`~circuits.discovery.contrast.ContrastSet` to one
    score per head (:class:`~circuits.discovery.patching.HeadScores`, higher = more in the
    circuit). They differ in cost and in what they need:

    ==================  ==========================================  ===============================
    name                what                                        forwards per item batch
    ==================  ==========================================  ===============================
    patching            corrupted-to-clean activation patching      2 + heads / heads_per_forward
    patching-mean       mean ablation                               3 + heads / heads_per_forward
    eap                 attribution patching                        2 + one backward
    eap-ig              EAP with integrated gradients (inputs)      2 + ig_steps (with backwards)
    sae                 SAE codes, node score (O'Neill & Bui)       2, then an SAE trained on CPU
    sae-edge            SAE codes, co-occurrence ("edge") score     2, then the same SAE
    ==================  ==========================================  ===============================

    The registry is a dict of :class:`Method`; :func:`register_method` adds one (a new method
    needs no change here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.patching import HeadScores
from circuits.discovery.sae_method import SAE_METHODS, SAEOptions
from probe.errors import InputError


@dataclass(frozen=True)
class DiscoveryOptions:
    """The knobs users turn, shared by every method (each reads the ones it uses).

    Attributes:
        batch_size: items per forward (per copy, for patching).
        heads_per_forward: patching: heads patched in one forward.
        ig_steps: EAP-IG: points on the path from corrupted to clean.
        sae: the SAE method's options (seed, width, sparsity, examples, position).
    """

    batch_size: int = 8
    heads_per_forward: int = 16
    ig_steps: int = 5
    sae: SAEOptions = field(default_factory=SAEOptions)


@dataclass(frozen=True)
class Method:
    """A registered discovery method.

    Attributes:
        name: what users type (``--method NAME``).
        summary: one line for help texts and the dashboard's menu.
        run: ``(model, contrast, options) -> HeadScores``.
        seeded: whether the result depends on ``options.sae.seed`` (a study repeats only these).
    """

    name: str
    summary: str
    run: Callable[[object, ContrastSet, DiscoveryOptions], HeadScores]
    seeded: bool = False


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Add ``method`` to the registry (a second one of the same name is refused)."""
    if method.name in _METHODS:
        raise ValueError(f"a discovery method named {method.name!r} is already registered")
    _METHODS[method.name] = method


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


def method(name: str) -> Method:
    """The method called ``name``; :class:`InputError` listing the known ones otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise InputError(f"unknown discovery method {name!r}; choose one of {', '.join(_METHODS)}") from None


def discover(model, contrast: ContrastSet, name: str, options: DiscoveryOptions | None = None) -> HeadScores:
    """Run the method ``name`` on ``contrast`` with ``model`` (HF model, :class:`LoadedModel` or
    ``HookedTransformer``)."""
    return method(name).run(model, contrast, options or DiscoveryOptions())


def _patching(ablation: str):
    def run(model, contrast: ContrastSet, options: DiscoveryOptions) -> HeadScores:
        from circuits.discovery.patching import activation_patching

        return activation_patching(model, contrast, ablation=ablation, batch_size=options.batch_size,
                                   heads_per_forward=options.heads_per_forward)

    return run


def _eap(model, contrast: ContrastSet, options: DiscoveryOptions) -> HeadScores:
    from circuits.discovery.attribution import attribution_patching

    return attribution_patching(model, contrast, batch_size=options.batch_size)


def _eap_ig(model, contrast: ContrastSet, options: DiscoveryOptions) -> HeadScores:
    from circuits.discovery.attribution import eap_ig

    return eap_ig(model, contrast, steps=options.ig_steps, batch_size=options.batch_size)


def _sae(name: str):
    def run(model, contrast: ContrastSet, options: DiscoveryOptions) -> HeadScores:
        from circuits.discovery.sae_method import sae_discovery

        return sae_discovery(model, contrast, options.sae, score=SAE_METHODS[name],
                             batch_size=options.batch_size).scores

    return run


for _method in (
    Method("patching", "activation patching per head, corrupted to clean (the reference)", _patching("corrupted")),
    Method("patching-mean", "activation patching per head, mean ablation", _patching("mean")),
    Method("eap", "attribution patching: one forward and one backward", _eap),
    Method("eap-ig", "attribution patching with integrated gradients over the input embeddings", _eap_ig),
    Method("sae", "SAE codes over head outputs, node score (O'Neill & Bui 2024)", _sae("sae"), seeded=True),
    Method("sae-edge", "SAE codes over head outputs, head-pair co-occurrence score", _sae("sae-edge"), seeded=True),
):
    register_method(_method)
