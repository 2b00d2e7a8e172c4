"""language/101/sentence-cnn: Kim's CNN learns real sentences, and shows what its filters detect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.config import ConfigError
from deepscape.data import get_dataset
from deepscape.lab import run_lab
from deepscape.labs.language import l101_sentence_cnn
from deepscape.models.glove import load_glove
from deepscape.models.language import load_encoder, word_piece_vectors
from deepscape.models.text import SentenceCNN
from deepscape.runs import RunStore

LAB = "language/101/sentence-cnn"
SENTCLF = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentclf"


def test_a_sentence_gets_the_same_features_however_its_batch_is_padded():
    model = SentenceCNN(vocab_size=30, num_classes=2, filters=8).eval()
    sentence = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0, 0]])
    assert torch.allclose(model.features(sentence), model.features(padded))
    one_word = model.features(torch.tensor([[9]]))  # shorter than the widest filter
    assert one_word.shape == (1, 24) and one_word.isfinite().all()


@pytest.fixture(scope="module")
def mr_runs(tmp_path_factory: pytest.TempPathFactory):
    """The default lab (GloVe fine-tuned, 200 MR sentences) at seeds 0, 1, 2 (~15 s)."""
    store = RunStore(tmp_path_factory.mktemp("sentence-cnn"))
    runs = [
        run_lab(LAB, [f"seed={seed}", "threads=1"], store=store, show_progress=False)
        for seed in (0, 1, 2)
    ]
    return runs, store


def test_the_cnn_learns_movie_reviews_above_chance_on_held_out_sentences(mr_runs):
    runs, _ = mr_runs
    held_out = [(r.summary["metrics"]["test_accuracy"] + r.summary["best"]["val_accuracy"]) / 2
                for r in runs]  # fmt: skip
    # 80 held-out sentences a seed, half positive: chance is 0.5 (measured: ~0.64)
    assert sum(held_out) / len(held_out) >= 0.57, held_out
    assert (runs[0].dir / "tokenizer.json").is_file()
    names = {p.name for p in runs[0].figures()}
    assert {"curves.png", "confusion_matrix.png", "top_phrases.png"} <= names


def test_top_phrases_are_n_grams_of_the_training_sentences(mr_runs):
    runs, _ = mr_runs
    found = runs[0].summary["top_phrases"]
    assert {item["class"] for item in found} == {"negative", "positive"}
    training = " ".join(get_dataset("mr-200").train.texts).lower()
    for item in found:
        width = int(item["filter"].split()[1])
        assert item["phrases"], item
        for phrase, activation in item["phrases"].items():
            assert activation > 0 and len(phrase.split()) <= width
            assert phrase.split()[0] in training


def test_inspect_prints_what_the_filters_detect(mr_runs):
    runs, store = mr_runs
    result = CliRunner().invoke(app, ["inspect", runs[1].id, "--home", str(store.root)])
    assert result.exit_code == 0, result.output
    assert "the phrases that make its filters fire" in result.output
    assert "→ positive" in result.output and "top_phrases.png" in result.output
    as_json = CliRunner().invoke(app, ["inspect", runs[1].id, "--home", str(store.root), "--json"])
    assert json.loads(as_json.stdout)["top_phrases"][0]["phrases"]


def test_inspect_of_a_run_without_weights_names_the_fix(mr_runs):
    runs, store = mr_runs
    runs[2].weights_path.unlink()
    result = CliRunner().invoke(app, ["inspect", runs[2].id, "--home", str(store.root)])
    assert result.exit_code == 2 and "has no weights" in result.output


def test_static_glove_embeddings_stay_glove(store: RunStore):
    run = run_lab(LAB, ["embeddings=glove-static", "epochs=3", "threads=1", "figures=false"],
                  store=store, show_progress=False)  # fmt: skip
    weights = load_file(run.weights_path)["embedding.weight"]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(run.dir / "tokenizer.json"))
    film = tokenizer.token_to_id("film")
    assert torch.allclose(weights[film], torch.from_numpy(load_glove()["film"]))
    assert run.summary["vocabulary"] > get_dataset("mr-200").tokenizer.get_vocab_size()


def test_pretrained_embeddings_move_at_the_embedding_lr_and_random_ones_at_the_full_lr(
    store: RunStore,
):
    def table_after(embeddings: str, embedding_lr: float) -> torch.Tensor:
        overrides = [f"embeddings={embeddings}", f"embedding_lr={embedding_lr}", "epochs=2",
                     "threads=1", "figures=false"]  # fmt: skip
        run = run_lab(LAB, overrides, store=store, show_progress=False)
        return load_file(run.weights_path)["embedding.weight"]

    config = l101_sentence_cnn.Config()
    data = l101_sentence_cnn.sentences_for(config)
    start = l101_sentence_cnn.model_for(config, data).embedding.weight.detach()
    drift = {lr: (table_after("glove-tuned", lr) - start).norm() for lr in (1.0, 0.3)}
    # Adam's steps scale with the LR: the gentle run's vectors travel ~0.3 as far
    assert 0.1 < drift[0.3] / drift[1.0] < 0.5, drift
    assert torch.equal(table_after("random", 0.3), table_after("random", 1.0))


def test_glove_beside_minilm_word_pieces_starts_from_both_tables():
    config = l101_sentence_cnn.Config(embeddings="glove+minilm")
    data = l101_sentence_cnn.sentences_for(config)
    model = l101_sentence_cnn.model_for(config, data)
    table = model.embedding.weight.detach()
    assert table.shape == (data.tokenizer.get_vocab_size(), 50 + 384)
    film = data.tokenizer.token_to_id("film")
    assert torch.allclose(table[film, :50], torch.from_numpy(load_glove()["film"]))
    encoder = load_encoder()
    pieces = encoder.tokenizer("unwatchable", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1  # a word MiniLM splits: its vector is its pieces' average
    piece_table = encoder.transformer.get_input_embeddings().weight.detach()
    (vector,) = word_piece_vectors(["unwatchable"])
    assert torch.allclose(vector, piece_table[pieces].mean(0))
    # MiniLM's half is rescaled to GloVe's size, so neither half drowns the other
    glove_size, piece_size = table[:, :50].norm(dim=1).mean(), table[:, 50:].norm(dim=1).mean()
    assert float(piece_size) == pytest.approx(float(glove_size), rel=1e-3)


def test_bad_widths_and_embedding_lr_are_one_line_errors(store: RunStore):
    with pytest.raises(ConfigError, match="widths='3-x': give filter widths like 3-4-5"):
        run_lab(LAB, ["widths=3-x"], store=store, show_progress=False)
    with pytest.raises(ConfigError, match=re.escape("embedding_lr=-0.3: give a fraction ≥ 0")):
        run_lab(LAB, ["embedding_lr=-0.3"], store=store, show_progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not SENTCLF.is_dir(), reason="needs ../shared/data/sentclf (benchmark data)")
def test_trec_reaches_its_bar(store: RunStore):
    run = run_lab(LAB, ["dataset=trec", f"data_dir={SENTCLF}", "figures=false"], store=store,
                  show_progress=False)  # fmt: skip
    assert run.summary["metrics"]["test_accuracy"] >= 0.90
    assert run.summary["target"]["reached"] is True
