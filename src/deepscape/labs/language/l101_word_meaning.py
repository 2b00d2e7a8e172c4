"""language/101/word-meaning — meaning from context: word vectors learnt with skip-gram.

The lesson starts from the distributional hypothesis: a word is known by the company it keeps.
The corpus becomes word ids (rare words, seen fewer than min_count times, and punctuation
dropped); skip-gram with negative sampling scores (word, context) pairs high and (word, noise)
pairs low, with frequent words subsampled and noise words drawn from the unigram
distribution^0.75. A step changes only the rows of the words in its batch: word2vec's plain SGD,
or Adam on those rows (SparseAdam), whose per-row step sizes teach rare words faster. Meaning is
then read off the vectors: cosine neighbours, analogies as vector arithmetic (king − man +
woman), WordSim-353 (relatedness) and SimLex-999 (similarity proper) by Spearman ρ, Google
analogies by accuracy and coverage (questions whose 4 words are known), and a 2-D PCA map of
word groups; every 50th document is held out for a validation loss. GloVe 6B-50d (400,000
words) is scored on the same tests, to show what 6 billion words of training buy.

The race: gensim's Word2Vec trains first, on the same word stream and vocabulary, dim, window,
negatives and sample, `epochs` passes with `threads` workers (1 by default, one core each:
gensim's C workers gain more from cores than PyTorch's small ops, which on a busy machine even
stall), keeping its own SGD schedule (0.025 → 0.0001). The seconds its train() takes are our
budget (`seconds=` sets one): ours trains exactly that long, its learning rate decaying linearly
over those seconds rather than over a number of passes, so it makes as many passes as its speed
allows. Words/s counts the words of the stream (before subsampling) per second of training.

Measured on 1.15M words (the sentence-classification files and AG News' test split, 2 CPU
cores, threads=1): gensim made 10 passes in 33 s at 350k words/s, ours 2.6 passes at 93k words/s
(0.26×: PyTorch ops against word2vec's C loop), and still WordSim ρ 0.375 vs 0.354 (gap
−0.021), thanks to SparseAdam: with word2vec's SGD (optimizer=sgd) ours reaches 0.24. SimLex
0.14 vs 0.18, analogies 1.3 % vs 2.2 % (of the 7,533 answerable); threads=2: ρ 0.385 vs 0.356 at
137k vs 467k words/s. GloVe: WordSim 0.50, SimLex 0.26, analogies 50 %. On lee, the default
(60,000 words, offline), WordSim knows only 59 of its pairs and the gap swings from seed to seed
(−0.06 … +0.09 over seeds 0–4): a small corpus gives noisy scores.

    deepscape run language/101/word-meaning                                    # lee, offline
    deepscape run language/101/word-meaning corpus=file data_dir=path/to/sentclf strip_labels=true
    deepscape run language/101/word-meaning optimizer=sgd                  # word2vec's own SGD
    deepscape run language/101/word-meaning corpus=text8 max_words=5000000 epochs=5
    deepscape run language/101/word-meaning analogies=sydney-australia+afghanistan neighbours=fire
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from safetensors.torch import save_file

from deepscape import distributed, figures
from deepscape.config import ConfigError, closest, option
from deepscape.data import DataUnavailable
from deepscape.data.corpus import (
    google_analogies,
    load_corpus,
    token_stream,
    wordsim353,
)
from deepscape.data.text import save_tokenizer, word_tokenizer
from deepscape.loop import Loop
from deepscape.models.glove import WordVectors, load_glove
from deepscape.models.word_vectors import (
    NoiseSampler,
    SkipGram,
    analogy,
    benchmark,
    context_pairs,
    keep_probability,
    most_frequent,
    nearest,
    similarity_rho,
    sparse_sgd_step,
)
from deepscape.runs import Run

MIN_LR = 1e-4 / 0.025  # where the LR's linear decay ends, as a share of the start (word2vec's)
HELD_OUT = 50  # every 50th document is held out from both models, for the validation loss
CHUNK = 2**20  # tokens whose pairs are made (and shuffled) at once: memory stays ~100 MB
ONE_PROCESS = "skip-gram timed against gensim's Word2Vec on one machine"


@dataclass
class Config:
    seed: int = option(0, "random seed (gensim with several workers is not reproducible)")
    threads: int = option(1, "CPU threads for PyTorch and gensim's workers (0: all cores)")
    # the text
    corpus: Literal["lee", "text8", "wikitext-103", "file"] = option("lee", "text to learn from")
    data_dir: str | None = option(None, "corpus=file: a text file, or a folder of them")
    strip_labels: bool = option(False, "drop each line's first word (label-first sentence files)")
    max_words: int = option(0, "read at most this many words of the corpus (0: all)")
    min_count: int = option(5, "words seen fewer times are dropped from the vocabulary")
    # skip-gram, the same for gensim
    dim: int = option(100, "length of a word vector")
    window: int = option(5, "context words on each side (each centre draws a reach 1..window)")
    negatives: int = option(5, "noise words per (centre, context) pair")
    sample: float = option(1e-3, "subsampling threshold for frequent words (0: keep all)")
    epochs: int = option(50, "gensim's passes over the corpus: the time they take is our budget")
    seconds: float = option(0.0, "our training budget in seconds (0: as long as gensim took)")
    # ours only
    optimizer: Literal["sparse-adam", "sgd"] = option(
        "sparse-adam", "sparse-adam: Adam on the rows a batch touches; sgd: word2vec's plain SGD"
    )
    lr: float = option(0.0, "starting LR, decaying linearly to ~0 (0: 0.01 adam, 0.025 sgd)")
    batch_size: int = option(4096, "(centre, context) pairs per step")
    share_negatives: int = option(10, "pairs that share one draw of noise words (1: word2vec's)")
    checkpoint_every: float = option(
        10.0, "seconds between checkpoints, taken after a pass (0: after every pass)"
    )
    # what to look at
    neighbours: str = option("man,three,police,government", "words to show the neighbours of")
    analogies: str = option("king-man+woman,men-man+woman", "a-b+c questions, comma-separated")
    groups: str = option(
        "monday,tuesday,wednesday,thursday,friday,saturday,sunday;"
        "one,two,three,four,five,six,seven,ten;"
        "australia,afghanistan,pakistan,israel,india,britain,america,china;"
        "government,minister,president,police,army,military,court;"
        "man,woman,men,women,boy,girl,father,mother,son",
        "word groups for the 2-D map: words comma-separated, groups by ';'",
    )
    analogy_vocab: int = option(30_000, "analogies are answered among this many frequent words")
    glove: bool = option(True, "score GloVe 6B-50d (400,000 words) on the same tests")


def run(config: Config, run: Run) -> dict[str, Any]:
    threads = distributed.cpu_threads(config.threads)
    torch.set_num_threads(threads)
    questions, wanted, groups = parse_words(config)

    # 1. Text → words → ids: one stream of ids, a document id beside each.
    if config.data_dir and config.corpus != "file":
        raise ConfigError(f"data_dir= is read with corpus=file, not corpus={config.corpus}")
    corpus = load_corpus(config.corpus, config.data_dir, strip_labels=config.strip_labels,
                         max_words=config.max_words)  # fmt: skip
    tokenizer = word_tokenizer(corpus.documents, min_count=config.min_count)
    save_tokenizer(tokenizer, run.dir)
    vocabulary = [w for w, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    ids, documents = token_stream(tokenizer, corpus.documents)
    held_out = documents % HELD_OUT == HELD_OUT // 2
    ids, documents, val_ids, val_documents = (
        ids[~held_out], documents[~held_out], ids[held_out], documents[held_out]
    )  # fmt: skip
    counts = torch.bincount(ids, minlength=len(vocabulary))
    rows = torch.argsort(counts, descending=True, stable=True)[: int((counts > 0).sum())]
    words = [vocabulary[i] for i in rows]  # the words trained, most frequent first
    check_words(set(words), questions, wanted, corpus.name, config.min_count)
    run.update_summary(
        corpus={"name": corpus.name, "source": corpus.source, "words": len(ids),
                "held_out_words": len(val_ids), "vocabulary": len(words)},
    )  # fmt: skip

    # 2. The peer: gensim's word2vec (C code, `threads` workers) on the very same words. A resumed
    # run trains it again, for its vectors; our budget stays the one its checkpoint keeps.
    gensim_vectors, gensim_seconds = train_gensim(config, ids, documents, vocabulary, threads, run)

    # 3. Ours, for the same wall-clock time.
    model = SkipGram(vocab_size=len(vocabulary), dim=config.dim)
    budget = config.seconds or gensim_seconds
    scorer = lambda: similarity_rho(model.vectors(words, rows), wordsim353())[0]  # noqa: E731
    seconds, passes = train(model, config, run, (ids, documents), (val_ids, val_documents),
                            counts, budget, scorer)  # fmt: skip
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run.weights_path)

    # 4. What the vectors know: ours, gensim's, GloVe's.
    models = {"ours": model.vectors(words, rows), "gensim": gensim_vectors}
    if config.glove:
        try:
            models["glove"] = load_glove()
        except DataUnavailable as error:
            run.update_summary(glove=str(error))
    scores = {name: benchmark(vectors, analogy_vocab=config.analogy_vocab)
              for name, vectors in models.items()}  # fmt: skip
    asked = {name: most_frequent(v, 100_000) for name, v in models.items()}  # GloVe: no typos
    run.update_summary(
        neighbours={w: answers(asked, lambda v, w=w: nearest(v, v[w], exclude=(w,)), [w])
                    for w in wanted},
        analogies={f"{b}-{a}+{c}": answers(asked, lambda v, q=(a, b, c): analogy(v, *q), [a, b, c])
                   for a, b, c in questions},
    )  # fmt: skip
    draw_training(run, scores, gensim_seconds)
    draw_map(run, models, groups)

    # 5. The race: quality and speed, side by side.
    ours, gensim = scores["ours"], scores["gensim"]
    metrics = {
        **ours,
        **{f"gensim_{k}": v for k, v in gensim.items()},
        "wordsim353_gap_to_gensim": gensim["wordsim353"] - ours["wordsim353"],
        "analogy_coverage": ours["analogy_questions"] / len(google_analogies()),
        "words_per_second": len(ids) * passes / seconds,  # words of the stream, before subsampling
        "gensim_words_per_second": len(ids) * config.epochs / gensim_seconds,
        "train_seconds": seconds,
        "gensim_seconds": gensim_seconds,
        "epochs": passes,
        "gensim_epochs": config.epochs,
        "val_loss": run.history("epoch")[-1]["val_loss"],
        "vocabulary": len(words),
        "corpus_words": len(ids),
        "threads": threads,
    }
    metrics["speed_vs_gensim"] = metrics["words_per_second"] / metrics["gensim_words_per_second"]
    if "glove" in scores:
        metrics |= {f"glove_{k}": v for k, v in scores["glove"].items()}
        known = [p for p in wordsim353() if p[0] in models["ours"] and p[1] in models["ours"]]
        metrics["glove_wordsim353_same_pairs"] = similarity_rho(models["glove"], known)[0]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


# -- 1. the words asked about ----------------------------------------------------------------------
def parse_words(config: Config) -> tuple[list[tuple[str, str, str]], list[str], list[list[str]]]:
    """Analogies "a-b+c" as (b, a, c) — "b is to a as c is to ?" —, neighbour words, map groups."""
    questions = []
    for text in filter(None, (q.strip() for q in config.analogies.lower().split(","))):
        match = re.fullmatch(r"(\w+)\s*-\s*(\w+)\s*\+\s*(\w+)", text)
        if not match:
            raise ConfigError(f"analogies: '{text}' is not a-b+c (for example king-man+woman)")
        first, minus, plus = match.groups()
        questions.append((minus, first, plus))
    wanted = [w.strip() for w in config.neighbours.lower().split(",") if w.strip()]
    groups = [
        [w.strip() for w in g.split(",") if w.strip()] for g in config.groups.lower().split(";")
    ]
    for word in wanted + [w for g in groups for w in g]:
        if not re.fullmatch(r"\w+", word):
            raise ConfigError(f"'{word}' is not a word (neighbours=king,paris groups=a,b;c,d)")
    return questions, wanted, [g for g in groups if g]


def check_words(known: set[str], questions: list, wanted: list[str], corpus: str, mc: int) -> None:
    for word in [w for q in questions for w in q] + wanted:
        if word not in known:
            raise ConfigError(
                f"'{word}' is not in the vocabulary of {corpus} ({len(known):,} words seen ≥ "
                f"{mc} times){closest(word, known)}"
            )


# -- 2. gensim -------------------------------------------------------------------------------------
def train_gensim(
    config: Config, ids: torch.Tensor, documents: torch.Tensor, vocabulary: list[str],
    threads: int, run: Run,
) -> tuple[WordVectors, float]:  # fmt: skip
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    names = np.array(vocabulary, dtype=object)
    cuts = np.flatnonzero(np.diff(documents.numpy())) + 1
    sentences = [names[piece].tolist() for piece in np.split(ids.numpy(), cuts)]
    model = Word2Vec(
        vector_size=config.dim, window=config.window, negative=config.negatives, sg=1, hs=0,
        # the stream is already cut at min_count (counted over the whole corpus): gensim keeps
        # all of it (min_count=1), so that both models have the very same vocabulary
        min_count=1, sample=config.sample, workers=threads, seed=config.seed,
    )  # fmt: skip
    model.build_vocab(sentences)

    class Tick(CallbackAny2Vec):
        def on_epoch_end(self, _model: Word2Vec) -> None:
            progress.advance(task)

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("passes"), console=Console(stderr=True), disable=not run.show_progress,
    ) as progress:  # fmt: skip
        task = progress.add_task("gensim word2vec", total=config.epochs)
        started = time.perf_counter()
        model.train(sentences, total_examples=len(sentences), epochs=config.epochs,
                    callbacks=[Tick()])  # fmt: skip
        seconds = time.perf_counter() - started
    return WordVectors(words=list(model.wv.index_to_key), vectors=model.wv.vectors), seconds


# -- 3. ours ---------------------------------------------------------------------------------------
@dataclass
class Counters:
    """What a checkpoint keeps of our loop besides weights and optimiser: the budget (a resumed
    run keeps the one it started with), the seconds spent of it, the passes made, the number of
    the next pass, and the generator that draws pairs and noise (the next pass draws what it
    would have drawn without the interruption)."""

    budget: float
    generator: torch.Generator
    seconds: float = 0.0
    passes: float = 0.0
    epoch: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "seconds": self.seconds, "passes": self.passes,
                "epoch": self.epoch, "generator": self.generator.get_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget, self.seconds = state["budget"], state["seconds"]
        self.passes, self.epoch = state["passes"], state["epoch"]
        self.generator.set_state(state["generator"])


def train(
    model: SkipGram, config: Config, run: Run, stream: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor], counts: torch.Tensor, budget: float, scorer,
) -> tuple[float, float]:  # fmt: skip
    """Skip-gram for `budget` seconds of training (evaluation between passes not counted), the
    LR decaying linearly with the time spent. Returns the seconds and the passes made. Records,
    checkpoints after a pass, resume and the progress bar are the core's `Loop`'s."""
    generator = torch.Generator().manual_seed(config.seed)
    keep, noise = keep_probability(counts, config.sample), NoiseSampler(counts)
    start_lr = config.lr or (0.01 if config.optimizer == "sparse-adam" else 0.025)
    adam = torch.optim.SparseAdam(model.parameters()) if config.optimizer == "sparse-adam" else None
    share = max(1, config.share_negatives)
    batch = max(share, config.batch_size // share * share)
    # drawn before the loop takes back a checkpoint's generator: a resumed run validates on the
    # same pairs
    val = pairs_for(*held_out, config, keep, generator, limit=50_000)
    val_noise = noise((len(val[0]) // share, config.negatives), generator)
    ids, documents = stream
    done = Counters(budget, generator)
    state = {"model": model, "counters": done} | ({"optimizer": adam} if adam else {})
    # the budget, not a number of steps, ends the loop: it has no total until its last pass
    with Loop(run, total_steps=None, state=state, checkpoint_every=config.checkpoint_every,
              advice=f"lower lr (now {start_lr:g})") as loop:  # fmt: skip
        while done.seconds < done.budget:
            started, losses = time.perf_counter(), []
            for chunk in range(0, len(ids), CHUNK):  # a pass, a chunk of the stream at a time
                if done.seconds + time.perf_counter() - started >= done.budget and losses:
                    break
                part = slice(chunk, chunk + CHUNK)
                centre, context = pairs_for(ids[part], documents[part], config, keep, generator)
                for start in range(0, len(centre), batch):
                    clock = done.seconds + time.perf_counter() - started
                    if clock >= done.budget and losses:  # a pass started makes one step at least
                        break
                    lr = start_lr * (1 - (1 - MIN_LR) * min(clock / done.budget, 1.0))
                    c, x = centre[start : start + batch], context[start : start + batch]
                    loss = model(c, x, noise((len(c) // share, config.negatives), generator))
                    loss.sum().backward()
                    losses.append(loss.mean().item())
                    loop.check(losses[-1], f"(pass {done.epoch + 1})")
                    if adam:
                        adam.param_groups[0]["lr"] = lr
                        adam.step()
                        adam.zero_grad()
                    else:
                        sparse_sgd_step(model, lr)
                    done.passes += len(c) / len(centre) * len(ids[part]) / len(ids)
                    # every step counts (the bar, resume); every 10th is recorded
                    loop.log_step({"kind": "step", "step": loop.step, "epoch": done.epoch,
                                   "loss": losses[-1], "lr": lr, "seconds": round(clock, 3)}
                                  if loop.step % 10 == 0 else None)  # fmt: skip
            done.seconds += time.perf_counter() - started
            if not losses:  # no pairs in a whole pass
                if loop.step == 0:
                    raise DataUnavailable("the corpus is too short to pair words with contexts")
                break
            if done.seconds >= done.budget:
                loop.total_steps = loop.step  # the last pass: its evaluation takes a checkpoint
            with torch.no_grad():
                val_loss = model(*val, val_noise).mean().item() if len(val[0]) else float("nan")
            record = {"kind": "epoch", "epoch": done.epoch, "step": loop.step,
                      "passes": round(done.passes, 3), "train_loss": float(np.mean(losses)),
                      "val_loss": val_loss, "wordsim353": scorer(),
                      "seconds": round(done.seconds, 3)}  # fmt: skip
            done.epoch += 1  # before the checkpoint: a resumed run goes on with the next pass
            loop.evaluated(record, f"skip-gram (ours): {done.seconds:.1f}/{done.budget:.1f} s, "
                                   f"WordSim ρ {record['wordsim353']:.2f}")  # fmt: skip
    return done.seconds, done.passes


def pairs_for(
    ids: torch.Tensor, documents: torch.Tensor, config: Config, keep: torch.Tensor,
    generator: torch.Generator, limit: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(centre, context) pairs of a stretch of the stream, after subsampling, shuffled, cut to
    whole groups of `share_negatives` (and to `limit` pairs when > 0)."""
    kept = torch.rand(len(ids), generator=generator) < keep[ids]
    centre, context = context_pairs(ids[kept], documents[kept], window=config.window,
                                    generator=generator)  # fmt: skip
    order = torch.randperm(len(centre), generator=generator)
    share = max(1, config.share_negatives)
    usable = min(len(centre), limit or len(centre)) // share * share
    return centre[order[:usable]], context[order[:usable]]


# -- 4. what the vectors know ----------------------------------------------------------------------
def answers(models: dict[str, WordVectors], ask, words: list[str]) -> dict[str, Any]:
    """Each model's answer (top words with cosines), or a note when it lacks one of `words`."""
    found = {}
    for name, vectors in models.items():
        missing = [w for w in words if w not in vectors]
        found[name] = f"unknown: {', '.join(missing)}" if missing else ask(vectors)
    return found


def draw_training(run: Run, scores: dict[str, dict], gensim_seconds: float) -> None:
    steps, epochs = run.history("step"), run.history("epoch")
    fig, (ax_loss, ax_rho) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax_loss.plot([s["seconds"] for s in steps], [s["loss"] for s in steps], lw=0.8,
                 color=figures.TRAIN, alpha=0.6, label="train (batch)")  # fmt: skip
    ax_loss.plot([e["seconds"] for e in epochs], [e["val_loss"] for e in epochs], "o-",
                 color=figures.VAL, label="held-out documents")  # fmt: skip
    ax_loss.set(xlabel="training seconds", ylabel="negative-sampling loss per pair",
                title="Loss (ours)")  # fmt: skip
    ax_lr = ax_loss.twinx()
    ax_lr.plot([s["seconds"] for s in steps], [s["lr"] for s in steps], color="grey", ls=":")
    ax_lr.set_ylabel("learning rate (dotted)", color="grey")
    ax_rho.plot([e["seconds"] for e in epochs], [e["wordsim353"] for e in epochs], "o-",
                color=figures.TRAIN, label="ours, after each pass")  # fmt: skip
    ax_rho.plot([gensim_seconds], [scores["gensim"]["wordsim353"]], "*", ms=14,
                color=figures.WRONG, label="gensim word2vec, at its end")  # fmt: skip
    if "glove" in scores:
        ax_rho.axhline(scores["glove"]["wordsim353"], color="grey", ls="--",
                       label="GloVe 6B-50d (6 billion words)")  # fmt: skip
    ax_rho.set(xlabel="training seconds", ylabel="Spearman ρ with people",
               title=f"WordSim-353 ({scores['ours']['wordsim353_pairs']} pairs known)")  # fmt: skip
    for ax in (ax_loss, ax_rho):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right" if ax is ax_loss else "lower right")
    fig.suptitle(f"Skip-gram · {run.id}")
    figures.save(fig, run.figure_path("training"))


def draw_map(run: Run, models: dict[str, WordVectors], groups: list[list[str]]) -> None:
    """Word groups projected on the first two principal components, one panel per model."""
    from sklearn.decomposition import PCA

    shown = {k: v for k, v in models.items() if k != "gensim"}
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 5.5), squeeze=False)
    for ax, (name, vectors) in zip(axes[0], shown.items(), strict=True):
        known = [(i, w) for i, g in enumerate(groups) for w in g if w in vectors]
        if len(known) >= 3:
            points = PCA(2).fit_transform(np.stack([vectors[w] for _, w in known]))
            colours = plt.cm.tab10(np.array([i for i, _ in known]) % 10)
            ax.scatter(points[:, 0], points[:, 1], c=colours, s=18)
            for (x, y), (_, word) in zip(points, known, strict=True):
                ax.annotate(word, (x, y), fontsize=8, xytext=(3, 2), textcoords="offset points")
        missing = sum(len(g) for g in groups) - len(known)
        ax.set(title=f"{name}: {len(known)} words" + (f" ({missing} unknown)" if missing else ""),
               xticks=[], yticks=[])  # fmt: skip
    fig.suptitle("Word groups, 2-D PCA of each model's vectors")
    figures.save(fig, run.figure_path("word-map"))
