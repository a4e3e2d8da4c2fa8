"""``headscope circuits discover|score|compare`` end to end on a tiny random Llama saved as a folder,
with a tiny IOI task file: the result file, the behaviour report, ``--only-correct``, the SAE saved
and reused, scoring against a patching reference and a ground-truth file, and component reuse.
(Bad inputs are rows of the shared table, tests/bad_inputs/cases_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuits.discovery.methods import discover
from circuits.discovery.tasks import load_task
from probe.cli import main
from probe.models import load_model
from tests.helpers import tiny_loaded_varied

ITEMS = [  # IOI items as data/ioi.jsonl holds them; the last one's answer is two GPT-2 tokens
    ("After Kevin and Peter arrived at the station, Peter handed a letter to", " Kevin", " Peter", "Anna"),
    ("Then, Sarah and Laura went to the hospital. Sarah gave a bag to", " Laura", " Sarah", "Paul"),
    ("After Sarah and Laura arrived at the hospital, Laura handed a gift to", " Sarah", " Laura", "Mark"),
    ("When John and Mary went to the store, John gave a drink to", " Mary", " John", "Anna"),
    ("Then, Paul and Anna went to the park. Anna gave a ball to", " Paul", " Anna", "Mark"),
    ("When Mark and Lisa went to the office, Lisa gave a pen to", " Mark", " Lisa", "John"),
    ("When Kevin and Xerxesia went to the office, Kevin gave a pen to", " Xerxesia", " Kevin", "Mark"),
]
SAE = ("--epochs", "5", "--sae-width", "32", "--n-train", "4")


def item(prompt: str, answer: str, subject: str, third: str) -> dict:
    second = prompt.rsplit(subject.strip(), 1)
    return {"prompt": prompt, "answer": answer, "subject": subject, "corrupted": third.join(second)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The tiny Llama with unit-scale embeddings (its logit differences vary), saved as an HF folder."""
    loaded = tiny_loaded_varied()
    path = tmp_path_factory.mktemp("tiny-varied")
    loaded.hf.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("task") / "ioi_small.jsonl"
    path.write_text("".join(json.dumps(item(*row)) + "\n" for row in ITEMS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(folder, task_file, tmp_path_factory):
    """``discover`` with EAP, patching, and the SAE method (trained and saved, then reused)."""
    out = tmp_path_factory.mktemp("runs")

    def run(name: str, method: str, *extra: str) -> Path:
        assert main(["circuits", "discover", "--task", "ioi", "--task-file", str(task_file), "--method", method,
                     "--model", str(folder), "--out", str(out / f"{name}.json"), *extra]) == 0
        return out / f"{name}.json"

    return {"eap": run("eap", "eap"), "patching": run("patching", "patching", "--heads-per-forward", "6"),
            "sae": run("sae", "sae-edge", *SAE, "--save-sae", str(out / "sae")),
            "sae_loaded": run("sae_loaded", "sae-edge", "--load-sae", str(out / "sae")),
            "sae_node": run("sae_node", "sae", "--load-sae", str(out / "sae")), "folder": out}


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_discover_writes_every_option_the_behaviour_and_the_scores(runs, folder, task_file):
    record = read(runs["eap"])
    assert (record["task"], record["method"], record["model"]) == ("ioi", "eap", str(folder))
    assert record["task_file"] == str(task_file) and record["geometry"] == {"n_layers": 3, "n_heads": 6}
    assert record["options"]["sae"]["seed"] == 0 and record["options"]["batch_size"] == 8
    assert record["options"]["limit"] is None and record["options"]["only_correct"] is False
    assert record["items"] == {"in_file": 7, "measured": [0, 1, 2, 3, 4, 5], "used": [0, 1, 2, 3, 4, 5]}
    behaviour = record["behaviour"]
    assert behaviour["items"] == 6 and len(behaviour["clean_logit_diff"]) == 6
    assert record["clean_logit_diff"] == pytest.approx(behaviour["mean_clean_logit_diff"], abs=1e-4)
    assert record["forwards"] >= 2 and record["seconds"] > 0
    scores = torch.tensor(record["scores"])
    assert scores.shape == (3, 6) and abs(record["top"][0][2]) == pytest.approx(float(scores.abs().max()))


def test_discover_gives_the_registrys_scores(runs, folder, task_file):
    model = load_model(str(folder))
    contrast = load_task("ioi", model.tokenizer, task_file).contrast
    expected = discover(model, contrast, "eap").scores
    torch.testing.assert_close(torch.tensor(read(runs["eap"])["scores"], dtype=torch.float64), expected.double())


def test_discover_reports_wrong_items_and_drops_them_only_on_request(folder, task_file, tmp_path, capsys):
    out = tmp_path / "eap.json"
    argv = ["circuits", "discover", "--task", "ioi", "--task-file", str(task_file), "--method", "eap",
            "--model", str(folder), "--out", str(out), "--limit", "5"]
    assert main(argv + ["--only-correct"]) == 0
    printed = capsys.readouterr().out
    record = read(out)
    wrong = [record["items"]["measured"][i] for i in record["behaviour"]["wrong"]]
    assert "ioi: 6 of 7 items kept (1 dropped" in printed and "top 10 heads" in printed
    assert f"gets {len(wrong)} of 5 items wrong" in printed and "dropped (--only-correct)" in printed
    assert record["items"]["measured"] == [0, 1, 2, 3, 4] and wrong
    assert record["items"]["used"] == [i for i in range(5) if i not in wrong]
    assert record["options"]["only_correct"] is True and record["options"]["limit"] == 5


def test_sae_saved_then_loaded_gives_identical_scores(runs):
    trained, loaded = read(runs["sae"]), read(runs["sae_loaded"])
    assert (runs["folder"] / "sae" / "cfg.json").is_file()
    assert trained["scores"] == loaded["scores"] and len({v for row in trained["scores"] for v in row}) > 1
    assert trained["sae"]["headscope_n_layers"] == 3 and trained["sae"]["training_epochs"] == 5
    assert loaded["options"]["load_sae"] == str(runs["folder"] / "sae") and loaded["sae"] == trained["sae"]
    assert read(runs["sae_node"])["method"] == "sae"


def test_score_against_a_patching_reference(runs, tmp_path, capsys):
    out = tmp_path / "scored.json"
    assert main(["circuits", "score", "--scores", str(runs["patching"]), str(runs["eap"]), str(runs["sae"]),
                 "--reference", str(runs["patching"]), "--top-k", "4", "--k", "2", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ROC AUC" in printed and "staircase" in printed and "P@4" in printed and "eap (eap.json)" in printed
    record = read(out)
    assert record["truth"]["model"] == read(runs["patching"])["model"] and len(record["truth"]["heads"]) == 4
    patching, eap, sae = record["results"]
    assert patching["roc_auc"] == 1.0 and patching["precision_at_k"]["4"] == 1.0  # the reference is its own top 4
    assert eap["method"] == "eap" and 0 <= eap["roc_auc"] <= 1 and sae["method"] == "sae-edge"
    assert record["ranked_by"] == "|score|"


def test_score_against_a_ground_truth_file(runs, tmp_path, capsys):
    truth = tmp_path / "tiny_ioi.json"
    truth.write_text(json.dumps({"task": "ioi", "model": "tiny", "n_layers": 3, "n_heads": 6, "source": "by hand",
                                 "classes": {"movers": [[2, 4], [1, 1]]},
                                 "ambiguous": [{"head": [0, 0], "reason": "a guess"}]}), encoding="utf-8")
    assert main(["circuits", "score", "--scores", str(runs["eap"]), "--truth", str(truth), "--signed"]) == 0
    printed = capsys.readouterr().out
    assert "2 heads in the circuit, 1 ambiguous (exclude)" in printed and "signed score" in printed


def test_score_refuses_a_result_of_another_task(runs, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**read(runs["eap"]), "task": "colored_objects"}), encoding="utf-8")
    assert main(["circuits", "score", "--scores", str(other), "--reference", str(runs["patching"]),
                 "--threshold", "0.5"]) == 2
    assert "is a result on task 'colored_objects'" in capsys.readouterr().err


def test_compare_reports_shared_heads_overlap_and_rank_correlation(runs, tmp_path, capsys):
    out = tmp_path / "compare.json"
    assert main(["circuits", "compare", str(runs["eap"]), str(runs["patching"]), "--top-k", "4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = read(out)
    shared, only_a, only_b = ({tuple(h) for h in record[key]} for key in ("shared", "only_a", "only_b"))
    heads_a, heads_b = ({tuple(h) for h in record[key]["heads"]} for key in ("a", "b"))
    assert shared == heads_a & heads_b and only_a == heads_a - heads_b and only_b == heads_b - heads_a
    assert record["overlap"] == pytest.approx(len(shared) / len(heads_a | heads_b))
    assert -1 <= record["spearman"] <= 1 and "overlap (shared / union)" in printed and "Spearman" in printed
    assert main(["circuits", "compare", str(runs["eap"]), str(runs["eap"]), "--threshold", "0.5",
                 "--out", str(out)]) == 0
    assert read(out)["overlap"] == 1.0 and read(out)["spearman"] == pytest.approx(1.0)
