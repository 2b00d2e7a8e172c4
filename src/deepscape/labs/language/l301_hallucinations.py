"""language/301/hallucinations — how often a small LLM states what is not so, and what cuts it.

A hallucination, measured here: an answer to a question that has none. Half the questions have a
known answer (Factbook fields of real countries: capital, population, area, internet code,
independence), half have none — the same field of a country whose entry lacks it ("When did
Aruba become independent?") or any field of a made-up country ("What is the capital of
Norvania?"). Two numbers for every system, both on held-out questions:

- hallucination rate: the share of unanswerable questions it answers instead of abstaining;
- coverage: the share of answerable questions it answers (and, of those, the share right).

A system that never answers never hallucinates, so the rate means something only beside the
coverage. The plain model (SmolLM2-135M-Instruct, closed-book, shown the answer's form by three
invented examples) answers everything. The interventions:

1. abstain: the plain model's answer withheld when its confidence is under a threshold.
2. grounded: language/201/augmented-search's reader, shown the top `k` Factbook passages of
   its best retriever (hybrid: BM25 and dense, fused), told to cite them and to say "I don't
   know" when they do not say.
3. grounded-abstain: grounded, withheld under a threshold of its confidence.
4. self-consistency: grounded, `samples` more answers drawn at `temperature`; the confidence is
   the share that agree with the greedy answer.
5. citations: grounded, an answer dropped unless every passage it cites holds it — names the
   question's subject and states the answer (a made-up country's "capital", copied from a real
   country's passage, fails: that passage is about another country).
6. combined: grounded, with every signal in one confidence.

A confidence is calibrated (Platt scaling): a logistic regression of "the question has an
answer" on the system's signals — the answer's mean token log-probability (abstain), with
whether a shown passage names the question's subject and the most of the question's words one
passage holds (grounded-abstain), the samples' agreement (self-consistency), and all of these
and whether a shown passage holds the claim (combined). It is fit on a calibration split, and
the threshold is the highest that still answers `coverage` of that split's answerable
questions, plus a margin of 1.64 binomial standard errors (30 questions vary by ±7 points) —
or, where the system answers fewer than that anyway, the lowest that keeps all it answers;
then both are measured on the test split, whose questions they never saw.

The risk–coverage curves show every threshold at once: the share of questions answered against
the share of answered ones that are wrong (a hallucination or a wrong answer), and the
answerable questions' coverage against the hallucination rate. The reported ratio is the test
rate of the system with the lowest calibration rate among those answering at least `coverage`
of the calibration split's answerable questions, divided by the plain model's (the plain
model's own, ratio 1, if it answers fewer than `coverage` of the test's answerable ones).
Every question, each system's answer, confidence and whether it
abstained are written to traces.jsonl in the run.

What it found (30 + 30 test questions, as many for calibration; one thread each, two seeds at a
time on 2 cores, 8–11 minutes a seed; benchmarks/language_301_hallucinations.py): the plain model
answered every unanswerable question (rate 100 %) and got 3–13 % of the answerable ones right.
Grounding raised accuracy to 23–43 % but hardly the rate (87–97 %): shown a real country's
passages, the reader copies a figure from them for Norvania, or the demonstrations' invented
population. Citation checking cut the rate to 3–17 % but kept only 7–23 % of the answerable
questions (the reader often cites [3] or [4] when shown two). Calibrated abstention is where the
trade is made: on seeds 1–4, the system chosen on calibration (grounded-abstain three times,
combined once) answered 30 %, 37 %, 37 % and 27 % of the unanswerable questions at 83–100 %
coverage — ratios 0.30, 0.37, 0.37, 0.27, median 0.33 — catching every made-up country (no
shown passage names it) and 53–73 % of missing fields still answered; closed-book abstain and
self-consistency stayed at 67–90 %. It took three changes, made after seeds 1–3 had missed
(median 0.70) and judged on seed 4, unseen: the reader reads augmented-search's best retriever,
hybrid, not dense alone; a question's names are normalised as passages are ("Timor-Leste",
"Côte d'Ivoire" and "The Bahamas" were never found named); and a system that answers fewer
calibration questions than the margin asks keeps all it answers but drops what it is less sure
of, where before it set no threshold at all. With 30 questions of each sort a seed still moves
the rate by tens of points.

    deepscape run language/301/hallucinations                    # the Factbook, offline
    deepscape run language/301/hallucinations questions=10 samples=2   # a quick look
    deepscape run language/301/hallucinations dataset=squad data_dir=path/to/squad2
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

from deepscape import distributed
from deepscape.config import ConfigError, closest, option

Intervention = Literal[
    "abstain", "grounded", "grounded-abstain", "self-consistency", "citations", "combined"
]
INTERVENTIONS = ("abstain", "grounded", "grounded-abstain", "self-consistency", "citations",
                 "combined")  # fmt: skip
# each system: the answers it starts from, the signals of its calibrated confidence (none: no
# threshold), and whether it checks its citations
SYSTEMS = {
    "plain": ("closed", (), False),
    "abstain": ("closed", ("logprob",), False),
    "grounded": ("grounded", (), False),
    "grounded-abstain": ("grounded", ("logprob", "subject", "overlap"), False),
    "self-consistency": ("grounded", ("agreement", "logprob"), False),
    "citations": ("grounded", (), True),
    "combined": ("grounded", ("logprob", "agreement", "subject", "overlap", "supported"), False),
}


@dataclass
class Config:
    seed: int = option(0, "random seed: which questions, and the samples drawn")
    threads: int = option(1, "CPU threads for PyTorch (0: all cores)")
    dataset: Literal["factbook", "squad"] = option(
        "factbook", "factbook (offline) or squad (SQuAD 2.0: data_dir, or the hub online)"
    )
    data_dir: str | None = option(None, "SQuAD 2.0 JSON (a file, or a folder holding it)")
    documents: int = option(0, "SQuAD paragraphs to read (0: all)")
    llm: str = option("SmolLM2-135M-Instruct", "the LLM (offline: SmolLM2's GGUF)")
    encoder: str = option("all-MiniLM-L6-v2", "the sentence encoder of dense retrieval")
    questions: int = option(30, "answerable and unanswerable questions each, per split")
    interventions: tuple[Intervention, ...] = option(INTERVENTIONS, "what is measured beside plain")
    k: int = option(2, "passages the grounded reader is shown")
    retriever: Literal["hybrid", "dense", "bm25"] = option(
        "hybrid", "what finds them: augmented-search's fusion of BM25 and dense (its best), or one"
    )
    words: int = option(80, "words a passage holds at most")
    coverage: float = option(0.8, "share of answerable questions a system must still answer")
    samples: int = option(4, "answers sampled for self-consistency")
    temperature: float = option(0.7, "temperature of the samples")
    max_new_tokens: int = option(16, "tokens of one answer")
    figures: bool = option(True, "draw the figure")


def check(config: Config) -> None:
    for name in config.interventions:
        if name not in INTERVENTIONS:
            raise ConfigError(f"no intervention '{name}'{closest(name, INTERVENTIONS)}: give "
                              f"some of {', '.join(INTERVENTIONS)}")  # fmt: skip
    if config.k < 1:
        raise ConfigError(f"k={config.k}: give k ≥ 1 passages for the grounded reader")
    for name in ("questions", "words", "max_new_tokens"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)}: give 1 or more")
    if "self-consistency" in config.interventions and config.samples < 2:
        raise ConfigError(f"samples={config.samples}: self-consistency needs ≥ 2 (or drop it "
                          "from interventions=)")  # fmt: skip
    if not 0 < config.coverage <= 1:
        raise ConfigError(f"coverage={config.coverage}: give a share in (0, 1]")
    if config.temperature <= 0:
        raise ConfigError(f"temperature={config.temperature}: give > 0 (0 would draw the greedy "
                          "answer every time)")  # fmt: skip
    if config.data_dir and config.dataset != "squad":
        raise ConfigError("data_dir= is read by dataset=squad: add dataset=squad")


@dataclass
class Reply:
    """One system's reply to one question."""

    answer: str
    confidence: float
    abstained: bool


# -- the systems ----------------------------------------------------------------------------------
def choose_threshold(confidences: list[float], answerable: int, coverage: float) -> float:
    """The highest threshold at which the `answerable` calibration questions are still answered
    often enough that held-out ones will be too: `coverage` plus a margin of 1.64 binomial
    standard errors (a one-sided 95 % bound: 30 questions vary by ±7 points), given the
    confidences of those answered before any threshold. When the system answers no more than
    that anyway, the threshold keeps every one it answered: the lowest of their confidences,
    which costs no coverage and still drops the unanswerable questions it is less sure of
    (−inf: none answered)."""
    margin = 1.64 * math.sqrt(coverage * (1 - coverage) / max(1, answerable))
    keep = math.ceil(min(1.0, coverage + margin) * answerable)
    ranked = sorted(confidences, reverse=True)
    return ranked[min(keep, len(ranked)) - 1] if ranked and keep > 0 else -math.inf


def signals(system: str, said: Any, question: Any, shown: list[str]) -> list[float]:
    """What a system's confidence is made from: the answer's mean token log-probability, the
    samples' agreement with it, whether a shown passage names the question's subject, the most
    of the question's words one passage holds, and whether one holds the claim (a citation
    check that ignores which passage is cited)."""
    from deepscape.labs.language import l301_hallucinations_ask as ask

    values = {
        "logprob": lambda: said.confidence,
        "agreement": lambda: ask.agreement(said),
        "subject": lambda: float(any(ask.mentions(p, question.text) for p in shown)),
        "overlap": lambda: max(ask.overlap(p, question.text) for p in shown),
        "supported": lambda: float(any(ask.supports(p, question.text, said.answer) for p in shown)),
    }  # fmt: skip
    return [values[name]() for name in SYSTEMS[system][1]]


class Calibrator:
    """Platt scaling: a logistic regression of "the question is answerable" on a system's
    signals, fit on the calibration questions it answered — its confidence is then a
    probability, and signals of any scale combine. Fit on one class only, it passes the first
    signal through."""

    def __init__(self, rows: list[list[float]], answerable: list[bool]):
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.array(rows, dtype=float).reshape(len(rows), -1)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-9
        self.model = None
        if len(set(answerable)) == 2:
            self.model = LogisticRegression().fit((x - self.mean) / self.scale, answerable)

    def __call__(self, row: list[float]) -> float:
        import numpy as np

        if self.model is None:
            return row[0]
        x = (np.array([row], dtype=float) - self.mean) / self.scale
        return float(self.model.predict_proba(x)[0, 1])


def replies(system: str, said: dict[str, list[Any]], questions: list[Any],
            shown: list[list[str]], calibrator: Calibrator | None = None,
            threshold: float = -math.inf) -> list[Reply]:  # fmt: skip
    """A system's replies: its source's answers, dropped where they decline, where its citation
    check fails, or where its confidence (calibrated, else the mean log-probability) is under
    `threshold`."""
    from deepscape.labs.language import l301_hallucinations_ask as ask

    source, _, citations = SYSTEMS[system]
    out = []
    for n, s in enumerate(said[source]):
        value = s.confidence
        if calibrator is not None:
            value = calibrator(signals(system, s, questions[n], shown[n]))
        dropped = ask.abstains(s.answer) or value < threshold
        if citations and not dropped:
            dropped = not ask.cited_support(s.answer, questions[n].text, shown[n])
        out.append(Reply(s.answer, value, dropped))
    return out


def scores(questions: list[Any], given: list[Reply]) -> dict[str, float]:
    """Hallucination rate, coverage, accuracy on the answered answerable ones, and risk."""
    from deepscape.labs.language.l301_hallucinations_ask import correct

    answerable = [(q, r) for q, r in zip(questions, given, strict=True) if q.answers]
    unanswerable = [r for q, r in zip(questions, given, strict=True) if not q.answers]
    answered = [(q, r) for q, r in answerable if not r.abstained]
    right = sum(correct(r.answer, q.answers) for q, r in answered)
    hallucinated = sum(not r.abstained for r in unanswerable)
    return {
        "hallucination_rate": hallucinated / max(1, len(unanswerable)),
        "coverage": len(answered) / max(1, len(answerable)),
        "accuracy": right / max(1, len(answered)),
        # wrong among all answered: a hallucination, or a wrong answer to an answerable one
        "risk": (len(answered) - right + hallucinated) / max(1, len(answered) + hallucinated),
    }


def curve(questions: list[Any], given: list[Reply]) -> list[dict[str, float]]:
    """`scores` at every threshold: the risk–coverage curve of a confidence."""
    values = sorted({r.confidence for r in given if not r.abstained}, reverse=True)
    points = []
    for t in [math.inf, *values]:
        kept = [Reply(r.answer, r.confidence, r.abstained or r.confidence < t) for r in given]
        point = scores(questions, kept)
        point["answered"] = sum(not r.abstained for r in kept) / len(kept)
        points.append(point)
    return points


# -- the lab --------------------------------------------------------------------------------------
def run(config: Config, run: Any) -> dict[str, Any]:
    import torch

    from deepscape.cache import cache_key, cached
    from deepscape.labs.language import l201_augmented_search_reader as reader
    from deepscape.labs.language import l301_hallucinations_data as data
    from deepscape.labs.language.l201_augmented_search import Retrievers
    from deepscape.labs.language.l301_hallucinations_ask import ask
    from deepscape.models.language import load_encoder, load_llm
    from deepscape.retrieval import DenseIndex, SparseIndex

    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    started = time.perf_counter()
    if config.dataset == "factbook":
        corpus = data.factbook_corpus("sentences", config.words, 0)
    else:
        corpus = data.squad_v2(config.data_dir, "sentences", config.words, 0, config.documents)
    split = data.split(corpus.questions, config.questions, config.seed)
    texts = [p.text for p in corpus.passages]
    encoder = load_encoder(config.encoder)
    key = cache_key(config.encoder, corpus.name, f"sentences{config.words}-", len(texts), *texts)
    vectors = cached(run, "passage-vectors", key,
                     lambda: encoder.embed(texts, description="embedding passages"))  # fmt: skip
    dense = DenseIndex.build(vectors, kind="flat", encoder=encoder.name)
    retrievers = Retrievers(corpus.passages, SparseIndex.build(texts), dense, encoder)
    llm = load_llm(config.llm)
    wanted = set(config.interventions)
    grounded = wanted - {"abstain"}
    samples = config.samples if "self-consistency" in wanted else 0
    said: dict[str, dict[str, list[Any]]] = {}
    shown: dict[str, list[list[str]]] = {}
    seconds: dict[str, float] = {}
    for name, questions in (("calibration", split.calibration), ("test", split.test)):
        asked = [q.text for q in questions]
        ranking = retrievers.search(asked, k=min(config.k, len(texts)))[config.retriever]
        shown[name] = [[corpus.passages[p].text for p in r[: config.k]] for r in ranking]
        if name == "test":  # does the grounded reader see a passage that holds the answer?
            relevant = dict(zip(corpus.questions, corpus.relevant, strict=True))
            retrieved = [bool(set(r[: config.k]) & relevant[q]) for q, r in
                         zip(questions, ranking, strict=True) if q.answers]  # fmt: skip
        t0 = time.perf_counter()
        said[name] = {"closed": ask(llm, [reader.prompt("closed", q) for q in asked],
                                    shots=reader.demonstrations("closed"),
                                    max_new_tokens=config.max_new_tokens,
                                    progress=run.show_progress,
                                    description=f"{name}: closed-book")}  # fmt: skip
        t1 = time.perf_counter()
        if grounded:
            prompts = [reader.prompt("unknown", q, c) for q, c in zip(asked, shown[name],
                                                                      strict=True)]  # fmt: skip
            said[name]["grounded"] = ask(llm, prompts, shots=reader.demonstrations("unknown"),
                                         samples=samples, temperature=config.temperature,
                                         max_new_tokens=config.max_new_tokens, seed=config.seed,
                                         progress=run.show_progress,
                                         description=f"{name}: grounded")  # fmt: skip
        seconds[f"{name}_closed"] = t1 - t0
        seconds[f"{name}_grounded"] = time.perf_counter() - t1
    results = measure(config, split, said, shown)
    write_traces(run, split, said, shown, results["replies"])
    # the system is chosen on the calibration split, then judged on the test split: choosing the
    # lowest test rate among seven would flatter the winner
    chosen = pick(results["calibration"], config.coverage)
    if results["test"][chosen]["coverage"] < config.coverage - 1e-9:
        chosen = "plain"  # it did not keep the coverage on unseen questions: no reduction counts
    plain_rate = results["test"]["plain"]["hallucination_rate"]
    ratio = results["test"][chosen]["hallucination_rate"] / max(plain_rate, 1 / len(split.test))
    run.update_summary(
        questions={name: {"answerable": sum(bool(q.answers) for q in qs),
                          "unanswerable": sum(not q.answers for q in qs),
                          "kinds": dict(sorted(_count(q.kind for q in qs).items()))}
                   for name, qs in (("calibration", split.calibration), ("test", split.test))},
        thresholds=results["thresholds"], test=results["test"],
        calibration=results["calibration"], chosen=chosen,
        answer_shown=statistics.mean(retrieved) if retrieved else 0.0,
        seconds=seconds | {"total": time.perf_counter() - started},
    )  # fmt: skip
    if config.figures:
        figure(run, results, chosen, config.coverage)
    metrics: dict[str, Any] = {"hallucination_rate_ratio": ratio}
    for system, s in results["test"].items():
        for name in ("hallucination_rate", "coverage", "accuracy"):
            metrics[f"{system.replace('-', '_')}_{name}"] = s[name]
    return metrics


def measure(config: Config, split: Any, said: dict[str, dict[str, list[Any]]],
            shown: dict[str, list[list[str]]]) -> dict[str, Any]:  # fmt: skip
    """Every system's thresholds (from the calibration split), replies and scores (both)."""
    systems = ["plain", *[s for s in SYSTEMS if s in config.interventions]]
    out: dict[str, Any] = {"thresholds": {}, "calibration": {}, "test": {}, "replies": {},
                           "curves": {}}  # fmt: skip
    for system in systems:
        threshold, calibrator = -math.inf, None
        if SYSTEMS[system][1]:
            source, questions = said["calibration"][SYSTEMS[system][0]], split.calibration
            before = replies(system, said["calibration"], questions, shown["calibration"])
            kept = [n for n, r in enumerate(before) if not r.abstained]
            calibrator = Calibrator(
                [signals(system, source[n], questions[n], shown["calibration"][n]) for n in kept],
                [bool(questions[n].answers) for n in kept],
            )
            before = replies(system, said["calibration"], questions, shown["calibration"],
                             calibrator)  # fmt: skip
            answered = [r.confidence for q, r in zip(questions, before, strict=True)
                        if q.answers and not r.abstained]  # fmt: skip
            answerable = sum(bool(q.answers) for q in questions)
            threshold = choose_threshold(answered, answerable, config.coverage)
            out["thresholds"][system] = threshold if math.isfinite(threshold) else None
            test_before = replies(system, said["test"], split.test, shown["test"], calibrator)
            out["curves"][system] = curve(split.test, test_before)
        for name, questions in (("calibration", split.calibration), ("test", split.test)):
            given = replies(system, said[name], questions, shown[name], calibrator, threshold)
            out[name][system] = scores(questions, given) | by_kind(questions, given)
            out["replies"].setdefault(name, {})[system] = given
    return out


def by_kind(questions: list[Any], given: list[Reply]) -> dict[str, Any]:
    """The hallucination rate of each kind of unanswerable question (made-up, missing …)."""
    rates: dict[str, list[bool]] = {}
    for q, r in zip(questions, given, strict=True):
        if not q.answers:
            rates.setdefault(q.kind.split()[0], []).append(not r.abstained)
    return {"rate_by_kind": {k: statistics.mean(v) for k, v in sorted(rates.items())}}


def pick(scores: dict[str, dict[str, float]], min_coverage: float) -> str:
    """The system with the lowest hallucination rate among those answering at least
    `min_coverage` of the answerable questions (the plain model when none does)."""
    able = [s for s in scores if scores[s]["coverage"] >= min_coverage - 1e-9] or ["plain"]
    return min(able, key=lambda s: (scores[s]["hallucination_rate"], -scores[s]["coverage"]))


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def write_traces(run: Any, split: Any, said: dict[str, Any], shown: dict[str, Any],
                 given: dict[str, dict[str, list[Reply]]]) -> None:  # fmt: skip
    """One line per question and system: the answer, its confidence, and whether it abstained."""
    from deepscape.labs.language.l301_hallucinations_ask import correct

    with (run.dir / "traces.jsonl").open("w", encoding="utf-8") as out:
        for name, questions in (("calibration", split.calibration), ("test", split.test)):
            for n, q in enumerate(questions):
                for system, replies_ in given[name].items():
                    r = replies_[n]
                    source = said[name][SYSTEMS[system][0]][n]
                    out.write(json.dumps({
                        "split": name, "question": q.text, "kind": q.kind,
                        "answers": list(q.answers), "system": system, "answer": r.answer,
                        "confidence": r.confidence, "abstained": r.abstained,
                        "correct": bool(q.answers) and not r.abstained
                        and correct(r.answer, q.answers),
                        "samples": source.samples if "agreement" in SYSTEMS[system][1] else [],
                        "passages": shown[name][n] if SYSTEMS[system][0] == "grounded" else [],
                    }) + "\n")  # fmt: skip


def figure(run: Any, results: dict[str, Any], best: str, min_coverage: float) -> Any:
    import matplotlib.pyplot as plt

    from deepscape.figures import save

    test = results["test"]
    colour = {system: f"C{n}" for n, system in enumerate(SYSTEMS)}
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.6))
    for system, points in results["curves"].items():
        points = [p for p in points if p["answered"]]  # risk needs something answered
        left.plot([p["answered"] for p in points], [p["risk"] for p in points],
                  color=colour[system], label=system)  # fmt: skip
        middle.plot([p["coverage"] for p in points], [p["hallucination_rate"] for p in points],
                    color=colour[system], alpha=0.6)  # fmt: skip
    left.set_xlabel("share of test questions answered (coverage)")
    left.set_ylabel("risk: answered ones that are wrong")
    left.set_title("Risk–coverage: every threshold of each confidence")
    at: dict[tuple[float, float], list[str]] = {}
    for system, s in test.items():
        point = (s["coverage"], s["hallucination_rate"])
        at.setdefault(point, []).append(system)
        middle.scatter(*point, s=90 if system == best else 30, color=colour[system],
                       marker="*" if system == best else "o", zorder=3, label=system)  # fmt: skip
    for (x, y), systems in at.items():
        middle.annotate(", ".join(systems), (x, y), fontsize=7, textcoords="offset points",
                        xytext=(-4, 5), ha="right" if x > 0.5 else "left")  # fmt: skip
    middle.axvline(min_coverage, color="gray", linestyle=":")
    middle.set_xlabel(f"coverage: answerable test questions answered (dotted: {min_coverage:.0%})")
    middle.set_ylabel("hallucination rate: unanswerable answered")
    middle.set_title(f"The trade-off (dots: chosen thresholds; star: {best})")
    for axis in (left, middle):
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.legend(fontsize=7)
    systems = list(test)
    x = range(len(systems))
    rate = right.bar([i - 0.2 for i in x], [test[s]["hallucination_rate"] for s in systems], 0.4,
                     label="hallucination rate", color="tab:red")  # fmt: skip
    cover = right.bar([i + 0.2 for i in x], [test[s]["coverage"] for s in systems], 0.4,
                      label="coverage", color="tab:green")  # fmt: skip
    right.bar_label(rate, fmt="{:.0%}", fontsize=7)
    right.bar_label(cover, fmt="{:.0%}", fontsize=7)
    right.set_xticks(list(x), systems, rotation=30, ha="right", fontsize=8)
    right.set_ylim(0, 1.12)
    right.set_title("Each system on the held-out questions")
    right.legend(fontsize=7)
    return save(fig, run.figure_path("hallucinations"))
