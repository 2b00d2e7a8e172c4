"""language/201/text-cnn — where convolution stops and attention starts.

Three readers of the same sentences, each given the same seconds of training:
- char-cnn: Zhang et al. (2015)'s character CNN, scaled down (`models.text.CharCNN`): no words,
  no pretrained vectors; six convolutions and three poolings see 123 characters at a time.
- dilated-cnn: a deeper word CNN (`DilatedCNN`): residual blocks of one convolution each,
  dilated 1, 2, 4, 8, so 4 blocks of width 3 see 1 + 2·(1 + 2 + 4 + 8) = 31 words, where 4
  undilated blocks would see 9.
- transformer: a small encoder of the core GPT's blocks, not causal, with a padding mask:
  every word sees every other word from the first layer on.
- sentence-cnn (a fourth, for reference): language/101's Kim CNN, one layer, 5 words at most.
The word models start from the same GloVe vectors as language/101/sentence-cnn's (the same
`embeddings=` choices); the character CNN learns from nothing.

A receptive field is how many inputs one position of the last layer sees before the pooling. It
is computed from the layers, r = 1 + Σ (k − 1)·dilation·(strides below), and measured: the span
of input positions that get a gradient from the middle position (both go in the summary; the
tests check that they agree). Beyond its field a CNN can still add up evidence from far apart
(the max over positions does), but cannot read one part of a sentence in the light of another
(a "not" twenty words before the adjective it turns). So the test sentences are bucketed by
length, and each model's accuracy is reported within and beyond its field. Speed is measured
too: training examples per second (what the budget bought, validation checks included) and
sentences per second at inference.

Equal time: each contestant's `seconds` are turned into optimisation steps by timing a few steps
of a copy, with the trainer's own batches, on this machine now; the trainer then runs that many
steps with its schedule, and the seconds it really took are recorded beside the budget. On a
machine shared with other jobs they drift (measured: up to 1.8× the budget), so time contests
alone. `max_steps=N` trains N steps instead.

model=contest (the default) trains each of `models` as a run of this lab (seed 0, as a sweep's
runs are), then draws accuracy against sentence length, one line per model, with each field
marked (figures/accuracy_by_length.png), and keeps the speed/accuracy table in the summary.

Measured on SST-2's phrases, 150 s each, alone on 2 cores: the dilated CNN 84.6 % test (8,300
steps), Kim's CNN 81.9 % (12,681 steps), the transformer 81.8 % (5,470), the character CNN
78.1 % (6,351). Every model loses 7–12 points from sentences of ≤ 10 words to those over 30;
the dilated CNN reads those within its 31 words at 85.2 %, beyond at 79.4 %. The 200 MR
sentences offline are too few to rank anything: there, watch the speeds and the fields.

    deepscape run language/201/text-cnn                            # 200 MR sentences, offline
    deepscape run language/201/text-cnn dataset=sst2-phrases data_dir=../shared/data seconds=150
    deepscape run language/201/text-cnn model=dilated-cnn dilations=1-1-1-1   # no dilation
    deepscape run language/201/text-cnn model=char-cnn max_steps=300 threads=1
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepscape import figures
from deepscape.config import ConfigError, TrainConfig, closest, option
from deepscape.data import Splits, TextSplit
from deepscape.data.text import save_tokenizer
from deepscape.labs.language import l101_sentence_cnn as sentence_cnn
from deepscape.labs.language.l201_text_cnn_figures import accuracy_by_length
from deepscape.labs.language.l201_text_cnn_models import (
    Contestant,
    DilatedCNN,
    TextTransformer,
    field_of,
    measured_field,
)
from deepscape.models.text import PAD_ID, CharCNN, char_ids
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import Classification, classify
from deepscape.train import Trainer

LAB = "language/201/text-cnn"
MODELS = ("char-cnn", "dilated-cnn", "transformer", "sentence-cnn")
DROPOUT = {"char-cnn": 0.5, "dilated-cnn": 0.3, "transformer": 0.1, "sentence-cnn": 0.5}
ModelName = Literal["char-cnn", "dilated-cnn", "transformer", "sentence-cnn"]


@dataclass
class Config(TrainConfig):
    model: Literal["contest", "char-cnn", "dilated-cnn", "transformer", "sentence-cnn"] = option(
        "contest", "one contestant, or contest: each of `models` as a run, then compared"
    )
    models: tuple[ModelName, ...] = option(MODELS, "the contestants of model=contest")
    seconds: float = option(20.0, "each contestant's training time in seconds (the same for all)")
    evaluations: int = option(4, "validation checks within a contestant's training")
    # data
    dataset: Literal["mr-200", "sst2-phrases", "sst2", "mr"] = option(
        "mr-200", "sentences to classify (sst2-phrases: data_dir holding sst2-phrases/, sentclf/)"
    )
    data_dir: str | None = option(None, "folder with the sentence files")
    length_edges: tuple[int, ...] = option(
        (10, 20, 30), "sentence lengths in words where the length buckets end (the last: above)"
    )
    # the models
    embeddings: Literal["random", "glove-static", "glove-tuned", "glove+minilm"] = option(
        "glove-tuned", "the word models' vectors, as in language/101/sentence-cnn"
    )
    embedding_lr: float = option(1.0, "pretrained word vectors learn at this fraction of lr")
    max_chars: int = option(1014, "char-cnn: characters a text is cut at (Zhang's frame)")
    char_width: int = option(128, "char-cnn: channels of its convolutions (Zhang: 256 or 1,024)")
    char_hidden: int = option(256, "char-cnn: units of its two dense layers (Zhang: 1,024+)")
    width: int = option(128, "dilated-cnn: channels of its blocks")
    kernel: int = option(3, "dilated-cnn: words each convolution reads (odd)")
    dilations: tuple[int, ...] = option((1, 2, 4, 8), "dilated-cnn: one block per dilation")
    n_layer: int = option(2, "transformer: encoder blocks")
    n_head: int = option(4, "transformer: attention heads")
    n_embd: int = option(128, "transformer: width of the residual stream")
    dropout: float | None = option(
        None, "dropout on the pooled features (None: 0.5 char-cnn and sentence-cnn, 0.3, 0.1)"
    )
    # training (overriding TrainConfig's defaults for this lab)
    batch_size: int = option(50, "sentences per optimisation step")
    group_by_length: bool = option(
        True, "shuffled batches of similarly long sentences (less padding, less work)"
    )
    lr: float = option(1e-3, "peak learning rate")
    weight_decay: float = option(1e-4, "decoupled weight decay")
    max_steps: int = option(0, "optimisation steps (0: as many as `seconds` allow)")
    figures: bool = option(True, "draw the figures")


def check(config: Config) -> None:
    """One-line errors for what this lab cannot run, before anything is trained (Python callers
    skip the parser's checks)."""
    for name in (config.model, *config.models):
        if name not in ("contest", *MODELS):
            raise ConfigError(f"model {name!r} is not one of contest, {', '.join(MODELS)}"
                              f"{closest(name, MODELS)}")  # fmt: skip
    if config.model == "contest" and not config.models:
        raise ConfigError(f"models= is empty: name some of {', '.join(MODELS)}")
    if config.kernel % 2 == 0:
        raise ConfigError(f"kernel={config.kernel}: give an odd width (3, 5, …), so that a word "
                          "is the centre of its window")  # fmt: skip
    edges = list(config.length_edges)
    if not edges or edges != sorted(set(edges)) or edges[0] < 1:
        raise ConfigError(f"length_edges={edges}: give increasing lengths ≥ 1, e.g. 10-20-30")
    if config.seconds <= 0 and not config.max_steps:
        raise ConfigError(f"seconds={config.seconds:g}: give a training time > 0, or max_steps")


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    if config.model == "contest":
        return contest(config, run)
    return contestant(config, run)


# -- 1. one contestant: data, model, equal time, and what it read ---------------------------------
def contestant(config: Config, run: Run) -> dict[str, Any]:
    # Data: the sentences as word ids with GloVe's words added (language/101's own function), and
    # as characters for the character CNN. The length of a sentence is always counted in words.
    data = sentence_cnn.sentences_for(config)
    save_tokenizer(data.tokenizer, run.dir)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes},
                       vocabulary=data.tokenizer.get_vocab_size())  # fmt: skip
    splits = inputs_for(config, data)
    model = model_for(config, data)

    # Equal time: the budget in steps, timed with the trainer's own batches and threads.
    task = Classification(len(data.classes), label_smoothing=config.label_smoothing)
    steps = config.max_steps
    if not steps:
        pace = pace_of(model, Trainer(config, run, task=task), splits, config)
        steps = pace.steps_in(config.seconds, config.evaluations)
    every = max(1, steps // max(config.evaluations, 1))
    trainer = Trainer(
        dataclasses.replace(config, max_steps=steps, eval_every=every), run, task=task
    )
    frozen_table = config.model == "char-cnn" or config.embeddings in ("random", "glove-static")
    scales = None if frozen_table else {"embedding.": config.embedding_lr}
    model = trainer.fit(model, splits["train"], splits["validation"], lr_scales=scales)
    test = classify(trainer, model, splits["test"])

    # What it read: accuracy by length, within and beyond its receptive field; speed.
    correct = test.predictions == test.targets
    words = (data.test.inputs != PAD_ID).sum(1)
    own_lengths = (splits["test"].inputs != PAD_ID).sum(1)  # characters for the char-CNN
    field = receptive_fields(model, config, per_word=float(own_lengths.sum() / words.sum()))
    run.update_summary(receptive_field=field,
                       by_length=by_length(correct, words, config.length_edges))  # fmt: skip
    evaluations = run.evaluations()
    seconds = evaluations[-1]["seconds"]
    metrics = {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": evaluations[-1]["val_accuracy"],
        "train_accuracy": evaluations[-1]["train_accuracy"],
        "train_seconds": seconds,
        "steps": steps,
        # what the budget bought, as it was spent (its validation checks included)
        "train_examples_per_s": steps * config.batch_size / seconds,
        "test_sentences_per_s": sentences_per_second(model, trainer, splits["test"]),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **field_accuracy(correct, own_lengths, field["computed"]),
    }
    if config.figures:
        title = f"{config.model} on {data.name}"
        figures.training_curves(run, title=f"{title}: {steps} steps in {seconds:.0f} s")
        accuracy_by_length(run, {config.model: run.summary["by_length"]},
                           {config.model: field}, title=f"{title}: accuracy by length")  # fmt: skip
    return metrics


def inputs_for(config: Config, data: Splits) -> dict[str, TextSplit]:
    """Each split as the model reads it: word ids, or the char-CNN's character ids."""
    parts = {"train": data.train, "validation": data.validation, "test": data.test}
    if config.model != "char-cnn":
        return parts
    return {name: TextSplit(char_ids(split.texts, max_chars=config.max_chars), split.targets,
                            split.texts) for name, split in parts.items()}  # fmt: skip


def model_for(config: Config, data: Splits) -> Contestant:
    """The contestant `config.model`, untrained; the word models start from the vectors that
    language/101's CNN would start from with the same `embeddings=`."""
    classes = len(data.classes)
    dropout = DROPOUT[config.model] if config.dropout is None else config.dropout
    if config.model == "char-cnn":
        return CharCNN(num_classes=classes, width=config.char_width, hidden=config.char_hidden,
                       dropout=dropout)  # fmt: skip
    kim = sentence_cnn.Config(embeddings=config.embeddings, dropout=dropout, seed=config.seed)
    kims_cnn = sentence_cnn.model_for(kim, data)
    if config.model == "sentence-cnn":
        return kims_cnn
    vectors, frozen = kims_cnn.embedding.weight.detach(), config.embeddings == "glove-static"
    if config.model == "dilated-cnn":
        return DilatedCNN(embeddings=vectors, frozen=frozen, num_classes=classes,
                          width=config.width, kernel=config.kernel, dilations=config.dilations,
                          dropout=dropout)  # fmt: skip
    return TextTransformer(embeddings=vectors, frozen=frozen, num_classes=classes,
                           n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                           dropout=dropout)  # fmt: skip


@dataclass
class Pace:
    """What one optimisation step and one validation check cost on this machine, now."""

    step_seconds: float
    check_seconds: float

    def steps_in(self, seconds: float, checks: int) -> int:
        """The steps that fill `seconds` once the validation checks are taken off."""
        return max(1, int((seconds - checks * self.check_seconds) / self.step_seconds))


def pace_of(
    model: nn.Module, trainer: Trainer, splits: dict[str, TextSplit], config: Config
) -> Pace:
    """Steps of a copy of the model timed on the trainer's own training batches (after three
    that warm it up) for about 5 % of the budget, and a validation check at its inference speed."""
    trial = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW([p for p in trial.parameters() if p.requires_grad], lr=config.lr)
    loader = trainer.loader(splits["train"], shuffle=True)
    batches = (batch for _ in itertools.count() for batch in loader)  # epoch after epoch

    def step() -> None:
        ids, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(trial(ids), targets).backward()
        optimizer.step()

    for _ in range(3):
        step()
    timed, started = 0, time.perf_counter()
    while timed < 5 or time.perf_counter() - started < min(5.0, 0.05 * config.seconds):
        step()
        timed += 1
    step_seconds = (time.perf_counter() - started) / timed
    check_seconds = len(splits["validation"]) / sentences_per_second(
        trial, trainer, splits["validation"]
    )
    return Pace(step_seconds=step_seconds, check_seconds=check_seconds)


@torch.inference_mode()
def sentences_per_second(model: nn.Module, trainer: Trainer, split: TextSplit) -> float:
    """Sentences classified per second, in the trainer's batches, over the whole split as many
    times as half a second takes (after one batch to warm up; the batches made beforehand)."""
    was_training = model.training
    model.eval()
    batches = [ids for ids, _ in trainer.loader(split, shuffle=False)]
    model(batches[0])
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < 0.5:
        for ids in batches:
            model(ids)
        done += len(split)
    model.train(was_training)
    return done / (time.perf_counter() - started)


# -- 2. receptive field against sentence length ---------------------------------------------------
def receptive_fields(model: Contestant, config: Config, *, per_word: float) -> dict[str, Any]:
    """The model's field computed and measured (on 64 random inputs three fields long), in its
    own unit and in words (`per_word`: its inputs per word of the test sentences)."""
    computed = field_of(model)
    char = config.model == "char-cnn"
    length = 3 * computed + 8 if computed else 64
    generator = torch.Generator().manual_seed(config.seed)
    high = model.embedding.num_embeddings
    ids = torch.randint(2, high, (64, length), generator=generator)  # no [PAD], no [UNK]
    return {
        "unit": "characters" if char else "words",
        "computed": computed,  # None: the whole sentence
        "measured": measured_field(model, ids),
        "input_length": length,
        "in_words": computed / per_word if computed else None,
    }


def bucket_names(edges: tuple[int, ...]) -> list[str]:
    """(10, 20, 30) → 1–10, 11–20, 21–30, 31+ (words)."""
    starts = [1, *(e + 1 for e in edges)]
    return [f"{a}–{b}" for a, b in zip(starts, edges, strict=False)] + [f"{starts[-1]}+"]


def by_length(correct: Tensor, words: Tensor, edges: tuple[int, ...]) -> list[dict[str, Any]]:
    """Accuracy in each bucket of sentence length (words), with its count of sentences."""
    bucket = torch.bucketize(words, torch.tensor(edges), right=False)
    rows = []
    for i, name in enumerate(bucket_names(edges)):
        chosen = bucket == i
        count = int(chosen.sum())
        accuracy = float(correct[chosen].float().mean()) if count else None
        rows.append({"words": name, "sentences": count, "accuracy": accuracy})
    return rows


def field_accuracy(correct: Tensor, lengths: Tensor, field: int | None) -> dict[str, float]:
    """Accuracy on the test sentences that fit in the receptive field and on those longer."""
    within = torch.ones_like(correct) if field is None else lengths <= field
    found = {"within_field_share": float(within.float().mean())}
    for name, chosen in (("within", within), ("beyond", ~within)):
        if chosen.any():
            found[f"{name}_field_accuracy"] = float(correct[chosen].float().mean())
    return found


# -- 3. the contest: every model at the same budget ------------------------------------------------
TABLE = (  # (metric, column) of the speed/accuracy table
    ("test_accuracy", "test accuracy"),
    ("within_field_accuracy", "within field"),
    ("beyond_field_accuracy", "beyond field"),
    ("parameters", "parameters"),
    ("steps", "steps"),
    ("train_seconds", "training s"),
    ("train_examples_per_s", "train examples/s"),
    ("test_sentences_per_s", "inference sentences/s"),
)


def contest(config: Config, run: Run) -> dict[str, Any]:
    own = {"model", "models", "seed"}
    runs = stage(run, "contest", LAB, Config,
                 [*inherited(config, own), f"model={','.join(config.models)}"])  # fmt: skip
    done = {r.config["model"]: r for r in runs if r.status == "finished"}
    failed = [r.config["model"] for r in runs if r.status != "finished"]
    if not done:
        raise RuntimeError(f"every contestant failed: see the runs in {run.dir.parent}")
    table = {name: {key: r.summary["metrics"].get(key) for key, _ in TABLE}
             | {"receptive_field": r.summary["receptive_field"]}
             for name, r in done.items()}  # fmt: skip
    run.update_summary(table=table, failed=failed, budget_seconds=config.seconds,
                       contestants={name: r.id for name, r in done.items()})  # fmt: skip
    if config.figures:
        first = next(iter(done.values()))
        accuracy_by_length(
            run, {name: r.summary["by_length"] for name, r in done.items()},
            {name: r.summary["receptive_field"] for name, r in done.items()},
            title=f"{first.summary['data']['name']}, {config.seconds:g} s of training each",
        )  # fmt: skip
    metrics = {
        f"{name}_{key}": value
        for name, row in table.items()
        for key, value in row.items()
        if key != "receptive_field" and value is not None
    }
    # the winner is chosen on validation: choosing on test would flatter it
    best = max(done, key=lambda name: done[name].summary["metrics"]["val_accuracy"])
    run.update_summary(best_model=best)
    return {"test_accuracy": table[best]["test_accuracy"], **metrics}
