"""language/101/word-meaning: corpus and evaluation readers, tokenizer, skip-gram, the whole lab."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.data.corpus import (
    google_analogies,
    load_corpus,
    read_text,
    simlex999,
    token_stream,
    wordsim353,
)
from deepscape.data.text import word_tokenizer
from deepscape.lab import run_lab
from deepscape.loop import Loop
from deepscape.models.word_vectors import (
    NoiseSampler,
    SkipGram,
    analogy_accuracy,
    context_pairs,
    keep_probability,
    similarity_rho,
    unit_rows,
)
from deepscape.runs import Run

LAB = "language/101/word-meaning"


def test_evaluation_sets_have_their_published_sizes():
    assert len(wordsim353()) == 353 and wordsim353()[0] == ("love", "sex", 6.77)
    assert len(simlex999()) == 999
    questions = google_analogies()
    assert len(questions) == 19_544
    assert questions[0] == ("capital-common-countries", "athens", "greece", "baghdad", "iraq")
    assert sum(q[0].startswith("gram") for q in questions) == 10_675  # syntactic


def test_tokenizer_round_trip_and_the_word_stream():
    tokenizer = word_tokenizer(["The cat sat on the mat.", "The dog sat, the cat ran."])
    encoded = tokenizer.encode("the cat sat on the mat", add_special_tokens=False)
    assert tokenizer.decode(encoded.ids) == "the cat sat on the mat"
    unseen = tokenizer.encode("the zebra sat", add_special_tokens=False).ids
    assert unseen[1] == 1 and tokenizer.decode(unseen, skip_special_tokens=False) == (
        "the [UNK] sat"
    )
    # the stream keeps words only (no punctuation, no [UNK]) and numbers documents
    ids, documents = token_stream(tokenizer, ["The cat sat.", "A zebra, the dog!"])
    words = [tokenizer.id_to_token(int(i)) for i in ids]
    assert words == ["the", "cat", "sat", "the", "dog"]
    assert documents.tolist() == [0, 0, 0, 1, 1]


def test_corpora_read_files_folders_and_labels(tmp_path: Path):
    (tmp_path / "a.txt").write_text("1 a stirring , funny film\n0 a dull one\n1\n")
    (tmp_path / "b.csv").write_text('"3","Title here","and a description"\n')
    (tmp_path / ".hidden").write_text("never read\n")
    assert read_text(tmp_path, strip_labels=True) == [
        "a stirring , funny film",
        "a dull one",
        "",  # a label alone
        "Title here and a description",
    ]
    corpus = load_corpus("file", tmp_path, max_words=6)
    assert corpus.words == 6 and corpus.name == tmp_path.name
    assert load_corpus("lee").words == 59_890  # gensim's lee_background.cor, 300 documents
    (tmp_path / "long.txt").write_text(" ".join(["word"] * 25_000))  # text8 is one long line
    long = load_corpus("file", tmp_path / "long.txt")
    assert [len(d.split()) for d in long.documents] == [10_000, 10_000, 5_000]


def test_empty_or_missing_corpus_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataUnavailable, match="holds no text") as error:
        load_corpus("file", tmp_path / "empty.txt")
    assert "\n" not in str(error.value)
    with pytest.raises(DataUnavailable, match="data_dir="):
        load_corpus("file", None)
    with pytest.raises(DataUnavailable, match="neither a file nor a folder"):
        load_corpus("file", tmp_path / "nowhere")


def test_context_pairs_stay_in_their_document():
    ids = torch.arange(6)
    documents = torch.tensor([0, 0, 0, 1, 1, 1])
    centre, context = context_pairs(ids, documents, window=5, generator=torch.Generator())
    assert len(centre) > 0
    assert ((centre < 3) == (context < 3)).all()  # no pair crosses into the other document
    assert (centre != context).all()


def test_subsampling_and_noise_follow_word2vec():
    counts = torch.tensor([0, 0, 1000, 10, 1])
    keep = keep_probability(counts, 1e-2)  # words seen more than ~1 % of the time are thinned
    assert keep[3] == keep[4] == 1.0
    assert keep[2] == pytest.approx((np.sqrt(1000 / 10.11) + 1) * 10.11 / 1000)  # ≈ 0.11
    noise = NoiseSampler(counts)
    expected = counts.double() ** 0.75 / (counts.double() ** 0.75).sum()
    assert torch.allclose(noise.probabilities, expected)
    draws = noise((20_000,), torch.Generator().manual_seed(0))
    assert set(draws.tolist()) <= {2, 3, 4}
    share = (draws == 3).double().mean()  # 10^0.75 / (1000^0.75 + 10^0.75 + 1) ≈ 0.031
    assert abs(share - expected[3]) < 0.01


@pytest.fixture
def one_thread():
    """Small ops in many threads stall on a busy machine: the lab's default, one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_skipgram_on_lee_pulls_related_words_together(one_thread):
    """Days of the week and small numbers share contexts in the news: after four passes over lee
    their vectors are closer to each other than random word pairs are (not so at init: 0)."""
    torch.manual_seed(0)
    corpus = load_corpus("lee")
    tokenizer = word_tokenizer(corpus.documents, min_count=5)
    ids, documents = token_stream(tokenizer, corpus.documents)
    counts = torch.bincount(ids, minlength=tokenizer.get_vocab_size())
    model = SkipGram(vocab_size=len(counts), dim=50)
    groups = [
        ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
        ["two", "three", "four", "five", "six", "seven"],
    ]
    related = [p for g in groups for p in itertools.combinations(g, 2)]
    vocabulary = tokenizer.get_vocab()
    rng = np.random.default_rng(0)
    words = [w for w, i in vocabulary.items() if counts[i] > 0]
    unrelated = [tuple(rng.choice(words, 2, replace=False)) for _ in range(300)]

    def mean_cosine(pairs) -> float:
        unit = unit_rows(model.inputs.weight.detach().numpy())
        return float(np.mean([unit[vocabulary[a]] @ unit[vocabulary[b]] for a, b in pairs]))

    before = mean_cosine(related) - mean_cosine(unrelated)
    generator = torch.Generator().manual_seed(0)
    keep, noise = keep_probability(counts, 1e-3), NoiseSampler(counts)
    adam = torch.optim.SparseAdam(model.parameters(), lr=0.01)
    for _ in range(4):
        kept = torch.rand(len(ids), generator=generator) < keep[ids]
        centre, context = context_pairs(ids[kept], documents[kept], window=5, generator=generator)
        order = torch.randperm(len(centre), generator=generator)
        for batch in order[: len(order) // 2000 * 2000].split(2000):  # noise shared by 10 pairs
            loss = model(centre[batch], context[batch], noise((200, 5), generator))
            loss.sum().backward()
            adam.step()
            adam.zero_grad()
    after = mean_cosine(related) - mean_cosine(unrelated)
    assert abs(before) < 0.05
    assert after > 0.1, f"related − unrelated cosine {after:.3f}"  # 0.17 when written


def test_similarity_and_analogy_scores_on_hand_made_vectors():
    from deepscape.models.glove import WordVectors

    vectors = WordVectors(
        words=["king", "queen", "man", "woman", "apple"],
        vectors=np.array([[1, 1, 0], [1, 0.8, 0], [0, 1, 0.1], [0, 0.8, 0.1], [0, 0, 1]], "f"),
    )
    pairs = [("king", "queen", 8.0), ("man", "woman", 7.0), ("king", "apple", 1.0)]
    rho, known = similarity_rho(vectors, [*pairs, ("king", "zebra", 5.0)])
    assert known == pairs  # a pair with an unknown word is left out
    assert rho == pytest.approx(0.5)  # the cosines rank man/woman first, people king/queen
    accuracy, asked = analogy_accuracy(
        vectors, [("s", "man", "king", "woman", "queen"), ("s", "man", "king", "woman", "zebra")]
    )
    assert (accuracy, asked) == (1.0, 1)


def test_bad_options_are_one_line_errors_naming_the_fix(store):
    with pytest.raises(ConfigError, match=r"'kingg' is not in the vocabulary.*did you mean 'king'"):
        run_lab(LAB, ["analogies=kingg-man+woman"], store=store, show_progress=False)
    with pytest.raises(ConfigError, match=r"is not a-b\+c"):
        run_lab(LAB, ["analogies=king-man"], store=store, show_progress=False)
    with pytest.raises(ConfigError, match="data_dir= is read with corpus=file"):
        run_lab(LAB, ["data_dir=somewhere"], store=store, show_progress=False)
    with pytest.raises(ConfigError, match="not a float"):
        run_lab(LAB, ["sample=often"], store=store, show_progress=False)
    assert store.list() == []  # bad input leaves no run behind


def test_empty_corpus_file_fails_the_run_with_one_line(store, tmp_path: Path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataUnavailable, match="holds no text"):
        run_lab(
            LAB, ["corpus=file", f"data_dir={tmp_path / 'empty.txt'}"], store=store,
            show_progress=False,
        )  # fmt: skip
    rare = tmp_path / "rare.txt"
    rare.write_text("every word here appears once\n")
    with pytest.raises(DataUnavailable, match="lower min_count"):
        run_lab(LAB, ["corpus=file", f"data_dir={rare}"], store=store, show_progress=False)


def test_a_short_run_of_the_lab(store):
    run = run_lab(
        LAB,
        ["epochs=3", "threads=1", "neighbours=police", "analogies=king-man+woman"],
        store=store,
        show_progress=False,
    )
    summary = run.summary
    metrics = summary["metrics"]
    for name in (
        "wordsim353", "gensim_wordsim353", "wordsim353_gap_to_gensim", "simlex999",
        "analogy_accuracy", "analogy_coverage", "words_per_second", "gensim_words_per_second",
        "glove_wordsim353", "glove_analogy_accuracy", "epochs", "val_loss",
    ):  # fmt: skip
        assert name in metrics, name
    assert metrics["wordsim353_gap_to_gensim"] == pytest.approx(
        metrics["gensim_wordsim353"] - metrics["wordsim353"], abs=2e-4
    )
    assert metrics["wordsim353_pairs"] == 59 and metrics["glove_wordsim353"] > 0.4
    assert summary["target"]["reached"] in (True, False)
    assert {p.name for p in run.figures()} == {"training.png", "word-map.png"}
    assert (run.dir / "tokenizer.json").exists() and run.weights_path.exists()
    assert set(summary["neighbours"]["police"]) == {"ours", "gensim", "glove"}
    assert summary["analogies"]["king-man+woman"]["glove"][0][0] == "queen"
    epochs = run.history("epoch")
    assert epochs and all("val_loss" in e and "wordsim353" in e for e in epochs)
    assert run.history("step")


def test_an_interrupted_run_resumes_with_what_is_left_of_its_budget(store, monkeypatch):
    """Ctrl-C right after the first checkpoint (after pass 0): the resumed run takes back the
    weights, Adam, the generator and the counters, spends what is left of its 3 s and keeps one
    history. The loop stops on the wall clock, so its steps cannot match an uninterrupted run's."""
    overrides = ["seconds=3", "epochs=1", "checkpoint_every=0", "glove=false", "threads=1",
                 "neighbours=police", "analogies=king-man+woman"]  # fmt: skip
    checkpoint = Loop.checkpoint

    def checkpoint_then_ctrl_c(self):
        checkpoint(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "checkpoint", checkpoint_then_ctrl_c)
    started: list[Run] = []
    with pytest.raises(KeyboardInterrupt):
        run_lab(LAB, overrides, store=store, show_progress=False, on_start=started.append)
    (run,) = started
    assert run.status == "interrupted"
    (first,) = Run(run.dir).history("epoch")
    before = Run(run.dir).history("step")
    saved = torch.load(run.checkpoint_path, weights_only=True)
    assert saved["steps_done"] == first["step"] and saved["counters"]["epoch"] == 1
    assert saved["counters"]["seconds"] == pytest.approx(first["seconds"], abs=1e-3)
    assert first["seconds"] < 3 and "optimizer" in saved
    monkeypatch.setattr(Loop, "checkpoint", checkpoint)

    resumed = run_lab(LAB, [], store=store, resume=run.id, show_progress=False)
    assert resumed.status == "finished"
    epochs, steps = resumed.history("epoch"), resumed.history("step")
    assert epochs[0] == first and steps[: len(before)] == before  # what was done stays as it was
    assert [e["epoch"] for e in epochs] == list(range(len(epochs))) and len(epochs) > 1
    # the step count goes on from the checkpoint: every 10th step recorded once, none missing
    assert epochs[1]["step"] > first["step"]
    assert [s["step"] for s in steps] == list(range(0, epochs[-1]["step"], 10))
    # the clock goes on too: the budget counts the seconds before the interruption, the LR keeps
    # decaying, and the weights come back trained (a fresh model's loss is 6·ln 2 ≈ 4.2)
    after = steps[len(before)]
    assert [e["seconds"] for e in epochs] == sorted(e["seconds"] for e in epochs)
    assert after["seconds"] > first["seconds"] and after["lr"] < before[-1]["lr"]
    assert after["loss"] < steps[0]["loss"] - 0.5
    metrics = resumed.summary["metrics"]
    assert metrics["train_seconds"] == pytest.approx(epochs[-1]["seconds"], abs=1e-3)
    assert metrics["train_seconds"] >= 3
    assert metrics["epochs"] == pytest.approx(epochs[-1]["passes"], abs=1e-3)
