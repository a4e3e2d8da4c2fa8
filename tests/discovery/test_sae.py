"""The SAE method: head outputs, training, codes, node and edge scores, sae-lens files, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from circuits.discovery.head_outputs import head_output_matrices, record_head_outputs
from circuits.discovery.heads import head_geometry
from circuits.discovery.methods import DiscoveryOptions, discover
from circuits.discovery.sae_codes import dense_pair_scores, edge_head_scores, node_scores, pair_scores
from circuits.discovery.sae_method import SAEOptions, sae_discovery, training_prompts
from circuits.discovery.sae_train import SAETraining, load_sae, sae_metadata, save_sae, train_sae
from probe.errors import InputError
from probe.models.families import family_of
from tests.discovery.planting import PLANTED, planted_contrast, planted_model
from tests.helpers import tiny_loaded

FAST = SAETraining(epochs=300)


@pytest.fixture(scope="module")
def isolated():
    """The planted model in which only the planted head reads the cue (planting.py)."""
    return planted_model(isolate=True, strength=5.0), planted_contrast(padded=True, n_pairs=6)


@pytest.mark.parametrize("position", ["mean", "last"])
@pytest.mark.parametrize("score", ["node", "edge"])
@pytest.mark.parametrize("seed", [0, 1])
def test_planted_head_ranks_first(isolated, position, score, seed):
    loaded, contrast = isolated
    result = sae_discovery(loaded, contrast, SAEOptions(seed=seed, position=position, training=FAST), score=score)
    scores = result.scores.scores
    assert scores.shape == (3, 6)
    top = scores.flatten().sort(descending=True).values
    assert divmod(int(scores.argmax()), 6) == PLANTED and top[0] > top[1], scores
    assert len(result.train_rows) == 10 and result.scores.gap > 0


def test_other_methods_rank_the_isolated_plant_first(isolated):
    loaded, contrast = isolated
    for name in ("patching", "eap", "eap-ig"):
        scores = discover(loaded, contrast, name, DiscoveryOptions(batch_size=6)).scores
        assert divmod(int(scores.argmax()), 6) == PLANTED, name


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_head_outputs_sum_to_the_attention_output(arch):
    """Per-head results summed over heads equal the output projection's output (minus its bias)."""
    loaded = tiny_loaded(arch)
    contrast = planted_contrast(padded=True)
    hf = loaded.hf
    seen = []
    handles = [proj.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
               for proj in family_of(hf).output_projections(hf)]
    try:
        outputs = record_head_outputs(loaded, contrast, position="last", batch_size=len(contrast))
    finally:
        for h in handles:
            h.remove()
    n_layers, n_heads, _ = head_geometry(hf)
    projections = family_of(hf).output_projections(hf)
    for layer in range(n_layers):
        bias = getattr(projections[layer], "bias", None)
        expected = seen[layer][:, -1] - (0 if bias is None else bias.detach())  # clean pass comes first
        got = outputs.positives[:, layer * n_heads : (layer + 1) * n_heads].sum(1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_mean_position_leaves_out_padding():
    loaded = tiny_loaded("llama")
    contrast = planted_contrast(padded=True)
    batched = record_head_outputs(loaded, contrast, position="mean", batch_size=len(contrast))
    for i in range(len(contrast)):
        keep = contrast.attention_mask[i].bool()
        single = type(contrast)(task="one", clean=contrast.clean[i : i + 1, keep],
                                corrupted=contrast.corrupted[i : i + 1, keep],
                                attention_mask=contrast.attention_mask[i : i + 1, keep],
                                answer=contrast.answer[i : i + 1], contrast=contrast.contrast[i : i + 1], texts=("x",))
        alone = record_head_outputs(loaded, single, position="mean")
        torch.testing.assert_close(batched.positives[i], alone.positives[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", ["mean", "last"])
def test_batches_of_mixed_lengths_give_one_batch_outputs(position):
    """Items of 5 to 7 tokens, left-padded, recorded 2 and 4 at a time: the same as all at once."""
    loaded = tiny_loaded("llama")
    contrast = planted_contrast(padded=True, n_pairs=4)
    whole = record_head_outputs(loaded, contrast, position=position, batch_size=len(contrast))
    for size in (2, 4):
        parts = record_head_outputs(loaded, contrast, position=position, batch_size=size)
        torch.testing.assert_close(parts.positives, whole.positives, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(parts.negatives, whole.negatives, atol=1e-5, rtol=1e-4)
        assert abs(parts.clean_logit_diff - whole.clean_logit_diff) < 1e-4


def test_transformer_lens_gives_the_hf_head_outputs(tiny_folder):
    from probe.models.loading import load_model

    loaded = load_model(str(tiny_folder))
    contrast = planted_contrast(padded=True)
    hf = record_head_outputs(loaded, contrast)
    lens = record_head_outputs(loaded.lens(), contrast)
    torch.testing.assert_close(lens.positives, hf.positives, atol=2e-5, rtol=1e-3)
    assert [tuple(w.shape) for w in head_output_matrices(loaded.lens())] == \
        [tuple(w.shape) for w in head_output_matrices(loaded.hf)]


def test_node_scores_by_hand():
    positive = torch.tensor([[0, 1, 2], [0, 3, 2], [0, 1, 5]])
    negative = torch.tensor([[0, 1, 2], [4, 1, 2], [0, 1, 2]])
    # head 0: {0} - {0, 4} = {}; head 1: {1, 3} - {1} = {3}; head 2: {2, 5} - {2} = {5}
    assert node_scores(positive, negative).tolist() == [0, 1, 1]


def test_pair_scores_by_hand():
    positive = torch.tensor([[0, 1], [1, 1]])
    negative = torch.tensor([[0, 1]])
    # pairs (0, 1): positive code pairs {(0, 1), (1, 1)}, negative {(0, 1)} -> 1; same for (1, 0)
    assert pair_scores(positive, negative, width=2).tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("examples,heads,width", [(5, 4, 3), (9, 7, 5), (13, 3, 11)])
def test_sparse_pair_count_equals_the_dense_one(examples, heads, width):
    generator = torch.Generator().manual_seed(examples * heads)
    positive = torch.randint(0, width, (examples, heads), generator=generator)
    negative = torch.randint(0, width, (examples + 2, heads), generator=generator)
    assert torch.equal(pair_scores(positive, negative, width), dense_pair_scores(positive, negative, width))


def test_edge_head_scores_count_endpoints_of_the_top_pairs():
    pairs = torch.tensor([[0, 5, 1], [5, 0, 0], [1, 0, 0]])
    # sorted (stable): (0,1)=5, (1,0)=5, (0,2)=1, (2,0)=1, then zeros; k = 9 // 2 = 4 endpoints
    assert edge_head_scores(pairs).tolist() == [2, 2, 0]
    assert edge_head_scores(pairs, k=8).tolist() == [4, 2, 2]


def test_training_is_seeded_and_keeps_unit_vectors(isolated):
    loaded, contrast = isolated
    outputs = record_head_outputs(loaded, contrast)
    rows = outputs.positives.reshape(-1, outputs.positives.shape[-1])[:60]
    first, again = (train_sae(rows, SAETraining(width=16, epochs=40), seed=3) for _ in range(2))
    other = train_sae(rows, SAETraining(width=16, epochs=40), seed=4)
    assert torch.equal(first.W_enc, again.W_enc) and not torch.equal(first.W_enc, other.W_enc)
    torch.testing.assert_close(first.W_dec.norm(dim=1), torch.ones(16))
    torch.testing.assert_close(first.W_enc.norm(dim=0), torch.ones(16))
    chosen = training_prompts(24, SAEOptions(seed=5, n_train=10))
    assert len(set(chosen)) == 10 and all(0 <= i < 24 for i in chosen)
    assert chosen == training_prompts(24, SAEOptions(seed=5, n_train=10)) != training_prompts(24, SAEOptions(seed=6))


def test_training_lowers_the_loss(isolated):
    from circuits.discovery.sae_train import new_sae, sae_loss

    loaded, contrast = isolated
    rows = record_head_outputs(loaded, contrast).positives.reshape(-1, 84)[:100]
    trained = train_sae(rows, SAETraining(width=32, epochs=200), seed=0)
    untrained = new_sae(84, 32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(sae_loss(trained, rows, 0.02)) < 0.5 * float(sae_loss(untrained, rows, 0.02))


def test_saved_sae_opens_with_sae_lens_and_scores_the_same(isolated, tmp_path):
    from sae_lens import SAE

    loaded, contrast = isolated
    options = SAEOptions(seed=2, training=SAETraining(epochs=100))
    first = sae_discovery(loaded, contrast, options)
    folder = save_sae(first.sae, tmp_path / "sae")
    reopened = SAE.load_from_disk(folder)  # sae-lens' own loader
    assert type(reopened).__name__ == "StandardSAE"
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert torch.equal(getattr(reopened, name), getattr(first.sae, name))
    meta = sae_metadata(reopened)
    assert meta["model_name"] == "tiny" and meta["headscope_seed"] == 2 and meta["headscope_n_heads"] == 6
    assert json.loads((folder / "cfg.json").read_text())["d_sae"] == 200
    again = sae_discovery(loaded, contrast, options, sae=load_sae(folder))
    assert torch.equal(again.scores.scores, first.scores.scores) and again.train_rows == ()
    save_sae(first.sae, folder)  # replacing a saved SAE leaves one folder, no staging left over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_an_sae_from_another_model_is_refused(isolated, tmp_path):
    loaded, contrast = isolated
    trained = sae_discovery(loaded, contrast, SAEOptions(training=SAETraining(epochs=5))).sae
    gpt2 = tiny_loaded("gpt2")
    with pytest.raises(InputError, match="trained on tiny"):
        sae_discovery(gpt2, planted_contrast(padded=True), sae=trained)
    with pytest.raises(InputError, match="position"):
        sae_discovery(loaded, contrast, SAEOptions(position="last"), sae=trained)
    with pytest.raises(InputError, match="not an SAE folder"):
        load_sae(tmp_path)
    with pytest.warns(UserWarning, match="trained on 'tiny', this model is 'other'"):
        sae_discovery(loaded, contrast, sae=trained, model_name="other")


@pytest.mark.parametrize("make,word", [
    (lambda: SAEOptions(position="first"), "position"),
    (lambda: SAEOptions(n_train=0), "n_train"),
    (lambda: SAEOptions(seed=1.5), "seed"),
    (lambda: SAETraining(width=0), "width"),
    (lambda: SAETraining(l1=-1.0), "l1"),
    (lambda: SAETraining(lr=0.0), "lr"),
])
def test_bad_options(make, word):
    with pytest.raises(InputError, match=word):
        make()


def test_unknown_score_and_method(isolated):
    loaded, contrast = isolated
    with pytest.raises(InputError, match="score"):
        sae_discovery(loaded, contrast, score="vertex")
    with pytest.raises(InputError, match="unknown discovery method"):
        discover(loaded, contrast, "acdc")
