"""Text datasets: labelled sentences as token ids, and the tokenizers that make them.

A sentence dataset loads as the same `Splits` as images, with `modality="text"`: each split is a
`TextSplit` (token ids "b t", padded with 0, plus the raw sentences) and `Splits.tokenizer` is the
word-level `tokenizers.Tokenizer` trained on the training split — a lab saves it with the run
(`save_tokenizer`), so the run's token ids can be read back as words.

Sources: the Hugging Face hub when online; local files in the common format of the sentence
classification benchmarks (one sentence a line, label first: `1 a stirring , funny ...`) via
`data_dir=`; offline, the 200 labelled movie-review sentences (MR) that gensim's wheel ships.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from deepscape.data import DataUnavailable, Splits, TextSplit, holdout, register

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1 in every word-level vocabulary here
# Words, with clitics split off as GloVe's (Stanford) tokenizer does: don't → do n't, it's → it 's
WORDS = Regex(r"[\w\-]+?(?=n't\b)|n't\b|'(?:s|re|ve|m|ll|d)\b|[\w\-]+|[^\w\s]")


# -- tokenizers ------------------------------------------------------------------------------------
def word_tokenizer(
    texts: Iterable[str], *, min_count: int = 1, max_words: int | None = None
) -> Tokenizer:
    """A word-level tokenizer trained on `texts`: lower-cased, split into words, clitics and
    punctuation; words seen fewer than `min_count` times (or beyond the `max_words` most
    frequent) become [UNK]. Id 0 is [PAD], id 1 is [UNK]."""
    tokenizer = _word_level(models.WordLevel(unk_token=UNK))
    trainer = trainers.WordLevelTrainer(
        special_tokens=[PAD, UNK],
        min_frequency=min_count,
        vocab_size=(max_words + 2) if max_words else 10**9,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _word_level(model: models.WordLevel) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(WORDS, behavior="isolated")]
    )
    return tokenizer


def words_of(tokenizer: Tokenizer, texts: Iterable[str]) -> set[str]:
    """The distinct words of `texts` as `tokenizer` splits them (before any vocabulary lookup)."""
    found: set[str] = set()
    for text in texts:
        normal = tokenizer.normalizer.normalize_str(text)
        found.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normal))
    return found


def with_words(data: Splits, known: Callable[[str], bool]) -> Splits:
    """`data` re-encoded with a vocabulary grown by every word of its sentences that `known`
    accepts (a pretrained embedding's vocabulary): such a word keeps its pretrained meaning even
    when the training split never shows it. No labels are read."""
    vocabulary = dict(data.tokenizer.get_vocab())
    texts = [t for split in (data.train, data.validation, data.test) for t in split.texts]
    for word in sorted(words_of(data.tokenizer, texts)):
        if word not in vocabulary and known(word):
            vocabulary[word] = len(vocabulary)
    tokenizer = _word_level(models.WordLevel(vocab=vocabulary, unk_token=UNK))

    def split(part: TextSplit) -> TextSplit:
        return TextSplit(encode(tokenizer, part.texts), part.targets, part.texts)

    return dataclasses.replace(
        data,
        train=split(data.train),
        validation=split(data.validation),
        test=split(data.test),
        tokenizer=tokenizer,
    )


def encode(tokenizer: Tokenizer, texts: list[str], *, max_length: int = 0) -> torch.Tensor:
    """Token ids of `texts` as one tensor "b t", padded with [PAD] (0) to the longest sentence
    (cut at `max_length` when > 0). An empty sentence is one [PAD]."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    ids = [e.ids[:max_length] if max_length > 0 else e.ids for e in encodings]
    longest = max((len(i) for i in ids), default=0) or 1
    out = torch.zeros(len(ids), longest, dtype=torch.long)
    for row, sentence in enumerate(ids):
        out[row, : len(sentence)] = torch.tensor(sentence, dtype=torch.long)
    return out


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> Path:
    """Save the vocabulary with the run (`tokenizer.json`, readable by `Tokenizer.from_file`)."""
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return path


# -- labelled sentences ----------------------------------------------------------------------------
def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    """(sentences, labels) from a file with one sentence a line, label first (`1 the film ...`,
    `__label__neg the film ...`). A line without both is an error naming its line number."""
    sentences, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            label, _, sentence = line.strip().partition(" ")
            if not sentence.strip():
                raise DataUnavailable(
                    f"{path}, line {number}: expected 'label sentence', got {line.strip()[:60]!r}"
                )
            labels.append(label.removeprefix("__label__"))
            sentences.append(sentence.strip())
    if not sentences:
        raise DataUnavailable(f"{path} holds no labelled sentences")
    return sentences, labels


def sentence_splits(
    name: str,
    source: str,
    parts: dict[str, tuple[list[str], list[str]]],
    *,
    classes: list[str],
    label_names: dict[str, str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Splits:
    """Splits from (sentences, labels) parts: "train" always; "validation" and "test" when the
    source has them, else carved out of train (stratified, with the fixed split seed). Labels are
    mapped to class indices through `label_names` (raw label → class name) or taken as names."""
    label_names = label_names or {c: c for c in classes}

    def targets_of(part: str, labels: list[str]) -> np.ndarray:
        unknown = sorted(set(labels) - set(label_names))
        if unknown:
            raise DataUnavailable(
                f"{name} {part}: unknown label(s) {', '.join(unknown[:5])} "
                f"(expected {', '.join(label_names)})"
            )
        return np.array([classes.index(label_names[label]) for label in labels])

    texts = {part: np.array(sentences, dtype=object) for part, (sentences, _) in parts.items()}
    targets = {part: targets_of(part, labels) for part, (_, labels) in parts.items()}
    carved_test = "test" not in parts
    if carved_test:
        texts["train"], texts["test"], targets["train"], targets["test"] = holdout(
            texts["train"], targets["train"], test_fraction
        )
    if "validation" not in parts:  # `validation_fraction` of the whole, not of what is left
        share = validation_fraction / (1 - test_fraction) if carved_test else validation_fraction
        texts["train"], texts["validation"], targets["train"], targets["validation"] = holdout(
            texts["train"], targets["train"], share
        )
    tokenizer = word_tokenizer(texts["train"])

    def split(part: str) -> TextSplit:
        sentences = [str(s) for s in texts[part]]
        return TextSplit(encode(tokenizer, sentences), torch.as_tensor(targets[part]), sentences)

    return Splits(
        name=name,
        train=split("train"),
        validation=split("validation"),
        test=split("test"),
        classes=classes,
        modality="text",
        source=source,
        tokenizer=tokenizer,
    )


def gensim_test_data(name: str) -> Path:
    """A file that gensim's wheel ships in gensim/test/test_data (found without importing it)."""
    spec = importlib.util.find_spec("gensim")
    folder = Path(spec.submodule_search_locations[0]) / "test" / "test_data" if spec else None
    if folder is None or not (folder / name).is_file():
        raise DataUnavailable(f"{name} comes with gensim's wheel: `pip install gensim`")
    return folder / name


def from_hub(
    hub_id: str, *, name: str, local: str, text: str, label: str, config: str | None = None
) -> dict[str, tuple[list[str], list[int]]]:
    """Every split of a sentence dataset on the Hugging Face hub as (sentences, label ids);
    `local` tells the learner how to do without the hub."""
    import datasets

    try:
        hub = datasets.load_dataset(hub_id, config)
    except Exception as error:  # offline, hub down, no cache: all mean the same to the learner
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DataUnavailable(
            f"{name} could not be fetched from the Hugging Face hub{offline}: pass {local}. "
            f"({type(error).__name__})"
        ) from error
    return {split: (list(hub[split][text]), list(hub[split][label])) for split in hub}


def _hub_parts(
    hub: dict[str, tuple[list[str], list[int]]], classes: list[str]
) -> dict[str, tuple[list[str], list[str]]]:
    # Labels the hub gives as ids become class names; a split without labels (-1) is left out.
    return {
        part: (sentences, [classes[i] for i in labels])
        for part, (sentences, labels) in hub.items()
        if part in ("train", "validation", "test") and min(labels, default=0) >= 0
    }


SENTIMENT = ["negative", "positive"]
BINARY_LABELS = {"0": "negative", "1": "positive", "neg": "negative", "pos": "positive"}
TREC_CLASSES = ["description", "entity", "abbreviation", "human", "location", "number"]
SENTCLF = "one sentence a line, label first"  # the files of the sentence-classification benchmarks
LOCAL = f"data_dir=FOLDER with its files ({SENTCLF})"


def _local(data_dir: Path, *names: str) -> list[Path]:
    paths = [data_dir / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataUnavailable(f"data_dir={data_dir} lacks {', '.join(missing)} (each: {SENTCLF})")
    return paths


@register("mr-200", "200 labelled movie-review sentences (MR) that gensim ships (embedded)")
def load_mr_200(data_dir: Path | None = None) -> Splits:
    path = gensim_test_data("pang_lee_polarity.cor")
    return sentence_splits(
        "mr-200",
        f"gensim's {path.name}: 100 negative, 100 positive sentences of MR (Pang & Lee, 2005)",
        {"train": read_labelled(path)},
        classes=SENTIMENT,
        label_names=BINARY_LABELS,
        validation_fraction=0.2,
        test_fraction=0.2,
    )


@register("sst2", "SST-2, 6,920 / 872 / 1,821 sentence-level movie reviews: data_dir=, or the hub")
def load_sst2(data_dir: Path | None = None) -> Splits:
    if data_dir is not None:
        paths = _local(data_dir, "stsa.binary.train", "stsa.binary.dev", "stsa.binary.test")
        parts = dict(zip(("train", "validation", "test"), map(read_labelled, paths), strict=True))
        source = f"stsa.binary.* in {data_dir}"
    else:
        hub_id = "SetFit/sst2"
        parts = _hub_parts(
            from_hub(
                hub_id,
                name="sst2",
                local=LOCAL,
                text="text",
                label="label",
            ),
            ["0", "1"],
        )
        source = f"Hugging Face hub: {hub_id}"
    return sentence_splits("sst2", source, parts, classes=SENTIMENT, label_names=BINARY_LABELS)


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """(sentences, labels) from GLUE's TSV layout: a `sentence\tlabel` header, then one a line."""
    with open(path, encoding="utf-8") as lines:
        header = next(lines, "").rstrip("\n").split("\t")
        if header[:2] != ["sentence", "label"]:
            raise DataUnavailable(f"{path}: expected a 'sentence<TAB>label' header, got {header}")
        rows = [line.rstrip("\n").rsplit("\t", 1) for line in lines if line.strip()]
    bad = next((number for number, row in enumerate(rows, start=2) if len(row) != 2), None)
    if bad is not None:
        raise DataUnavailable(f"{path}, line {bad}: expected 'sentence<TAB>label'")
    return [sentence.strip() for sentence, _ in rows], [label.strip() for _, label in rows]


def _first_file(data_dir: Path, name: str, *folders: str) -> Path:
    """`data_dir/name`, or `data_dir/folder/name` for the first folder that has it."""
    for folder in ("", *folders):
        if (data_dir / folder / name).is_file():
            return data_dir / folder / name
    where = " or ".join(str(data_dir / f / name) for f in ("", *folders))
    raise DataUnavailable(f"sst2-phrases needs {where}")


@register(
    "sst2-phrases",
    "SST-2 trained on its 67,349 phrases (GLUE), validated and tested on SST-2's 872 / 1,821 "
    "sentences: data_dir= (holding sst2-phrases/ and sentclf/), or the hub",
)
def load_sst2_phrases(data_dir: Path | None = None) -> Splits:
    # Kim (2014) trained on every phrase of SST's training trees: ten times the labelled text of
    # the 6,920 training sentences, and what the published SST-2 figures assume.
    if data_dir is not None:
        train = _first_file(data_dir, "train.tsv", "sst2-phrases")
        dev, test = (
            _first_file(data_dir, f"stsa.binary.{part}", "sentclf") for part in ("dev", "test")
        )
        parts = {"train": read_tsv(train), "validation": read_labelled(dev)}
        parts["test"] = read_labelled(test)
        source = f"{train} (phrases); {dev.name}, {test.name} in {dev.parent} (sentences)"
    else:
        # GLUE's test labels are hidden: the labelled test sentences come from SetFit's copy
        local = "data_dir=FOLDER holding sst2-phrases/train.tsv and sentclf/stsa.binary.{dev,test}"
        glue = from_hub(
            "nyu-mll/glue",
            config="sst2",
            name="sst2-phrases",
            local=local,
            text="sentence",
            label="label",
        )
        setfit = from_hub(
            "SetFit/sst2", name="sst2-phrases", local=local, text="text", label="label"
        )
        parts = _hub_parts({"train": glue["train"], "validation": glue["validation"]}, ["0", "1"])
        parts |= _hub_parts({"test": setfit["test"]}, ["0", "1"])
        source = "Hugging Face hub: nyu-mll/glue sst2 (train, validation), SetFit/sst2 (test)"
    return sentence_splits(
        "sst2-phrases", source, parts, classes=SENTIMENT, label_names=BINARY_LABELS
    )


@register("mr", "MR, 10,662 movie-review sentences (fixed seeded 80/10/10 split): data_dir=, hub")
def load_mr(data_dir: Path | None = None) -> Splits:
    if data_dir is not None:
        (path,) = _local(data_dir, "rt-polarity.all")
        parts = {"train": read_labelled(path)}
        source = f"{path}"
    else:
        hub_id = "cornell-movie-review-data/rotten_tomatoes"
        hub = from_hub(
            hub_id,
            name="mr",
            local=LOCAL,
            text="text",
            label="label",
        )
        parts = _hub_parts(hub, ["0", "1"])
        source = f"Hugging Face hub: {hub_id}"
    return sentence_splits("mr", source, parts, classes=SENTIMENT, label_names=BINARY_LABELS)


@register("trec", "TREC question types, 5,452 + 500 questions, 6 classes: data_dir=, or the hub")
def load_trec(data_dir: Path | None = None) -> Splits:
    if data_dir is not None:
        paths = _local(data_dir, "TREC.train.all", "TREC.test.all")
        parts = dict(zip(("train", "test"), map(read_labelled, paths), strict=True))
        source = f"TREC.*.all in {data_dir}"
    else:
        hub_id = "CogComp/trec"
        hub = from_hub(
            hub_id,
            name="trec",
            local=LOCAL,
            text="text",
            label="coarse_label",
        )
        # the hub orders the coarse classes ABBR, ENTY, DESC, HUM, LOC, NUM
        hub_order = ["abbreviation", "entity", "description", "human", "location", "number"]
        parts = {
            part: (sentences, [str(TREC_CLASSES.index(hub_order[i])) for i in labels])
            for part, (sentences, labels) in hub.items()
        }
        source = f"Hugging Face hub: {hub_id}"
    # the benchmark files number the classes DESC, ENTY, ABBR, HUM, LOC, NUM (0–5)
    return sentence_splits(
        "trec",
        source,
        parts,
        classes=TREC_CLASSES,
        label_names={str(i): c for i, c in enumerate(TREC_CLASSES)},
    )
