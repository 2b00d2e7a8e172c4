"""language/201/unsolvable — what language models fail at however they are trained, each failure
measured with a number.

counting     "How many r in strawberry?" A GPT reads tokens, not letters: through BPE (the
             tokenizer of language/201/transformers, learnt on Shakespeare) 'strawberry' is
             'st' 'ra' 'w' 'ber' 'ry', and how many r each token holds is nowhere in its input:
             it must learn every token's spelling from the questions. The same small GPT,
             trained on the same questions ('strawberry r' → '3') about the same words, once on
             BPE tokens and once on characters, is tested on words it never saw; SmolLM2-135M-
             Instruct (BPE too, 2 T tokens of pretraining) is asked the same questions.
reversal     The reversal curse (Berglund et al. 2023): a GPT trained on invented facts "A is B"
             ("velo maritan is the inventor of the silver lantern.") completes "A is" word for
             word, and "B is" not at all: of the names of the facts it learnt one way, the right
             one is no likelier than the others (chance: one in their number). Facts also
             trained the other way round are recalled both ways: the model can answer "B is",
             it just never learnt this B → A from A → B.
addition     Length generalisation: a GPT trained on sums of two numbers of 1 to 5 digits,
             written the way it learns them fastest (every number least significant digit
             first, filled with zeros to 5 digits: '32100+54000=861000', each digit of the
             answer a fixed distance after the two it adds), adds them without a mistake and
             fails at 6 to 10 digits: what it learnt were distances, not addition.
             layout=plain ('123+45=861', only the answer reversed, as in Lee et al. 2023) is
             harder to learn at all: in the same 2,000 steps it added 1 digit (99 %), 2 digits
             33 % of the time and 3 to 5 never.
calibration  How far an LLM's confidence can be trusted: SmolLM2 asked zero-shot for the
             sentiment of movie-review sentences, its probability of the answer it gives against
             how often that answer is right (a reliability diagram; expected calibration error).

Each GPT is language/201/transformers' model (deepscape.models.gpt, small) trained by the core
Trainer with the LanguageModeling task, in a run of its own (train_on=TASK), which this run
stages and reads: `--resume` reuses them. `parts=` chooses the experiments.

What it found, with 1 thread beside other jobs (load average 4.2 to 4.7 on 2 cores), the default
in 9.0 minutes (`python benchmarks/language_201_unsolvable.py threads=1`, docs/benchmarks.md):
- counting, 777 questions about 300 held-out words (of each a letter it repeats, one it has once,
  one it lacks; always the commonest count: 38.6 %), 3,000 steps of 2 blocks of 64: the GPT on
  characters 99.2 %, on BPE 91.9 % (ten times the errors); SmolLM2 40.0 % of 200. After 1,500
  steps 75.7 % and 65.1 %. Asked 'r in strawberry=' (the letter first), the GPT on characters
  answered 49 % after 1,500 steps (56 % with 3 blocks): the count is written where the letter
  is read, or the model must first carry the letter there.
- the reversal curse, 100 facts, 800 steps: 100 % of "A is" completed, 0 % of "B is" (the right
  name the likeliest for 1.25 % of them: chance), 100 % of the 20 facts also taught backwards.
- addition, 2,000 steps of 64 new sums each: 100 % of 100 sums at each of 1 to 5 digits, 0 % at each
  of 6 to 10.
- calibration, SmolLM2 on MR-200's 200 sentences: 64.5 % right, mean confidence 65.0 %, ECE
  0.055.
The benchmark's larger run (12.4 minutes, load 4.7 to 5.2): 300 facts in 1,500 steps, 100 %
forwards and 0 % backwards (the right name never the likeliest; chance 0.42 %), the 60 taught
both ways 100 %; sums in 3,000 steps, 100 % at 1 to 5 digits and 0 % at 6 to 10 (200 a length);
SmolLM2 on SST-2's first 600 test sentences 67.5 % right, mean confidence 65.9 %, ECE 0.082.

    deepscape run language/201/unsolvable                                # all four, offline
    deepscape run language/201/unsolvable parts=reversal,addition
    deepscape run language/201/unsolvable parts=addition test_digits=1,2,3,4,5,6,7,8
    deepscape run language/201/unsolvable parts=calibration calibration_dataset=sst2 \\
        data_dir=../shared/data/sentclf sentences=1821                  # SST-2's test sentences
    deepscape run language/201/unsolvable train_on=reversal facts=200     # one GPT
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch

from deepscape import distributed, figures
from deepscape.config import ConfigError, TrainConfig, format_value, option
from deepscape.data import get_dataset
from deepscape.data.shakespeare import CharTokenizer, load_text
from deepscape.labs.language import l201_unsolvable_figures as drawn
from deepscape.labs.language import l201_unsolvable_tasks as tasks
from deepscape.labs.language.l201_bpe import BytePairTokenizer
from deepscape.labs.language.l201_unsolvable_tasks import Example
from deepscape.models.gpt import GPT, GPTConfig
from deepscape.models.language import load_llm, prompt_ids, zero_shot_scores
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import LanguageModeling
from deepscape.train import Trainer

LAB = "language/201/unsolvable"
PARTS = ("counting", "reversal", "addition", "calibration")
SENTIMENT = (
    "What is the sentiment of this movie review? Answer with one word: positive or negative."
)
COUNTING = "Count the letters. Answer with one number."
BPE_TEXT = 1_000_000  # characters of Shakespeare the BPE learns its merges from


@dataclass
class Config(TrainConfig):
    parts: tuple[Literal["counting", "reversal", "addition", "calibration"], ...] = option(
        ("counting", "reversal", "addition", "calibration"), "the experiments to run"
    )
    train_on: Literal["none", "counting-char", "counting-bpe", "reversal", "addition"] = option(
        "none", "none: the lesson; else train one GPT on that task (what the parts' runs do)"
    )
    # the GPT: language/201/transformers' model, small enough for a minute on a CPU
    style: Literal["gpt2", "llama"] = option(
        "llama", "gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU"
    )
    n_layer: int = option(2, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(64, "width of the residual stream")
    batch_size: int = option(64, "lines per step")
    lr: float = option(3e-3, "peak learning rate")
    schedule: Literal["constant", "cosine", "onecycle"] = option("cosine", "LR schedule")
    warmup: float = option(0.05, "fraction of steps spent warming the LR up")
    weight_decay: float = option(0.01, "decoupled weight decay on weight matrices")
    betas: tuple[float, float] = option((0.9, 0.99), "AdamW's averaging of gradients")
    grad_clip: float = option(1.0, "clip the gradients' global norm to this")
    max_steps: int = option(0, "steps for every task's GPT (0: each task's own *_steps)")
    # counting letters
    counting_steps: int = option(3000, "steps of the counting GPTs (characters and BPE)")
    word_lengths: tuple[int, int] = option((4, 10), "shortest and longest words (letters)")
    test_words: int = option(300, "Shakespeare's words held out to test on (never trained on)")
    vocab_size: int = option(1024, "tokens the BPE learns (256 bytes + merges)")
    llm_questions: int = option(200, "held-out questions the LLM is asked (0: it is not asked)")
    # the reversal curse
    facts: int = option(100, "invented facts 'A is B'")
    both_ways: float = option(0.2, "share of the facts also trained as 'B is A' (the control)")
    reversal_steps: int = option(800, "steps of the reversal GPT")
    # length generalisation in addition
    train_digits: int = option(5, "sums of numbers of 1 to this many digits are trained on")
    test_digits: tuple[int, ...] = option(
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10), "digits of both numbers of the test sums, a score each"
    )
    test_sums: int = option(100, "test sums of each length")
    layout: Literal["padded", "plain"] = option(
        "padded",
        "padded: numbers reversed and filled with zeros to train_digits; plain: "
        "'123+45=', only the answer reversed (after 2,000 steps: 1 digit 99 %, 2 digits 33 %)",
    )
    addition_steps: int = option(2000, "steps of the addition GPT (each on new sums)")
    # calibration
    llm: str = option("SmolLM2-135M-Instruct", "the instruct LLM asked (a hub id when online)")
    calibration_dataset: Literal["mr-200", "sst2"] = option(
        "mr-200", "sentences whose sentiment the LLM is asked"
    )
    data_dir: str | None = option(None, "folder with the sentence files (sst2: stsa.binary.*)")
    sentences: int = option(400, "sentences asked: the test split's first, then the others'")
    bins: int = option(10, "bins of confidence in the reliability diagram")
    figures: bool = option(True, "draw the figures")

    @property
    def steps(self) -> dict[str, int]:
        own = {"counting-char": self.counting_steps, "counting-bpe": self.counting_steps,
               "reversal": self.reversal_steps, "addition": self.addition_steps}  # fmt: skip
        return {task: self.max_steps or steps for task, steps in own.items()}


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    if config.train_on != "none":
        return train_one(config, run)
    metrics: dict[str, Any] = {}
    if "counting" in config.parts:
        metrics |= counting(config, run)
    if "reversal" in config.parts:
        metrics |= reversal(config, run)
    if "addition" in config.parts:
        metrics |= addition(config, run)
    if "calibration" in config.parts:
        metrics |= calibration(config, run)
    return metrics


def check(config: Config) -> None:
    """Bad options, each refused in one line before anything trains."""
    if not config.parts:
        raise ConfigError(f"parts is empty: give some of {', '.join(PARTS)}")
    shortest, longest = config.word_lengths
    if not 1 <= shortest <= longest:
        raise ConfigError(f"word_lengths={shortest},{longest}: give 1 ≤ shortest ≤ longest")
    if not 1 <= config.train_digits <= 15 or not config.test_digits or \
            not all(1 <= d <= 18 for d in config.test_digits):  # fmt: skip
        raise ConfigError(f"train_digits={config.train_digits}, test_digits="
                          f"{format_value(config.test_digits)}: numbers of 1 to 15 digits to "
                          "train on, 1 to 18 to test on")  # fmt: skip
    if not 2 <= config.facts <= len(tasks.ROLES) * len(tasks.ADJECTIVES) * len(tasks.THINGS):
        raise ConfigError(f"facts={config.facts}: give 2 to 3,072 facts")
    if not 0 <= config.both_ways < 1:
        raise ConfigError(f"both_ways={config.both_ways:g}: a share of the facts, in [0, 1)")
    if config.vocab_size <= 256:
        raise ConfigError(f"vocab_size={config.vocab_size}: BPE starts from 256 bytes, ask more")
    if config.n_embd % config.n_head:
        raise ConfigError(f"n_embd={config.n_embd} must split into n_head={config.n_head} heads")
    if min(config.bins, config.sentences, config.test_sums, config.test_words) < 1:
        raise ConfigError("bins, sentences, test_sums and test_words must be at least 1")


# -- one GPT on one task, in a run of its own ------------------------------------------------------
@dataclass
class Lesson:
    """A task's text: the lines to learn, what the loss reads, and the tests."""

    train: list[Example]
    whole_line: bool  # the loss on every token (a fact), or only on the answer (a question)
    tests: dict[str, list[Example]]  # by name: what is scored
    watched: list[Example]  # the validation loss in training: what the task is meant to learn


def train_one(config: Config, run: Run) -> dict[str, Any]:
    """train_on=TASK: the task's GPT, trained as language/201/transformers trains it (next-token
    prediction, the core Trainer), then tested on its held-out prompts."""
    lesson = lesson_for(config)
    tokenizer = tokenizer_for(config)
    tokenizer.save(run.dir / "tokenizer.json")
    every = [*lesson.train, *(e for tests in lesson.tests.values() for e in tests)]
    # the context holds the longest prompt with the longest answer (the choice among answers
    # pairs them all)
    length = max(len(tokenizer.encode(e.prompt)) for e in every) + \
        max(len(tokenizer.encode(e.answer)) for e in every)  # fmt: skip
    train = tasks.rows(lesson.train, tokenizer.encode, length, whole_line=lesson.whole_line)
    watched = tasks.rows(lesson.watched, tokenizer.encode, length, whole_line=lesson.whole_line)
    run.update_summary(data={"task": config.train_on, "train_lines": len(lesson.train),
                             "tokens_per_line": round(float((train.targets != tasks.IGNORE)
                                                      .sum(1).float().mean()), 1),
                             "vocabulary": tokenizer.vocab_size})  # fmt: skip

    model = GPT(model_config(config, tokenizer.vocab_size, length))
    steps = config.steps[config.train_on]
    recipe = dataclasses.replace(config, max_steps=steps, eval_every=max(1, steps // 4))
    model = Trainer(recipe, run, task=LanguageModeling()).fit(model, train, watched)
    if config.figures:
        figures.training_curves(run, title=f"GPT ({config.train_on}): loss")

    # greedy answers to every test, scored by exact match
    scores, said = {}, {}
    for name, examples in lesson.tests.items():
        answers = tasks.completions(model, [e.prompt for e in examples], tokenizer.encode,
                                    tokenizer.decode, stop="\n",
                                    max_new_tokens=longest_answer(examples, tokenizer))  # fmt: skip
        right = [a == e.answer for a, e in zip(answers, examples, strict=True)]
        scores[name] = sum(right) / len(right)
        said[name] = [{"prompt": e.prompt.strip(), "answer": e.answer.strip(), "said": a.strip()}
                      for e, a in list(zip(examples, answers, strict=True))[:5]]  # fmt: skip
    metrics: dict[str, Any] = {f"{name}_accuracy": v for name, v in scores.items()}
    if config.train_on == "reversal":  # knowing the answer, short of writing it out
        for name in ("forward", "reverse"):
            metrics[f"{name}_choice_accuracy"] = tasks.choice_accuracy(
                model, lesson.tests[name], tokenizer.encode
            )
        metrics["choice_chance"] = 1 / len(lesson.tests["reverse"])
    if config.train_on.startswith("counting"):
        answers = [e.answer for e in lesson.train]
        common = max(set(answers), key=answers.count)
        held_out = lesson.tests["held_out"]
        metrics["majority"] = sum(e.answer == common for e in held_out) / len(held_out)
    evaluations = run.evaluations()
    run.update_summary(answers=said)
    return {**metrics, "train_loss": evaluations[-1]["train_loss"],
            "train_seconds": evaluations[-1]["seconds"], "steps": steps,
            "parameters": model.num_parameters()}  # fmt: skip


def longest_answer(examples: list[Example], tokenizer: CharTokenizer | BytePairTokenizer) -> int:
    """Tokens enough for any answer in `examples`, and one more: a longer answer is wrong."""
    return max(len(tokenizer.encode(e.answer)) for e in examples) + 1


def lesson_for(config: Config) -> Lesson:
    task = config.train_on
    if task.startswith("counting"):
        train_words, test_words = counting_words(config)
        rng = random.Random(config.seed)
        train = tasks.counting_examples(train_words, rng, absent=2)
        held_out = counting_tests(config, test_words)
        # the same kinds of question about words trained on (their letters' counts were taught)
        seen = counting_tests(config, rng.sample(train_words, len(test_words)))
        return Lesson(train, False, {"held_out": held_out, "seen": seen}, held_out[:256])
    if task == "reversal":
        facts = tasks.invented_facts(config.facts, config.seed)
        one_way, both = split_facts(config, facts)
        train = [f.forward() for f in facts] + [f.reverse() for f in both]
        # with no fact trained both ways, the control asks a forward question (and is not shown)
        control = [f.reverse() for f in both] or [facts[0].forward()]
        tests = {"forward": [f.forward() for f in one_way],
                 "reverse": [f.reverse() for f in one_way],
                 "reverse_both_ways": control}  # fmt: skip
        return Lesson(train, True, tests, tests["forward"])
    rng = random.Random(config.seed)
    trained = range(1, config.train_digits + 1)
    steps = config.steps["addition"]
    # both numbers of one length, as the tests ask; new sums at every step, none seen twice
    width = config.train_digits  # padded: the trained numbers all look train_digits long
    train = tasks.sums(steps * config.batch_size, trained, rng, layout=config.layout,
                       width=width)  # fmt: skip
    watched = tasks.sums(256, trained, random.Random(config.seed + 2), layout=config.layout,
                         width=width)  # fmt: skip
    test_rng = random.Random(config.seed + 1)  # the same test sums whatever the training budget
    tests = {f"digits_{n}": tasks.sums(config.test_sums, [n], test_rng, layout=config.layout,
                                       width=width)
             for n in config.test_digits}  # fmt: skip
    return Lesson(train, False, tests, watched)


def counting_words(config: Config) -> tuple[list[str], list[str]]:
    """Shakespeare's words, shuffled with the seed: the first `test_words` held out."""
    words = tasks.words_of(load_text("shakespeare"), shortest=config.word_lengths[0],
                           longest=config.word_lengths[1])  # fmt: skip
    random.Random(config.seed).shuffle(words)
    if len(words) <= config.test_words:
        raise ConfigError(f"test_words={config.test_words}: there are {len(words)} words of "
                          f"{config.word_lengths[0]}–{config.word_lengths[1]} letters")  # fmt: skip
    return words[config.test_words :], words[: config.test_words]


def counting_tests(config: Config, test_words: list[str]) -> list[Example]:
    """Of each held-out word: a letter it repeats, one it has once, one it lacks."""
    return tasks.counting_tests(test_words, random.Random(config.seed + 1))


def split_facts(config: Config, facts: list[tasks.Fact]) -> tuple[list, list]:
    """(facts trained one way, facts also trained the other way round)."""
    both = round(config.both_ways * len(facts))
    return facts[both:], facts[:both]


def tokenizer_for(config: Config) -> CharTokenizer | BytePairTokenizer:
    """BPE learnt on Shakespeare (as language/201/transformers learns it) for counting-bpe;
    characters for the rest (the digits, letters and punctuation the tasks use)."""
    if config.train_on == "counting-bpe":
        return BytePairTokenizer().train(load_text("shakespeare")[:BPE_TEXT], config.vocab_size)
    return CharTokenizer.from_text("\n .=+0123456789abcdefghijklmnopqrstuvwxyz")


def model_config(config: Config, vocab_size: int, length: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=length, n_layer=config.n_layer,
                     n_head=config.n_head, n_embd=config.n_embd, bias=False,
                     style=config.style)  # fmt: skip


def staged(config: Config, run: Run, task: str) -> Run:
    """The finished run of this lab that trained `task`'s GPT (made now, or reused)."""
    # a stage's runs take seeds of their own (0 here): the tasks are made up with theirs
    own = {"parts", "train_on", "figures", "data_dir", "seed"}
    (trained,) = stage(run, task, LAB, Config, [*inherited(config, own), f"train_on={task}"])
    if trained.status != "finished":
        raise RuntimeError(f"run {trained.id} ({task}) did not finish: "
                           f"{trained.summary.get('error', 'see `deepscape runs`')}")  # fmt: skip
    return trained


# -- 1. counting letters ---------------------------------------------------------------------------
def counting(config: Config, run: Run) -> dict[str, Any]:
    trained = {kind: staged(config, run, f"counting-{kind}") for kind in ("char", "bpe")}
    found = {kind: r.summary["metrics"] for kind, r in trained.items()}
    metrics = {f"counting_{kind}_{split}": found[kind][f"{split}_accuracy"]
               for kind in found for split in ("held_out", "seen")}  # fmt: skip
    metrics["counting_majority"] = found["char"]["majority"]
    bars = {
        "GPT on characters": (metrics["counting_char_seen"], metrics["counting_char_held_out"]),
        "GPT on BPE tokens": (metrics["counting_bpe_seen"], metrics["counting_bpe_held_out"]),
    }
    if config.llm_questions:
        asked = trained["char"].config_as(Config)  # the held-out words of the GPTs' runs
        _, test_words = counting_words(asked)
        questions = random.Random(asked.seed).sample(
            counting_tests(asked, test_words), config.llm_questions
        )
        accuracy, speed = llm_counts(config, questions)
        metrics["counting_llm_held_out"] = accuracy
        bars[f"{config.llm} asked (BPE)"] = (math.nan, accuracy)
        run.update_summary(counting_llm=speed)
    if config.figures:
        drawn.counting(run, bars, metrics["counting_majority"])
    return metrics


def llm_counts(config: Config, questions: list[Example]) -> tuple[float, dict[str, Any]]:
    """The LLM's accuracy at the questions, asked zero-shot: its likeliest first answer among
    the digits 0–9 (read from its probabilities, not parsed), and how fast it read them."""
    llm = load_llm(config.llm)
    texts = [f"How many times does the letter '{letter}' appear in the word '{word}'?"
             for word, letter in map(tasks.counted, questions)]  # fmt: skip
    digits = [str(d) for d in range(10)]
    started = time.perf_counter()
    scores = zero_shot_scores(llm, texts, digits, question=COUNTING, progress=False)
    seconds = time.perf_counter() - started
    said = [digits[i] for i in scores.argmax(1).tolist()]
    right = [s == q.answer.strip() for s, q in zip(said, questions, strict=True)]
    return sum(right) / len(right), llm_speed(llm, COUNTING, texts, seconds)


def llm_speed(llm: Any, question: str, texts: list[str], seconds: float) -> dict[str, Any]:
    """What every LLM figure states: the model, its precision, threads and tokens per second."""
    tokens = sum(len(prompt_ids(llm.tokenizer, question, t)) for t in texts)
    dtype = str(next(llm.model.parameters()).dtype).removeprefix("torch.")
    return {"model": llm.name, "source": llm.source, "precision": dtype,
            "threads": torch.get_num_threads(), "prompts": len(texts), "tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}  # fmt: skip


# -- 2. the reversal curse -------------------------------------------------------------------------
def reversal(config: Config, run: Run) -> dict[str, Any]:
    trained = staged(config, run, "reversal")
    found = trained.summary["metrics"]
    metrics = {name: found[name] for name in (
        "forward_accuracy", "reverse_accuracy", "reverse_both_ways_accuracy",
        "forward_choice_accuracy", "reverse_choice_accuracy", "choice_chance")}  # fmt: skip
    if config.figures:
        drawn.reversal(run, metrics, trained.summary.get("answers", {}),
                       both_ways=round(config.both_ways * config.facts))  # fmt: skip
    return metrics


# -- 3. length generalisation in addition ----------------------------------------------------------
def addition(config: Config, run: Run) -> dict[str, Any]:
    found = staged(config, run, "addition").summary["metrics"]
    by_length = {n: found[f"digits_{n}_accuracy"] for n in config.test_digits}
    seen = [v for n, v in by_length.items() if n <= config.train_digits]
    unseen = [v for n, v in by_length.items() if n > config.train_digits]
    metrics: dict[str, Any] = {f"addition_digits_{n}": v for n, v in by_length.items()}
    if seen:
        metrics["addition_in_length_accuracy"] = sum(seen) / len(seen)
    if unseen:
        metrics["addition_longer_accuracy"] = sum(unseen) / len(unseen)
    if config.figures:
        drawn.addition(run, by_length, config.train_digits)
    return metrics


# -- 4. calibration --------------------------------------------------------------------------------
def calibration(config: Config, run: Run) -> dict[str, Any]:
    data = get_dataset(config.calibration_dataset, config.data_dir)
    texts, targets = [], []
    for split in (data.test, data.validation, data.train):  # the LLM learns from none of them
        texts += split.texts
        targets += split.targets.tolist()
    texts, targets = texts[: config.sentences], torch.tensor(targets[: config.sentences])
    llm = load_llm(config.llm)
    started = time.perf_counter()
    scores = zero_shot_scores(llm, texts, list(data.classes), question=SENTIMENT, progress=False)
    speed = llm_speed(llm, SENTIMENT, texts, time.perf_counter() - started)
    # its confidence in the answer it gives: the answer's share of the probability of both
    probabilities = scores.softmax(1)
    confidence, answers = probabilities.max(1)
    found = tasks.reliability(confidence, answers == targets, config.bins)
    run.update_summary(calibration={**dataclasses.asdict(found), "llm": speed,
                                    "dataset": data.name, "source": data.source})  # fmt: skip
    if config.figures:
        drawn.reliability(run, found, speed, data.name)
    return {"calibration_ece": found.ece,
            "calibration_accuracy": float((answers == targets).float().mean()),
            "calibration_confidence": float(confidence.mean()),
            "llm_tokens_per_s": speed["tokens_per_s"]}  # fmt: skip
