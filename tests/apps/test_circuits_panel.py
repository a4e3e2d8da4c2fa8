"""The circuits panel without a browser: its pure run function and its callback functions.

The tiny random model (GPT-2 tokenizer, 3 x 5 heads) runs the real tasks; the planted model of
the discovery tests (head ``PLANTED`` alone reads the cue) checks that the circuit and its SAE
edges are the expected ones. SAEs train for :data:`EPOCHS` epochs so the module runs in seconds.
"""

from __future__ import annotations

from collections import Counter

import pytest

from apps.heads_dashboard.app import create_app
from apps.heads_dashboard.layout import ID
from apps.heads_dashboard.panels.circuits import CID, CircuitsBench, ablation_view, circuit_elements, circuits_view, method_options
from apps.heads_dashboard.settings import DashboardSettings
from apps.heads_dashboard.state import ModelHolder
from apps.heads_dashboard.workbench import Workbench
from circuits.discovery.circuit_run import circuit_edges, circuit_run, run_circuit_panel
from circuits.discovery.methods import DiscoveryOptions, method_names
from circuits.discovery.sae_codes import pair_scores
from circuits.discovery.sae_method import SAEOptions, sae_discovery
from circuits.discovery.sae_train import SAETraining
from circuits.discovery.tasks import task_names
from tests.discovery.planting import PLANTED, planted_contrast, planted_model
from tests.helpers import one_torch_thread

EPOCHS = 50
OPTIONS = DiscoveryOptions(sae=SAEOptions(training=SAETraining(epochs=EPOCHS)))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _bench(model) -> CircuitsBench:
    holder = ModelHolder(model.name, lambda _: model).start()
    assert holder.wait(30).state == "ready"
    return CircuitsBench(Workbench(DashboardSettings(), holder), OPTIONS)


@pytest.fixture(scope="module")
def bench(tiny) -> CircuitsBench:
    return _bench(tiny)


@pytest.fixture(scope="module")
def planted_isolated():
    """The planted model in which only the planted head reads the cue (as tests/discovery/test_sae.py)."""
    return planted_model(isolate=True, strength=5.0), planted_contrast(padded=True, n_pairs=6)


def test_the_page_holds_the_panel_and_no_id_twice(tiny):
    app = create_app(DashboardSettings(model="tiny"), loader=lambda _: tiny)
    components, ids = {}, []
    for component in (app.layout, *app.layout._traverse()):
        if getattr(component, "id", None) is not None:
            ids.append(component.id)
            components[component.id] = component
    assert [i for i, count in Counter(ids).items() if count > 1] == []
    panel_ids = {value for name, value in vars(CID).items() if name.isupper()}
    assert panel_ids <= set(ids) and ID.GRID in ids
    assert components[CID.TASK].options == list(task_names()) and components[CID.TASK].value == "ioi"
    assert [o["value"] for o in components[CID.METHOD].options] == list(method_names())
    assert all(o["label"].startswith(o["value"] + ": ") for o in components[CID.METHOD].options)
    assert (components[CID.ITEMS].value, components[CID.K].value, components[CID.EDGES].value) == (16, 8, [])
    assert "edges from SAE codes (extra time)" in components[CID.EDGES].options[0]["label"]
    wired = " ".join(app.callback_map)
    assert all(i in wired for i in (CID.SCORES, CID.GRAPH_BOX, CID.MESSAGE, CID.ABLATION, CID.ABLATION_MESSAGE))


def test_a_run_on_a_task_gives_scores_a_circuit_of_k_heads_and_no_edges(tiny):
    run = run_circuit_panel(tiny, "ioi", "eap", 6, 4, options=OPTIONS)
    assert run.shape == (3, 5) and len(run.contrast) == 6 and run.task == "ioi"
    assert len(run.circuit) == 4 == len(set(run.circuit))
    magnitudes = run.scores.scores.abs()
    assert [float(magnitudes[h]) for h in run.circuit] == sorted(magnitudes.flatten().tolist(), reverse=True)[:4]
    assert run.edges == () and run.edge_source == "none"
    assert len(run.behaviour.clean_top) == 6 and "ioi:" in run.task_summary
    elements = circuit_elements(run)
    nodes = [e for e in elements if "position" in e]
    assert len(nodes) == len(elements) == 4
    assert {(n["position"]["y"], n["position"]["x"]) for n in nodes} == {(l * 90, h * 90) for l, h in run.circuit}


def test_the_sae_method_gives_edges_from_its_own_codes(planted_isolated):
    model, contrast = planted_isolated
    run = circuit_run(model, contrast, "sae", 3, options=OPTIONS)
    assert run.shape == (model.geometry.n_layers, model.geometry.n_heads) and run.edge_source == "method"
    assert run.circuit[0] == PLANTED and len(run.circuit) == 3
    found = sae_discovery(model, contrast, OPTIONS.sae)  # the same seed: the same SAE and codes
    pairs = pair_scores(found.positive_codes, found.negative_codes, int(found.sae.cfg.d_sae))
    assert run.edges == circuit_edges(run.circuit, pairs, model.geometry.n_heads) and run.edges
    assert all(PLANTED in (e.source, e.target) and e.weight > 0 for e in run.edges)  # only it tells clean from corrupted
    edges = [e for e in circuit_elements(run) if "source" in e["data"]]
    assert len(edges) == len(run.edges) and {e["data"]["weight"] for e in edges} == {e.weight for e in run.edges}


def test_other_methods_draw_sae_edges_only_when_asked(planted_isolated):
    model, contrast = planted_isolated
    plain = circuit_run(model, contrast, "patching", 3, options=OPTIONS)
    extra = circuit_run(model, contrast, "patching", 3, sae_edges=True, options=OPTIONS)
    assert plain.circuit[0] == PLANTED == extra.circuit[0] and plain.circuit == extra.circuit
    assert plain.edges == () and plain.edge_source == "none"
    assert extra.edge_source == "extra" and extra.edges and all(PLANTED in (e.source, e.target) for e in extra.edges)


def test_the_callback_shows_the_run_and_the_ablation(bench):
    scores, behaviour, graph, note, line, stored, message = circuits_view(bench, "ioi", "sae", 6, 3, 0, [])
    assert message == ""
    assert list(scores.data[0].z) and len(scores.data[0].z) == 3 and len(scores.layout.shapes) == 3
    assert "behaviour on ioi (6 items)" in str(behaviour) and "clean prompts it gets wrong" in str(behaviour)
    assert graph.id == CID.GRAPH and len([e for e in graph.elements if "position" in e]) == 3
    assert note.startswith("edges: SAE code co-occurrence") and "the method's own SAE" in note
    assert line.startswith("circuit: the top 3 heads") and stored["heads"] and stored["n_items"] == 6
    table, message = ablation_view(bench, stored, 1)
    assert message == ""
    shown = str(table)
    assert "the circuit" in shown and "every other head" in shown and "3 random heads (seed 1)" in shown
    assert shown.count("→") == 6  # logit difference and accuracy, before → after, in three rows
    *_, note, _, _, message = circuits_view(bench, "ioi", "eap", 6, 3, 0, [])
    assert message == "" and note.startswith("no edges: eap scores heads only")


BAD_INPUT = [
    ({"task": "nope"}, "unknown task 'nope'"),
    ({"method_name": "magic"}, "unknown discovery method 'magic'"),
    ({"n_items": 0}, "items must be a whole number from 1 to"),
    ({"k": 2.5}, "circuit size k must be a whole number"),
    ({"k": 16}, "the circuit size k (16) exceeds the model's 15 heads"),
    ({"seed": -1}, "seed must be a whole number"),
]


class _ForbiddenLock:
    """Stands in for the model lock: taking it fails the test (bad input must be refused first)."""

    def __enter__(self):
        raise AssertionError("the model lock was taken")

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(("changes", "expected"), BAD_INPUT, ids=[row[1][:30] for row in BAD_INPUT])
def test_bad_input_is_one_line_before_the_model_lock(tiny, monkeypatch, changes, expected):
    bench = _bench(tiny)
    monkeypatch.setattr(bench.workbench.holder, "lock", _ForbiddenLock())
    values = {"task": "ioi", "method_name": "eap", "n_items": 4, "k": 3, "seed": 0, "edges": [], **changes}
    scores, behaviour, graph, note, line, stored, message = circuits_view(bench, **values)
    assert expected in message and "\n" not in message and "Traceback" not in message
    assert "internal error" not in message
    assert (behaviour, graph, note, line, stored) == ("", "", "", "", "")
    assert message in scores.layout.annotations[0].text


def test_ablation_without_a_run_is_a_message(bench):
    table, message = ablation_view(bench, None, 0)
    assert table == "" and "press run first" in message


def test_the_method_menu_lists_every_method():
    assert len(method_options()) == len(method_names())
