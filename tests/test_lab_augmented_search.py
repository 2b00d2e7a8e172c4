"""language/201/augmented-search: retrieval finds a planted passage, open-book beats closed-book
on a Factbook slice, a broken or foreign index is refused, bad options get one line."""

from __future__ import annotations

import json

import pytest
import torch

from deepscape.config import ConfigError
from deepscape.data.factbook import countries, fact_sheet
from deepscape.labs.language import l201_augmented_search as lab
from deepscape.labs.language import l201_augmented_search_reader as reader
from deepscape.labs.language.l201_augmented_search_data import Corpus, Question, factbook, load
from deepscape.retrieval import (
    DenseIndex,
    IndexMismatch,
    Passage,
    SparseIndex,
    chunk_sentences,
    chunk_words,
    reciprocal_rank_fusion,
    retrieval_scores,
)
from deepscape.runs import RunStore

PLANTED = Passage(
    "zz", "Quorvania", "Quorvania: Capital: name: Belmarast; the city lies on a lake."
)


@pytest.fixture(scope="module")
def encoder():
    from deepscape.models.language import load_encoder

    return load_encoder()


@pytest.fixture(scope="module")
def slice_of_the_factbook():
    """The first 12 Factbook countries' passages, and the planted one."""
    corpus = factbook("sentences", 80, 20, documents=12)
    return [*corpus.passages, PLANTED]


def test_chunking_keeps_sentences_whole_and_windows_overlap():
    pieces = ["One two three.", "Four five six seven.", "Eight nine."]
    packed = chunk_sentences("d", "T", pieces, words=7)
    assert [p.text for p in packed] == ["T: One two three. Four five six seven.", "T: Eight nine."]
    windows = chunk_words("d", "T", "a b c d e f g h i j", words=4, overlap=2)
    assert [p.text for p in windows] == ["T: a b c d", "T: c d e f", "T: e f g h", "T: g h i j"]
    long = chunk_sentences("d", "T", ["w " * 25], words=10)  # one piece over a passage: cut
    assert [len(p.text.split()) for p in long] == [11, 11, 6]


def test_fusion_and_scores_by_hand():
    assert reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]])[:2] == [1, 3]
    found = retrieval_scores([[5, 7, 9], [1, 2, 3]], [{7}, {8}], ks=(1, 2))
    assert found["recall_at_1"] == 0.0 and found["recall_at_2"] == 0.5
    assert found["mrr"] == pytest.approx(0.25)  # 1/2 for the first query, 0 for the second


def test_retrieval_finds_a_planted_passage(encoder, slice_of_the_factbook):
    texts = [p.text for p in slice_of_the_factbook]
    question = ["What is the capital of Quorvania?"]
    sparse = SparseIndex.build(texts)
    assert sparse.search(question, 3)[0][0, 0] == len(texts) - 1
    vectors, asked = encoder.embed(texts, progress=False), encoder.embed(question, progress=False)
    for kind in ("flat", "hnsw", "ivf"):
        dense = DenseIndex.build(vectors, kind=kind, encoder=encoder.name)
        assert dense.search(asked, 3)[0][0, 0] == len(texts) - 1, kind


def test_a_low_bm25_k1_ranks_the_answering_field_above_backgrounds_that_repeat_the_name():
    """At the textbook k1 a country's history, naming it again and again, outranks the one line
    that holds its capital; at the lab's k1 a repeat counts little and "capital" decides."""
    corpus = factbook("sentences", 80, 20, documents=12)
    texts, questions = [p.text for p in corpus.passages], [q.text for q in corpus.questions]

    def first_right(k1: float) -> int:
        first = SparseIndex.build(texts, k1=k1).search(questions, 1)[0][:, 0]
        return sum(int(p) in wanted for p, wanted in zip(first, corpus.relevant, strict=True))

    textbook, lab_default = first_right(1.5), first_right(lab.Config().bm25_k1)
    assert lab_default >= textbook + 5, (textbook, lab_default, len(questions))


def test_the_factbook_questions_have_an_answering_passage():
    corpus = factbook("sentences", 80, 20, documents=30)
    assert len(corpus.questions) >= 60
    assert all(corpus.relevant), "every question's answer is written in its country's passages"
    chile = next(c for c in countries() if c.name == "Chile")
    assert any("Santiago" in piece for piece in fact_sheet(chile))


def test_squad_json_and_gensims_wikipedia_load_as_corpora(tmp_path):
    squad = {"data": [{"title": "Normans", "paragraphs": [{
        "context": "The Normans lived in Normandy. Their leader Rollo swore fealty to Charles.",
        "qas": [{"question": "Who was the Normans' leader?", "id": "1",
                 "answers": [{"text": "Rollo", "answer_start": 44}]}]}]}]}  # fmt: skip
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad))
    corpus = load("squad", str(tmp_path), how="sentences", words=80, overlap=0)
    assert corpus.questions[0].answers == ("Rollo",) and corpus.relevant == [{0}]
    assert corpus.passages[0].text.startswith("Normans: The Normans lived")
    with pytest.raises(Exception, match="no SQuAD JSON"):
        load("squad", str(tmp_path / "nowhere"), how="sentences", words=80, overlap=0)
    wiki = load("wikipedia", None, how="sentences", words=80, overlap=0, documents=3)
    assert len(wiki.questions) == 3 and all(wiki.relevant) and not wiki.answerable


def test_a_foreign_or_broken_index_is_refused(tmp_path, encoder):
    vectors = encoder.embed(["a passage", "another passage"], progress=False)
    DenseIndex.build(vectors, kind="flat", encoder=encoder.name).save(tmp_path)
    assert DenseIndex.load(tmp_path, encoder="all-MiniLM-L6-v2").card.size == 2  # same model
    with pytest.raises(IndexMismatch, match=r"built with .*all-MiniLM-L6-v2, not BAAI/bge-small"):
        DenseIndex.load(tmp_path, encoder="BAAI/bge-small-en-v1.5")
    (tmp_path / "dense.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexMismatch, match=r"cannot be read.*build it again"):
        DenseIndex.load(tmp_path, encoder=encoder.name)
    card = json.loads((tmp_path / "dense.json").read_text())
    assert card["encoder"] == encoder.name and card["size"] == 2


def test_answers_are_scored_as_squad_scores_them():
    assert reader.answer_scores("Santiago [2]", ("Santiago",)) == (1.0, 1.0)
    assert reader.answer_scores("The capital is Santiago.", ("Santiago",))[0] == 0.0
    assert reader.parse("68,521,974 [1] [3]") == ("68,521,974", [1, 3])
    assert reader.cited_right("Paris [2]", ["Rome", "Paris: capital"], ("Paris",)) == [True]
    assert reader.cited_right("Paris [5]", ["Rome", "Paris"], ("Paris",)) == [False]
    assert reader.is_unknown("I don't know.") and not reader.is_unknown("Paris [1]")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reader_k": 0}, "reader_k=0: give k ≥ 1"),
        ({"words": 10, "overlap": 10}, "0 ≤ overlap < words"),
        ({"approximate": "lsh"}, "give hnsw or ivf"),
        ({"bm25_k1": -1.0}, "bm25_k1=-1.0: give 0 or more"),
        ({"documents": -1}, "documents=-1: give 0 or more"),
        ({"read_from": "reranked", "rerank_depth": 0}, "read_from=reranked needs rerank_depth"),
    ],
)
def test_bad_options_get_one_line(options, message):
    with pytest.raises(ConfigError, match=message):
        lab.check(lab.Config(**options))


def test_an_empty_corpus_is_refused():
    with pytest.raises(ConfigError, match="has no passages"):
        Corpus("empty", [], [Question("What?", ("x",), "d")])


def test_a_question_over_the_encoders_context_is_truncated_with_a_warning(encoder):
    with pytest.warns(UserWarning, match="longer than the encoder's 256 tokens.*truncated"):
        lab.warn_long(encoder, ["short", "word " * 400])


@pytest.mark.slow
def test_open_book_beats_closed_book_on_a_factbook_slice():
    """SmolLM2 shown each country's passage that holds the answer, against the question alone:
    populations and areas, which it cannot know by heart."""
    from deepscape.models.language import load_llm

    torch.manual_seed(0)
    corpus = factbook("sentences", 80, 20, documents=16)
    asked = [(q, r) for q, r in zip(corpus.questions, corpus.relevant, strict=True)
             if q.kind in ("population", "area")][:6]  # fmt: skip
    texts = [q.text for q, _ in asked]
    shown = [[corpus.passages[min(r)].text] for _, r in asked]
    llm = load_llm()
    closed = reader.read(llm, "closed", texts, max_new_tokens=10, progress=False)
    opened = reader.read(llm, "open", texts, shown, max_new_tokens=10, progress=False)
    exact = {mode: sum(reader.answer_scores(a, q.answers)[0] for a, (q, _) in
                       zip(said, asked, strict=True)) / len(asked)
             for mode, said in (("closed", closed), ("open", opened))}  # fmt: skip
    assert exact["open"] >= exact["closed"] + 0.3, (exact, opened)


@pytest.mark.slow
def test_the_lab_runs_saves_its_index_and_serves_it(tmp_path):
    """A 12-country run end to end: retrieval scored, a few questions read, the index saved and
    loaded back by the page (no LLM call until a question is asked)."""
    store = RunStore(tmp_path)
    config = lab.Config(documents=12, questions=2, rerank_depth=2, latency_questions=5, threads=2)
    run = store.create("language/201/augmented-search", config.__dict__)
    metrics = lab.run(config, run)
    assert metrics["dense_recall_at_5"] >= 0.9
    assert {"bm25_recall_at_5", "hybrid_recall_at_5", "hnsw_recall_at_5", "open_exact_match",
            "closed_exact_match", "citation_precision", "retrieval_ms"} <= set(metrics)  # fmt: skip
    assert {p.stem for p in run.figures()} >= {"recall_at_k", "gallery"}
    index = lab.Retrievers.load(run.dir / "index", lab.load_encoder())
    assert index.sparse.bm25.k1 == config.bm25_k1  # the served BM25 ranks as the run's did
    ranking = index.search(["What is the capital of Albania?"], k=5)["hybrid"][0]
    assert any("Tirana" in index.passages[p].text for p in ranking)
    assert lab.page_for(run) is not None
