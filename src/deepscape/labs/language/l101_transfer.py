"""language/101/transfer — what a pretrained language model knows before it sees your labels.

The lesson classifies sentences from a few labels, three ways: the sentence CNN from scratch
(language/101/sentence-cnn's); a linear probe, a logistic regression on the frozen vectors of a
pretrained sentence encoder (all-MiniLM-L6-v2: a 6-layer transformer trained on a billion
sentence pairs; a sentence's vector is the average of its token vectors, scaled to length 1;
its own tokenizer cuts words into pieces of a 30,522-entry vocabulary, not the lab's word list);
and that encoder fine-tuned from the probe, at a far lower LR than its head (LP-FT). Every arm is
judged on the same test sentences at 50, 200, 1,000 and all labels: what pretraining is worth
depends on how many labels you have.

Beside them, two classifiers that see no label at all — where "general" models stand against
"narrow" ones. An instruct LLM (SmolLM2-135M-Instruct) is asked the question, and its answer is
the label word it finds likeliest to say first: no text is parsed. A small LLM leans towards one
answer whatever it reads; subtracting its scores for content-free inputs ("N/A", "") removes
that lean (calibration, Zhao et al., 2021). And the encoder's similarity to a description of
each label ("a positive movie review") picks the class whose description is closest. Embedding
a dataset is slow on a CPU (~100–200 sentences/s), so vectors and LLM scores are cached per
model, dataset and split in the run store.

On SST-2's files (all 1,821 test sentences), at 50 / 200 / 1,000 / all 6,920 labels: from
scratch 55 / 56 / 64 / 71 %, probe 65 / 75 / 79 / 81 %, fine-tuned 67 / 79 / 84 / 87 % (+23
points at 200); with no labels, SmolLM2 asked 67 % (calibrated 73 %), similarity to the
descriptions 64 %. The whole curve takes ~17 minutes on one CPU thread (fine-tuning is most of
it: ~5 minutes for one epoch over all 6,920 sentences).

    deepscape run language/101/transfer                                 # 200 MR sentences, offline
    deepscape run language/101/transfer dataset=sst2 data_dir=path/to/sentclf
    deepscape run language/101/transfer method=probe labelled=200 dataset=sst2 data_dir=...
    deepscape run language/101/transfer method=zero-shot question="Is this review good or bad?"
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

import torch
from rich.console import Console
from safetensors.torch import save_model

from deepscape import distributed
from deepscape.cache import cache_key, cached
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.data import Splits, TextSplit, get_dataset
from deepscape.devices import device_and_precision
from deepscape.labs.language import l101_sentence_cnn
from deepscape.learning_curve import (
    Curve,
    Level,
    curve_figure,
    curve_metrics,
    gain_at,
    parse_sizes,
    run_points,
)
from deepscape.models.language import (
    EncoderClassifier,
    SentenceEncoder,
    load_encoder,
    load_llm,
    similarity_scores,
    zero_shot_scores,
)
from deepscape.probe import Probe, accuracy, fit_probe
from deepscape.runs import Run
from deepscape.tasks import Classification, classify
from deepscape.train import Trainer

TRANSFER = "language/101/transfer"
L2_STRENGTHS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)  # unit-length vectors want weaker pulls than images'
CONTENT_FREE = ("N/A", "", "[MASK]")  # inputs with no sentiment, no topic: the LLM's own lean


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["mr-200", "sst2", "mr", "trec"] = option("mr-200", "sentences to classify")
    data_dir: str | None = option(None, "folder with the sentence files (label first)")
    sizes: str = option(
        "50,200,1000,0", "labelled sentences along the curve (0: all; clipped to the split)"
    )
    validation_sentences: int = option(250, "validation sentences every arm is watched on (0: all)")
    test_sentences: int = option(0, "test sentences every method is judged on (0: all)")
    # what to run
    method: Literal["curve", "scratch", "probe", "finetune", "zero-shot"] = option(
        "curve", "curve: every arm at every size and both zero-shots; else one of them"
    )
    labelled: int = option(200, "labelled training sentences of a single arm (0: all)")
    encoder: str = option("all-MiniLM-L6-v2", "sentence encoder (offline: all-MiniLM-L6-v2)")
    llm: str = option("SmolLM2-135M-Instruct", "instruct LLM asked zero-shot (offline: SmolLM2)")
    question: str = option("", "what the LLM is asked before each sentence ('': the dataset's)")
    descriptions: str = option("", "one description per class, '|' between ('': the dataset's)")
    scratch_embeddings: Literal["random", "glove-static", "glove-tuned"] = option(
        "random", "the CNN's word vectors (random: truly from scratch)"
    )
    encoder_lr: float = option(0.03, "the encoder's LR as a share of the head's (fine-tuning)")
    steps: int = option(150, "fine-tuning's optimisation steps, at least (epochs follow)")
    jobs: int = option(1, "arms at a time, each in its own process")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(0, "passes over the labelled sentences (0: `steps`; the CNN: its own)")
    batch_size: int = option(16, "sentences per fine-tuning step (the CNN: its lab's 50)")
    lr: float = option(1e-3, "peak LR of the head (AdamW); the encoder's is encoder_lr of it")
    weight_decay: float = option(0.01, "decoupled weight decay")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware has it, else fp32"
    )
    checkpoint_every: float = option(60.0, "seconds between checkpoints (a fine-tuned one: 270 MB)")


def run(config: Config, run: Run) -> dict[str, Any]:
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    if config.method == "curve":
        return learning_curve(config, run)
    if config.method == "zero-shot":
        return zero_shot(config, run)
    return one_arm(config, run)


# -- the lesson: three arms along the number of labels, and two without labels --------------------
def learning_curve(config: Config, run: Run) -> dict[str, Any]:
    data = get_dataset(config.dataset, config.data_dir)
    sizes = parse_sizes(config.sizes, len(data.train), unit="sentences")
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    # the encoder's vectors of every split, once, before the arms (which find them cached)
    encoder = load_encoder(config.encoder)
    evaluated = labelled_splits(dataclasses.replace(config, labelled=0))
    for name in ("train", "validation", "test"):
        embeddings(encoder, getattr(evaluated, name), config, run, split=name)
    del encoder

    # every arm inherits this run's options (a sweep runs seed 0: the arms compare); the prompt
    # and descriptions are the zero-shot's alone (and may hold commas)
    own = {"question", "descriptions"}
    curve = run_points(run, TRANSFER, config, sizes, own=own, jobs=config.jobs)
    general = zero_shot(config, run)
    plot_curve(run, curve, general, data, config)
    metrics: dict[str, Any] = curve_metrics(curve) | general
    pretrained = {
        n: max(curve["probe"].get(n, 0.0), curve["finetune"].get(n, 0.0))
        for n in curve["probe"].keys() | curve["finetune"].keys()
    }
    if gain := gain_at(pretrained, curve["scratch"], most=200):
        metrics["pretrained_gain_at_200"] = gain["gain"]
        metrics["compared_at"] = gain["compared_at"]
    return metrics


def plot_curve(
    run: Run, curve: Curve, general: dict[str, float], data: Splits, config: Config
) -> None:
    """The three arms against the labels, and across them what needs no labels at all."""
    levels = []
    if (llm := general.get("zero_shot_llm")) is not None:
        calibrated = general["zero_shot_llm_calibrated"]
        label = f"{config.llm} asked, no labels: {llm:.0%} (calibrated {calibrated:.0%})"
        levels.append(Level(llm, label, color="tab:red", linestyle="--"))
    if (similarity := general.get("zero_shot_similarity")) is not None:
        label = f"{config.encoder} similarity to label descriptions: {similarity:.0%}"
        levels.append(Level(similarity, label, color="tab:purple", linestyle="-."))
    levels.append(Level(1 / len(data.classes), "chance"))
    labels = {
        "scratch": f"sentence CNN from scratch ({config.scratch_embeddings} word vectors)",
        "probe": f"linear probe on frozen {config.encoder}",
        "finetune": f"{config.encoder} fine-tuned from the probe",
    }
    title = f"What pretraining is worth on {data.name}: accuracy vs labels"
    curve_figure(run, curve, labels, title=title, unit="sentences", levels=levels)


# -- one arm: one method at one number of labels --------------------------------------------------
def one_arm(config: Config, run: Run) -> dict[str, Any]:
    data = labelled_splits(config)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    if config.method == "scratch":
        return scratch(config, run)

    encoder = load_encoder(config.encoder)
    run.update_summary(encoder={"name": encoder.name, "source": encoder.source})
    probe = linear_probe(encoder, data, config, run)
    if config.method == "probe":
        # the encoder is the published one, frozen: only the head is this run's own
        save_model(probe.head, str(run.weights_path))
        return {"test_accuracy": probe.test_accuracy, "test_loss": probe.test_loss, "l2": probe.l2}

    # fine-tuning starts from the probe's head (LP-FT): the first steps do not wreck the encoder
    model = EncoderClassifier(encoder, num_classes=len(data.classes))
    model.head.load_state_dict(probe.head.state_dict())
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    epochs = config.epochs or max(1, math.ceil(config.steps / steps_per_epoch))
    task = Classification(len(data.classes), label_smoothing=config.label_smoothing)
    trainer = Trainer(dataclasses.replace(config, epochs=epochs), run, task=task)
    run.update_summary(
        precision=trainer.precision, probe={"test_accuracy": probe.test_accuracy, "l2": probe.l2}
    )
    tokens = encoder_splits(data, encoder)
    model = trainer.fit(
        model, tokens.train, tokens.validation, lr_scales={"encoder.": config.encoder_lr}
    )
    test = classify(trainer, model, tokens.test)
    return {"test_accuracy": test.accuracy, "test_loss": test.loss}


def scratch(config: Config, run: Run) -> dict[str, Any]:
    """sentence-cnn's CNN, trained by its own recipe, on the same labelled sentences (and judged
    on the same validation and test sentences) as the pretrained arms."""
    cnn = dataclasses.replace(
        l101_sentence_cnn.Config(),
        dataset=config.dataset,
        data_dir=config.data_dir,
        embeddings=config.scratch_embeddings,
        epochs=config.epochs,  # 0: sentence-cnn's rule (~1,500 steps, 10 to 50 epochs)
        seed=config.seed,
        threads=config.threads,
        device=config.device,
        checkpoint_every=config.checkpoint_every,
        figures=False,
    )
    run.update_summary(scratch_config=dataclasses.asdict(cnn))
    # its word vocabulary (with GloVe, GloVe's words as well): the CNN's own token ids
    data = labelled(l101_sentence_cnn.sentences_for(cnn), config)
    _, test = l101_sentence_cnn.fit(cnn, data, run)
    return {"test_accuracy": test.accuracy, "test_loss": test.loss}


def labelled_splits(config: Config) -> Splits:
    """The dataset with `labelled` training sentences (stratified: the same ones for every arm)
    and fixed stratified subsets of validation and test."""
    return labelled(get_dataset(config.dataset, config.data_dir), config)


def labelled(data: Splits, config: Config) -> Splits:
    # stratified subsets depend on the labels alone: the same sentences whatever the token ids
    return dataclasses.replace(
        data,
        train=data.train.stratified(config.labelled),
        validation=data.validation.stratified(config.validation_sentences),
        test=data.test.stratified(config.test_sentences),
    )


def encoder_splits(data: Splits, encoder: SentenceEncoder) -> Splits:
    """The same sentences as the encoder's token ids (its word pieces, not the lab's words)."""

    def tokens(split: TextSplit) -> TextSplit:
        return TextSplit(encoder.tokenize(split.texts), split.targets, split.texts)

    return dataclasses.replace(
        data,
        train=tokens(data.train),
        validation=tokens(data.validation),
        test=tokens(data.test),
        tokenizer=encoder.tokenizer,
    )


def linear_probe(encoder: SentenceEncoder, data: Splits, config: Config, run: Run) -> Probe:
    """Logistic regression on the frozen encoder's vectors, its L2 strength chosen on validation.
    The vectors of the whole training split are cached: an arm takes the rows of its sentences."""
    train_all = get_dataset(config.dataset, config.data_dir).train
    everything = embeddings(encoder, train_all, config, run, split="train")
    row = {text: i for i, text in enumerate(train_all.texts)}
    train_x = everything[[row[text] for text in data.train.texts]]
    return fit_probe(
        (train_x, data.train.targets),
        (embeddings(encoder, data.validation, config, run, split="validation"),
         data.validation.targets),
        (embeddings(encoder, data.test, config, run, split="test"), data.test.targets),
        strengths=L2_STRENGTHS,
        num_classes=len(data.classes),
    )  # fmt: skip


# -- the cache: vectors and scores per (model, dataset, split) in the run store -------------------
def embeddings(
    encoder: SentenceEncoder, sentences: TextSplit, config: Config, run: Run, *, split: str
) -> torch.Tensor:
    """The encoder's vectors of `sentences` ("n d"), from the cache or computed (with a progress
    bar: ~100 sentences/s on one core, ~200 in bfloat16). The key hashes the sentences: it tells
    subsets of a split apart, and changed files."""
    device, precision = device_and_precision(config)
    key = cache_key(
        encoder.name, run_data_name(config), split, len(sentences.texts), precision,
        *sentences.texts,
    )  # fmt: skip

    def compute() -> torch.Tensor:
        encoder.to(device)
        return encoder.embed(
            sentences.texts,
            autocast=precision == "bf16",
            progress=run.show_progress,
            description=f"{encoder.name}: {split} sentences",
        )

    return cached(run, "embeddings", key, compute)


def run_data_name(config: Config) -> str:
    return config.dataset if config.data_dir is None else f"{config.dataset}-files"


# -- no labels at all: ask an LLM, or compare with label descriptions -----------------------------
@dataclass
class Task:
    question: str  # asked before each sentence; the answer is one of the class names
    descriptions: list[str]  # one per class, compared with each sentence's vector


SENTIMENT = Task(
    "What is the sentiment of this movie review? Answer with one word: positive or negative.",
    ["a negative movie review", "a positive movie review"],
)
TASKS = {
    "mr-200": SENTIMENT,
    "sst2": SENTIMENT,
    "mr": SENTIMENT,
    "trec": Task(
        "What kind of answer does this question ask for? Answer with one word: description, "
        "entity, abbreviation, human, location or number.",
        [
            "a question asking for a description or a definition",
            "a question asking for a thing, an animal, a colour or another entity",
            "a question asking what an abbreviation stands for",
            "a question asking for a person or a group of people",
            "a question asking for a place",
            "a question asking for a number, a date or an amount",
        ],
    ),
}


def task_for(config: Config, classes: list[str]) -> Task:
    """The dataset's question and descriptions, or the config's own."""
    default = TASKS.get(config.dataset) or Task(
        f"Which of these fits this text best: {', '.join(classes)}? Answer with one word.",
        list(classes),
    )
    descriptions = default.descriptions
    if config.descriptions:
        descriptions = [d.strip() for d in config.descriptions.split("|")]
        if len(descriptions) != len(classes) or not all(descriptions):
            raise ConfigError(
                f"descriptions: give {len(classes)} descriptions, one per class "
                f"({', '.join(classes)}), with '|' between them"
            )
    return Task(config.question.strip() or default.question, descriptions)


def zero_shot(config: Config, run: Run) -> dict[str, Any]:
    """Accuracy on the test sentences without a single label: the LLM asked (raw, and calibrated
    by its answers to content-free inputs) and the similarity to label descriptions."""
    data = labelled_splits(dataclasses.replace(config, labelled=0))
    test, classes = data.test, data.classes
    task = task_for(config, classes)
    if config.method == "zero-shot":
        run.update_summary(data={"name": data.name, "source": data.source, "test": len(test)})

    encoder = load_encoder(config.encoder)
    vectors = embeddings(encoder, test, config, run, split="test")
    similarity = similarity_scores(vectors, encoder, task.descriptions)

    with reading(f"reading {config.llm} (a GGUF file takes ~20 s)", run.show_progress):
        llm = load_llm(config.llm)
    _, precision = device_and_precision(config)
    ask = functools.partial(
        zero_shot_scores, llm, labels=classes, question=task.question, autocast=precision == "bf16"
    )
    key = cache_key(
        llm.name, run_data_name(config), "test", len(test.texts), task.question, *classes,
        precision, *test.texts,
    )  # fmt: skip
    scores = cached(
        run,
        "llm-scores",
        key,
        lambda: ask(test.texts, progress=run.show_progress, description=f"asking {llm.name}"),
    )
    lean = ask(CONTENT_FREE, progress=False).mean(0)  # log P(label) for inputs with no content
    calibrated = scores - lean

    def shares(predicted: torch.Tensor) -> dict[str, float]:
        counts = torch.bincount(predicted, minlength=len(classes)).float() / len(predicted)
        return dict(zip(classes, counts.tolist(), strict=True))

    run.update_summary(
        zero_shot={
            "question": task.question,
            "descriptions": dict(zip(classes, task.descriptions, strict=True)),
            "llm": {"name": llm.name, "source": llm.source},
            "encoder": {"name": encoder.name, "source": encoder.source},
            "llm_lean": dict(zip(classes, lean.tolist(), strict=True)),
            "llm_answers": shares(scores.argmax(1)),
            "llm_calibrated_answers": shares(calibrated.argmax(1)),
            "similarity_answers": shares(similarity.argmax(1)),
        }
    )
    return {
        "zero_shot_llm": accuracy(scores, test.targets),
        "zero_shot_llm_calibrated": accuracy(calibrated, test.targets),
        "zero_shot_similarity": accuracy(similarity, test.targets),
    }


def reading(what: str, show: bool) -> contextlib.AbstractContextManager:
    """A spinner on stderr while a model loads (bound to stderr now: loading silences it)."""
    if not show:
        return contextlib.nullcontext()
    return Console(file=sys.stderr).status(what)
