"""Text data: tokenizers, labelled-sentence files, the sentence datasets and their splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepscape.data import DataUnavailable, get_dataset
from deepscape.data.text import encode, read_labelled, save_tokenizer, with_words, word_tokenizer

SENTCLF = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentclf"


def test_tokenizer_round_trip_with_unknown_words(tmp_path: Path):
    tokenizer = word_tokenizer(["The film is good .", "the plot is n't ."])
    ids = encode(tokenizer, ["the film isn't good", "a wholly unseen sentence"])
    assert ids.dtype == torch.long and ids.shape == (2, 5)
    words = [tokenizer.id_to_token(i) for i in ids[0].tolist()]
    assert words == ["the", "film", "is", "n't", "good"]  # lower-cased, clitic split as GloVe's
    assert ids[1].tolist() == [1, 1, 1, 1, 0]  # [UNK] for unseen words, [PAD] after the end
    # the vocabulary saved with a run reads back into the same tokenizer
    from tokenizers import Tokenizer

    again = Tokenizer.from_file(str(save_tokenizer(tokenizer, tmp_path)))
    assert torch.equal(encode(again, ["the film isn't good"]), ids[:1])


def test_a_malformed_line_is_reported_with_its_number(tmp_path: Path):
    path = tmp_path / "labels.txt"
    path.write_text("1 a fine film\n0 a dull one\n\n1\n0 more\n")
    with pytest.raises(DataUnavailable, match=r"labels.txt, line 4: expected 'label sentence'"):
        read_labelled(path)
    path.write_text("")
    with pytest.raises(DataUnavailable, match="holds no labelled sentences"):
        read_labelled(path)


def test_unknown_labels_and_missing_files_name_the_fix(tmp_path: Path):
    (tmp_path / "TREC.train.all").write_text("0 What is it ?\n9 Who ?\n")
    (tmp_path / "TREC.test.all").write_text("0 What ?\n")
    with pytest.raises(DataUnavailable, match=r"trec train: unknown label\(s\) 9"):
        get_dataset("trec", tmp_path)
    with pytest.raises(DataUnavailable, match=r"lacks stsa.binary.train, stsa.binary.dev"):
        get_dataset("sst2", tmp_path)


def test_mr_200_is_real_balanced_and_split_the_same_way_every_time():
    data = get_dataset("mr-200")
    assert data.modality == "text" and data.classes == ["negative", "positive"]
    assert data.sizes == {"train": 120, "validation": 40, "test": 40}
    assert data.test.targets.float().mean() == 0.5  # stratified
    again = get_dataset("mr-200")
    assert again.test.texts == data.test.texts
    assert not set(data.train.texts) & set(data.test.texts)
    # ids and sentences stay aligned through a subset
    subset = data.train.stratified(20)
    row = 7
    assert torch.equal(subset.inputs[row, :3], encode(data.tokenizer, [subset.texts[row]])[0, :3])
    assert subset.targets.sum() == 10


def test_with_words_lets_pretrained_words_in_without_touching_labels():
    data = get_dataset("mr-200")
    grown = with_words(data, lambda word: word.isalpha())
    assert grown.tokenizer.get_vocab_size() > data.tokenizer.get_vocab_size()
    unk = (data.test.inputs == 1).sum()
    assert (grown.test.inputs == 1).sum() < unk  # fewer unknown test words
    assert torch.equal(grown.test.targets, data.test.targets)
    known = data.tokenizer.get_vocab()
    assert all(grown.tokenizer.token_to_id(w) == i for w, i in known.items())


@pytest.mark.skipif(not SENTCLF.is_dir(), reason="needs ../shared/data/sentclf (benchmark data)")
def test_the_benchmark_files_load_with_their_published_sizes():
    assert get_dataset("sst2", SENTCLF).sizes == {"train": 6920, "validation": 872, "test": 1821}
    trec = get_dataset("trec", SENTCLF)
    assert len(trec.test) == 500 and len(trec.train) + len(trec.validation) == 5452
    assert trec.classes[trec.test.targets[0]] in trec.classes
    mr = get_dataset("mr", SENTCLF)
    assert sum(mr.sizes.values()) == 10662


def test_sst2_phrases_train_on_phrases_and_test_on_sentences(tmp_path: Path):
    (tmp_path / "sst2-phrases").mkdir()
    (tmp_path / "sst2-phrases" / "train.tsv").write_text(
        "sentence\tlabel\na stirring , funny film \t1\nstirring\t1\nlabored gags \t0\n"
    )
    (tmp_path / "sentclf").mkdir()
    (tmp_path / "sentclf" / "stsa.binary.dev").write_text("1 a funny film\n0 dull\n")
    (tmp_path / "sentclf" / "stsa.binary.test").write_text("0 labored and dull\n1 stirring\n")
    data = get_dataset("sst2-phrases", tmp_path)
    assert data.sizes == {"train": 3, "validation": 2, "test": 2}
    assert data.train.texts[0] == "a stirring , funny film"  # GLUE's trailing space is gone
    assert data.train.targets.tolist() == [1, 1, 0] and data.classes[1] == "positive"
    assert data.test.texts == ["labored and dull", "stirring"]
    (tmp_path / "sst2-phrases" / "train.tsv").write_text("text,label\nfine,1\n")
    with pytest.raises(DataUnavailable, match="expected a 'sentence<TAB>label' header"):
        get_dataset("sst2-phrases", tmp_path)
    (tmp_path / "sentclf" / "stsa.binary.test").unlink()
    with pytest.raises(DataUnavailable, match=r"needs .*stsa.binary.test or .*sentclf"):
        get_dataset("sst2-phrases", tmp_path)


def test_a_text_batch_is_padded_to_its_own_longest_sentence():
    data = get_dataset("mr-200")
    lengths = data.train.lengths
    shortest = lengths.argsort()[:4].tolist()
    ids, targets = data.train.__getitems__(shortest)
    assert ids.shape == (4, int(lengths[shortest].max()))
    assert ids.shape[1] < data.train.inputs.shape[1]  # the split's width is its longest sentence
    assert torch.equal(ids, data.train.inputs[shortest, : ids.shape[1]])
    assert torch.equal(targets, data.train.targets[shortest])


def test_length_grouped_batches_cover_every_example_once_in_batches_of_like_length():
    from deepscape.data import LengthGroupedBatches

    lengths = torch.randint(1, 60, (1000,))
    torch.manual_seed(0)
    batches = list(LengthGroupedBatches(lengths, 10, pool=20))
    assert len(batches) == len(LengthGroupedBatches(lengths, 10)) == 100
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    spread = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    random_spread = [
        int(lengths[b].max() - lengths[b].min()) for b in torch.randperm(1000).split(10)
    ]
    assert sum(spread) < sum(random_spread) / 5  # alike within a batch...
    again = next(iter(LengthGroupedBatches(lengths, 10, pool=20)))
    assert batches[0] != again  # ...in random order
