"""Running text to learn word vectors from, and the sets that judge word vectors.

A corpus is a list of documents (raw text; a document longer than 10,000 words is cut into pieces,
as word2vec and gensim do). `token_stream` turns it into one stream of word ids with a document id
per token, so that no context window crosses from one document into the next.

Corpora: `lee`, the 300 Australian news stories (~60,000 words) that gensim's wheel ships
(offline, the default); `text8` (17M words of Wikipedia) and `wikitext-103` (100M words) from the
Hugging Face hub; `file`: any local text, a file or a folder of files (`data_dir=`), optionally
dropping a leading label from each line (`strip_labels`, for the sentence-classification files).

Evaluation sets, all from gensim's wheel: WordSim-353 (353 word pairs rated for relatedness by
people), SimLex-999 (999 pairs rated for similarity proper: `coast`/`shore` high, `cup`/`coffee`
low) and the Google analogies (19,544 questions `athens greece baghdad iraq` in 14 sections).
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from deepscape.data import DataUnavailable
from deepscape.data.text import gensim_test_data

CORPORA = ("lee", "text8", "wikitext-103", "file")
MAX_DOCUMENT = 10_000  # words per document: gensim drops what lies beyond, so pieces stay under


@dataclass
class Corpus:
    name: str
    source: str
    documents: list[str]

    @property
    def words(self) -> int:
        """Whitespace-separated words (before tokenisation)."""
        return sum(len(d.split()) for d in self.documents)


def load_corpus(
    name: str, data_dir: str | Path | None = None, *, strip_labels: bool = False, max_words: int = 0
) -> Corpus:
    """The corpus `name` (one of CORPORA), cut after `max_words` words when > 0."""
    if name == "file":
        if data_dir is None:
            raise DataUnavailable("corpus=file reads local text: pass data_dir=FILE or FOLDER")
        path = Path(data_dir).expanduser()
        texts, source = read_text(path, strip_labels=strip_labels), f"{path}"
        name = path.stem if path.is_file() else path.name
    elif name == "lee":
        path = gensim_test_data("lee_background.cor")
        texts, source = read_text(path), f"gensim's {path.name}: 300 Australian news stories"
    elif name == "text8":
        texts, source = _from_hub("afmck/text8", None, split=None), "Hugging Face hub: text8"
    elif name == "wikitext-103":
        hub_id, config = "Salesforce/wikitext", "wikitext-103-raw-v1"
        texts, source = _from_hub(hub_id, config, split="train"), f"Hugging Face hub: {hub_id}"
    else:
        raise DataUnavailable(f"unknown corpus '{name}' (one of {', '.join(CORPORA)})")
    documents = list(_pieces(texts, max_words))
    if not any(d.strip() for d in documents):
        raise DataUnavailable(f"the corpus {source} holds no text")
    return Corpus(name=name, source=source, documents=documents)


def read_text(path: Path, *, strip_labels: bool = False) -> list[str]:
    """Lines of a text file, or of every file in a folder (sorted; hidden files skipped). A .csv
    file's fields are joined; `strip_labels` drops each line's first word (or first field)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        files = [path]
    else:
        raise DataUnavailable(f"data_dir={path} is neither a file nor a folder")
    lines: list[str] = []
    for file in files:
        with open(file, encoding="utf-8", errors="replace", newline="") as f:
            if file.suffix == ".csv":
                rows = csv.reader(f)
                lines += [" ".join(row[1:] if strip_labels else row) for row in rows]
            else:
                lines += [" ".join(line.split()[1:]) if strip_labels else line for line in f]
    return lines


def _pieces(texts: list[str], max_words: int):
    """Non-empty texts, long ones cut into documents of at most MAX_DOCUMENT words."""
    left = max_words if max_words > 0 else None
    for text in texts:
        words = text.split()
        if left is not None:
            words, left = words[:left], left - min(left, len(words))
        for start in range(0, len(words), MAX_DOCUMENT):
            yield " ".join(words[start : start + MAX_DOCUMENT])
        if left == 0:
            return


def _from_hub(hub_id: str, config: str | None, *, split: str | None) -> list[str]:
    import datasets

    try:
        hub = datasets.load_dataset(hub_id, config, split=split)
    except Exception as error:  # offline, hub down, no cache: all mean the same to the learner
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DataUnavailable(
            f"{hub_id} could not be fetched from the Hugging Face hub{offline}: pass "
            f"corpus=file data_dir=FILE_OR_FOLDER instead ({type(error).__name__})"
        ) from error
    parts = hub.values() if isinstance(hub, dict) else [hub]
    texts: list[str] = []
    for part in parts:  # the first column of text ("text" in both)
        columns = [n for n, f in part.features.items() if getattr(f, "dtype", "") == "string"]
        if not columns:
            raise DataUnavailable(f"{hub_id} on the Hugging Face hub has no column of text")
        texts += part[columns[0]]
    return texts


def token_stream(tokenizer: Tokenizer, documents: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Word ids "n" of the whole corpus, and the document of each "n". Only words are kept:
    [PAD], [UNK] (words rarer than the tokenizer's min_count, which word2vec drops too) and
    tokens with no letter or digit (punctuation) are left out."""
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    is_word = np.array([i > 1 and any(c.isalnum() for c in w) for w, i in vocabulary])
    ids, owners = [], []
    for number, encoding in enumerate(tokenizer.encode_batch(documents, add_special_tokens=False)):
        kept = np.asarray(encoding.ids, dtype=np.int64)
        kept = kept[is_word[kept]] if len(kept) else kept
        ids.append(kept)
        owners.append(np.full(len(kept), number, dtype=np.int64))
    if not ids or not sum(len(i) for i in ids):
        raise DataUnavailable("the corpus has no word seen often enough: lower min_count")
    return torch.from_numpy(np.concatenate(ids)), torch.from_numpy(np.concatenate(owners))


# -- evaluation sets ------------------------------------------------------------------------------
@functools.cache
def _rated_pairs(name: str) -> list[tuple[str, str, float]]:
    pairs = []
    for line in gensim_test_data(name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            first, second, score = line.split("\t")[:3]
            pairs.append((first.lower(), second.lower(), float(score)))
    return pairs


def wordsim353() -> list[tuple[str, str, float]]:
    """WordSim-353: (word, word, mean human relatedness 0–10), 353 pairs."""
    return _rated_pairs("wordsim353.tsv")


def simlex999() -> list[tuple[str, str, float]]:
    """SimLex-999: (word, word, mean human similarity 0–10), 999 pairs."""
    return _rated_pairs("simlex999.txt")


@functools.cache
def google_analogies() -> list[tuple[str, str, str, str, str]]:
    """The Google analogies (Mikolov et al., 2013): (section, a, b, c, d), "a is to b as c is to
    d", lower-cased; 19,544 questions: 8,869 semantic (5 sections), 10,675 syntactic (`gram*`)."""
    questions, section = [], ""
    for line in gensim_test_data("questions-words.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            a, b, c, d = line.lower().split()
            questions.append((section, a, b, c, d))
    return questions
