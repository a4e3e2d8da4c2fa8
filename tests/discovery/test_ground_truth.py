"""The stored circuits load with the literature's counts, and reference circuits follow their rule."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from circuits.discovery.ground_truth import TASK_FILES, GroundTruth, circuit_from_scores, load_ground_truth

IOI_CLASS_SIZES = {"name_mover": 3, "backup_name_mover": 8, "negative_name_mover": 2, "s_inhibition": 4,
                   "induction": 4, "duplicate_token": 3, "previous_token": 2}


def test_ioi_has_the_26_heads_of_acdc():
    truth = load_ground_truth("ioi")
    assert (truth.model, truth.shape, len(truth.heads)) == ("gpt2-small", (12, 12), 26)
    assert {name: len(heads) for name, heads in truth.classes.items()} == IOI_CLASS_SIZES
    assert truth.classes["name_mover"] == ((9, 9), (10, 0), (9, 6))
    assert truth.class_of((7, 3)) == "s_inhibition" and truth.class_of((11, 3)) is None
    assert set(truth.ambiguous) == {(11, 3), (7, 1), (2, 9), (4, 3), (4, 7), (5, 6), (3, 3), (3, 7), (3, 6)}


def test_greater_than_and_docstring():
    greater = load_ground_truth("greater_than")
    assert greater.model == "gpt2-small" and len(greater.heads) == 9
    assert greater.heads == {(0, 1), (0, 3), (0, 5), (5, 5), (6, 1), (6, 9), (7, 10), (8, 11), (9, 1)}
    assert set(greater.ambiguous) == {(5, 1), (8, 8)}
    docstring = load_ground_truth("docstring")
    assert (docstring.model, docstring.shape) == ("attn-only-4l", (4, 8))  # not GPT-2 small
    assert docstring.heads == {(0, 5), (1, 2), (1, 4), (2, 0), (3, 0), (3, 6)}
    assert set(docstring.ambiguous) == {(0, 2), (0, 4), (1, 0)}


@pytest.mark.parametrize("task", sorted(TASK_FILES))
def test_every_file_is_consistent(task):
    truth = load_ground_truth(task)
    every = truth.heads | set(truth.ambiguous)
    assert all(0 <= layer < truth.n_layers and 0 <= head < truth.n_heads for layer, head in every)
    assert not truth.heads & set(truth.ambiguous)
    assert all(truth.ambiguous.values()) and truth.citations and truth.source
    assert truth.variant == "canonical"


@pytest.mark.parametrize("task, variant, added, removed", [
    ("ioi", "sae_circuits", {(11, 3)}, {(9, 0)}),
    ("greater_than", "hanna_et_al", {(5, 1), (8, 8)}, {(6, 1)}),
    ("docstring", "sae_circuits", {(1, 0)}, {(1, 2)}),
])
def test_variants_swap_heads_between_the_list_and_the_ambiguous(task, variant, added, removed):
    canonical, other = load_ground_truth(task), load_ground_truth(task, variant)
    assert other.heads == (canonical.heads - removed) | added
    assert removed <= set(other.ambiguous) and not added & set(other.ambiguous)
    assert all(variant in other.ambiguous[head] for head in removed)
    assert other.variant == variant and other.source != canonical.source


def test_ground_truth_is_frozen():
    truth = load_ground_truth("ioi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        truth.heads = frozenset()
    with pytest.raises(TypeError):
        truth.classes["name_mover"] = ()


@pytest.mark.parametrize("kwargs, message", [
    ({"heads": frozenset()}, "no heads"),
    ({"heads": frozenset({(2, 0)})}, "outside"),
    ({"heads": frozenset({(0, 0)}), "ambiguous": {(0, 0): "?"}}, "both in the circuit and ambiguous"),
    ({"heads": frozenset({(0, 0)}), "classes": {"a": ((0, 1),)}}, "exactly the circuit's heads"),
    ({"heads": frozenset({(0, 0)}), "n_heads": 0}, "n_heads"),
])
def test_bad_ground_truths(kwargs, message):
    base = {"task": "t", "model": "m", "n_layers": 2, "n_heads": 3}
    with pytest.raises(ValueError, match=message):
        GroundTruth(**{**base, **kwargs})


def test_unknown_task_and_variant():
    with pytest.raises(ValueError, match="unknown ground-truth task"):
        load_ground_truth("colored_objects")
    with pytest.raises(ValueError, match="no variant"):
        load_ground_truth("ioi", "hanna_et_al")


# a 3 x 5 patching result: one strong head, a negative one, a weak one, the rest near zero
PATCHING = torch.tensor([[2.0, 0.1, 0.0, 0.0, 0.0],
                         [0.0, -1.0, 0.0, 0.15, 0.0],
                         [0.5, 0.0, 0.0, 0.0, 0.18]])


def test_relative_threshold_on_magnitudes():
    circuit = circuit_from_scores(PATCHING, task="ioi", model="tiny", threshold=0.1)
    # |score| >= 0.1 * 2.0 = 0.2: 2.0, -1.0 (a negative effect counts) and 0.5
    assert circuit.heads == {(0, 0), (1, 1), (2, 0)} and circuit.shape == (3, 5)
    assert not circuit.ambiguous and "0.1" in circuit.source
    signed = circuit_from_scores(PATCHING, task="ioi", model="tiny", threshold=0.1, absolute=False)
    assert signed.heads == {(0, 0), (2, 0)}


def test_margin_marks_the_heads_just_below_the_cut():
    circuit = circuit_from_scores(PATCHING, task="ioi", model="tiny", threshold=0.1, margin=0.3)
    # the band [0.14, 0.2): 0.15 and 0.18; 0.1 stays a negative
    assert set(circuit.ambiguous) == {(1, 3), (2, 4)}


def test_top_k_includes_ties_and_never_zero_heads():
    assert circuit_from_scores(PATCHING, task="t", model="m", top_k=2).heads == {(0, 0), (1, 1)}
    tied = torch.tensor([[3.0, 1.0], [1.0, 0.0]])
    assert len(circuit_from_scores(tied, task="t", model="m", top_k=2).heads) == 3
    assert circuit_from_scores(tied, task="t", model="m", top_k=4).heads == {(0, 0), (0, 1), (1, 0)}


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one"),
    ({"threshold": 0.1, "top_k": 3}, "exactly one"),
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": 1.5}, "threshold"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 16}, "top_k"),
    ({"top_k": 2, "margin": 1.0}, "margin"),
])
def test_circuit_from_scores_bad_rules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        circuit_from_scores(PATCHING, task="t", model="m", **kwargs)


def test_circuit_from_scores_bad_scores():
    with pytest.raises(ValueError, match="positive score"):
        circuit_from_scores(torch.zeros(2, 3), task="t", model="m", threshold=0.5)
    with pytest.raises(ValueError, match="shape"):
        circuit_from_scores(torch.zeros(6), task="t", model="m", top_k=1)
