"""language/301/multi-llm — several LLMs as one system: a router, a vote, a verifier, their cost.

One model answers everything; a system of models may answer better, at a price. Four ways of
combining SmolLM2-135M-Instruct's fine-tuned copies are set against one fine-tuned model, on the
same test questions, and each is charged what it makes the models compute (tokens read, tokens
generated, seconds):

1. generalist: one LoRA trained on all the kinds of task mixed, greedy — the baseline.
2. routed: one LoRA specialist per kind, trained for the same steps in all (each a share of
   the generalist's), and a router — logistic regression on the words of the query
   (scikit-learn), trained on a few labelled queries — that sends each question to one of them.
3. vote (self-consistency, Wang et al. 2022): the generalist samples several answers at a
   temperature, and the most frequent final answer wins (for numbers the last number written:
   worked solutions that differ and agree count as one answer).
4. judge and rerank (generator–verifier): the same samples are candidates; a second model
   keeps one — the untuned SmolLM2 asked "Is the proposed answer correct?" (log P(Yes) − log
   P(No), an LLM as a judge), or the routed specialist's log-likelihood of each candidate per
   token (rerank).

The tasks have checkable answers: sums of two numbers and a country's capital
(language/201/one-model's), and, as an option, language/301/agents' arithmetic word problems
with worked solutions ("37 * 24 = 888. 888 - 100 = 788. The answer is 788."), where sampling
several lines of reasoning is the point of self-consistency. GSM8K has no offline copy here.
Beside the methods, two ceilings: oracle routing (each specialist on its own kind) and "any
sample right" — what a perfect verifier choosing among the samples would reach.

The gain-per-cost table (summary's `gain_per_cost`) is the lesson: each method's accuracy over
the generalist's, per extra token and second per question.

What it found (the default: 40 sums and 40 capitals, LoRAs of 20 steps of 8 each, 8 samples at
temperature 0.7; 8.8 min on one thread of a 2-core machine shared with other jobs): no system
beat the one model. The generalist answered 48.8 % (sums 72.5 %, capitals 25 %) for 16 tokens a
question. The router sent all 80 questions to the right specialist, yet routing scored 41.3 %:
the sums specialist, trained 20 steps, got 50 % where the generalist, 40 steps on the mix, got
72.5 % (the capitals' specialist did beat it, 32.5 % against 25 %): at equal budget, sharing
won. The vote: 47.5 % for 5× the tokens (a short answer's samples mostly repeat the greedy one,
or scatter: Uruguay's capital sampled as Lima, Tenerife, Pontevedo…). The untuned SmolLM2 as a
judge: 35 % (−13.8 points, 19× the tokens); the specialist reranking the samples: 50 % (+1.3,
one question; 9× the tokens). Yet the samples held a right answer for 61 % of the questions
(sums 90 %): a verifier has 12.5 points to win, and neither of these finds them. With word
problems (kinds=arithmetic,word-problem,capital n=30; 22 min) the generalist solved none of the
30 word problems, and its 8 samples held a right answer for 2: SmolLM2-135M cannot multiply two
2-digit numbers however often it tries (61 * 51 = 3128, 3321, 3111…) — voting needs samples that
are often right, and gained 3 points there (39 % against 36 %).

    deepscape run language/301/multi-llm threads=1               # ~9 min on one thread
    deepscape run language/301/multi-llm n=5 steps=4 samples=3   # a quick look
    deepscape run language/301/multi-llm kinds=arithmetic,word-problem,capital n=30  # ~20 min
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from deepscape import distributed
from deepscape.config import ConfigError, closest, option

Method = Literal["routed", "vote", "judge", "rerank"]
Kind = Literal["arithmetic", "word-problem", "capital", "extraction", "sentiment", "trec",
               "ag-news", "babi"]  # fmt: skip
METHODS = ("routed", "vote", "judge", "rerank")
KINDS = ("arithmetic", "word-problem", "capital", "extraction", "sentiment", "trec", "ag-news",
         "babi")  # fmt: skip


GLOBAL_BATCH = True  # its LoRA trains through deepscape.tuning.train: see its docstring


@dataclass
class Config:
    seed: int = option(0, "random seed: the test items, training batches, samples")
    threads: int = option(1, "CPU threads for PyTorch (0: all cores)")
    llm: str = option("SmolLM2-135M-Instruct", "the instruct LLM (offline: SmolLM2's GGUF)")
    kinds: tuple[Kind, ...] = option(("arithmetic", "capital"),
                                     "the kinds of task, one specialist each")  # fmt: skip
    methods: tuple[Method, ...] = option(METHODS, "the systems set against the generalist")
    data_dir: str | None = option(None, "folder with sentclf/, ag_news/, babi-qa1/ (trec…)")
    n: int = option(40, "test questions of each kind")
    digits: int = option(2, "digits of each number in the sums")
    # the models
    steps: int = option(20, "LoRA steps of each specialist (the generalist: this × kinds)")
    batch_size: int = option(8, "examples per LoRA step")
    rank: int = option(8, "LoRA rank")
    lr: float = option(2e-3, "LoRA's peak learning rate")
    router_examples: int = option(8, "labelled queries of each kind the router learns from")
    # sampling
    samples: int = option(8, "answers sampled per question for the vote and the verifiers")
    temperature: float = option(0.7, "sampling temperature of the vote's answers")
    top_k: int = option(0, "sample from the k likeliest tokens (0: all)")
    figures: bool = option(True, "draw the figure")


def check(config: Config) -> None:
    """One-line errors for what cannot run, before the model is read."""
    for method in config.methods:
        if method not in METHODS:
            raise ConfigError(f"method {method!r} is not one of {', '.join(METHODS)}"
                              f"{closest(method, METHODS)}")  # fmt: skip
    for kind in config.kinds:
        if kind not in KINDS:
            raise ConfigError(f"kind {kind!r} is not one of {', '.join(KINDS)}"
                              f"{closest(kind, KINDS)}")  # fmt: skip
    if len(set(config.kinds)) < 2 and "routed" in config.methods:
        raise ConfigError(f"kinds={','.join(config.kinds)}: routing needs 2 kinds or more "
                          "(or leave routed out of methods=)")  # fmt: skip
    for name in ("n", "steps", "batch_size", "rank", "router_examples"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)}: give 1 or more")
    sampling = {"vote", "judge", "rerank"} & set(config.methods)
    if sampling and config.samples < 1:
        raise ConfigError(f"samples={config.samples}: the vote and the verifiers need ≥ 1 sampled "
                          "answer per question (5 to 10 is usual)")  # fmt: skip
    if sampling and config.temperature <= 0:
        raise ConfigError(f"temperature={config.temperature}: sampled answers need a temperature "
                          "> 0 (at 0 every sample is the greedy answer)")  # fmt: skip
    if config.top_k < 0:
        raise ConfigError(f"top_k={config.top_k}: give 0 (all tokens) or more")


def run(config: Config, run: Any) -> dict[str, float]:
    import copy
    import random
    from pathlib import Path

    import torch

    from deepscape.labs.language.l301_multi_llm_figures import figure
    from deepscape.labs.language.l301_multi_llm_methods import (
        Cost,
        Router,
        best,
        complete,
        distinct,
        final_answer,
        is_correct,
        judge_scores,
        likelihood_scores,
        load_task,
        majority,
    )
    from deepscape.models.language import load_llm
    from deepscape.tuning import add_lora, train

    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    torch.manual_seed(config.seed)
    data_dir = Path(config.data_dir) if config.data_dir else None
    kinds = list(dict.fromkeys(config.kinds))
    tasks = {k: load_task(k, data_dir, config.n, config.seed, config.digits) for k in kinds}
    questions = [(k, item) for k in kinds for item in tasks[k].test]
    prompts = [tasks[k].prompt(item.text) for k, item in questions]
    llm = load_llm(config.llm)

    # 1. the models: a specialist per kind, a generalist on the mixture, the same steps in all
    draw = random.Random(config.seed)
    examples = {k: t.examples(draw.choices(t.pool, k=config.steps * config.batch_size))
                for k, t in tasks.items()}  # fmt: skip
    training: dict[str, Any] = {}

    def trained(on: list, steps: int, what: str) -> Any:
        model = add_lora(copy.deepcopy(llm.model), rank=config.rank)
        done = train(model, llm.tokenizer, on, steps=steps, batch_size=config.batch_size,
                     lr=config.lr, seed=config.seed, progress=run.show_progress,
                     description=f"LoRA: {what}")  # fmt: skip
        training[what] = {"steps": done.steps, "seconds": done.seconds,
                          "first_loss": done.losses[0], "last_loss": done.losses[-1]}  # fmt: skip
        return model

    specialists = ({k: trained(examples[k], config.steps, k) for k in kinds}
                   if {"routed", "rerank"} & set(config.methods) else {})  # fmt: skip
    mixed = [e for k in kinds for e in examples[k]]
    generalist = trained(mixed, config.steps * len(kinds), "generalist")
    run.update_summary(training=training)

    def by_kind(model_of: Any, rows: list[int], budget_of: Any) -> tuple[list[str], Cost]:
        """Greedy answers to the questions `rows`, each kind's batch with its token budget."""
        said, cost = {}, Cost()
        for k in kinds:
            mine = [i for i in rows if budget_of(i) == k]
            if mine:
                got, spent = complete(model_of(k), llm.tokenizer, [prompts[i] for i in mine],
                                      max_new_tokens=tasks[k].max_new_tokens)  # fmt: skip
                said |= {i: g[0] for i, g in zip(mine, got, strict=True)}
                cost += spent
        return [said[i] for i in rows], cost

    everyone = list(range(len(questions)))
    truth = [k for k, _ in questions]
    answers: dict[str, list[str]] = {}
    costs: dict[str, Cost] = {}
    answers["generalist"], costs["generalist"] = by_kind(lambda k: generalist, everyone,
                                                         truth.__getitem__)  # fmt: skip

    # 2. the router and the specialists
    routes = truth
    if specialists:
        pool = random.Random(config.seed + 1)
        labelled = [(item.text, k) for k in kinds
                    for item in pool.sample(tasks[k].pool, config.router_examples)]  # fmt: skip
        router = Router([t for t, _ in labelled], [k for _, k in labelled])
        routes, routing_seconds = router.route([item.text for _, item in questions])
        confusion = [[sum(t == a and r == b for t, r in zip(truth, routes, strict=True))
                      for b in kinds] for a in kinds]  # fmt: skip
        run.update_summary(router={"kinds": kinds, "confusion": confusion,
                                   "train_seconds": router.train_seconds,
                                   "route_seconds": routing_seconds})  # fmt: skip
    if "routed" in config.methods:
        answers["routed"], spent = by_kind(specialists.__getitem__, everyone, routes.__getitem__)
        costs["routed"] = spent + Cost(0, 0, router.train_seconds + routing_seconds)

    # 3. self-consistency: sampled answers and their vote
    sampled: list[list[str]] = []
    if {"vote", "judge", "rerank"} & set(config.methods):
        sampling = Cost()
        for k in kinds:
            rows = [i for i in everyone if truth[i] == k]
            got, spent = complete(generalist, llm.tokenizer, [prompts[i] for i in rows],
                                  samples=config.samples, temperature=config.temperature,
                                  top_k=config.top_k or None, seed=config.seed,
                                  max_new_tokens=tasks[k].max_new_tokens)  # fmt: skip
            sampled += got
            sampling += spent
        votes = [majority([final_answer(k, s) for s in samples])
                 for (k, _), samples in zip(questions, sampled, strict=True)]  # fmt: skip
        if "vote" in config.methods:
            answers["vote"], costs["vote"] = votes, sampling
        candidates = [distinct(k, s) for (k, _), s in zip(questions, sampled, strict=True)]

    # 4. generator and verifier: the samples are the candidates, another model keeps one
    if "judge" in config.methods:
        scores, spent = judge_scores(llm.model, llm.tokenizer, [item.text for _, item in questions],
                                     candidates)  # fmt: skip
        answers["judge"] = [best(c, s) for c, s in zip(candidates, scores, strict=True)]
        costs["judge"] = sampling + spent
    if "rerank" in config.methods:
        scores, spent = likelihood_scores([specialists[r] for r in routes], llm.tokenizer,
                                          prompts, candidates)  # fmt: skip
        answers["rerank"] = [best(c, s) for c, s in zip(candidates, scores, strict=True)]
        costs["rerank"] = sampling + spent + Cost(0, 0, router.train_seconds + routing_seconds)

    # the oracle: each specialist on its own kind (routing with a perfect router), not a method
    right = {m: [is_correct(k, a, item) for (k, item), a in zip(questions, said, strict=True)]
             for m, said in answers.items()}  # fmt: skip
    if specialists:
        oracle = list(answers["routed"]) if "routed" in answers else [""] * len(questions)
        missed = [i for i in everyone if routes[i] != truth[i] or "routed" not in answers]
        if missed:  # only the questions routed elsewhere are asked again
            again, _ = by_kind(specialists.__getitem__, missed, truth.__getitem__)
            for i, said in zip(missed, again, strict=True):
                oracle[i] = said
        right["oracle routing"] = [is_correct(k, a, item) for (k, item), a
                                   in zip(questions, oracle, strict=True)]  # fmt: skip
    if sampled:  # questions with a right answer among the samples: what a verifier may find
        right["any sample right"] = [any(is_correct(k, s, item) for s in samples) for (k, item),
                                     samples in zip(questions, sampled, strict=True)]  # fmt: skip
    every = max(1, config.n // 2)  # two examples of each kind kept in the summary
    metrics, table = summarise(right, costs, truth, routes, kinds, bool(specialists))
    run.update_summary(
        accuracy_by_kind=table["by_kind"], gain_per_cost=table["gain_per_cost"],
        costs={m: vars(c) for m, c in costs.items()},
        examples={m: [{"question": q.text, "said": a, "right": r} for (_, q), a, r
                      in list(zip(questions, said, right[m], strict=True))[::every]]
                  for m, said in answers.items()},
        samples=[{"question": q.text, "samples": s} for (_, q), s in
                 list(zip(questions, sampled, strict=False))[::every]],
        llm={"name": llm.name, "source": llm.source, "threads": torch.get_num_threads()},
    )  # fmt: skip
    if config.figures:
        figure(run, table, kinds)
    return metrics


def summarise(right: dict[str, list[bool]], costs: dict[str, Any], truth: list[str],
              routes: list[str], kinds: list[str], routed: bool
              ) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """The metrics (each method's accuracy, tokens and seconds per question, the gains over the
    generalist) and the tables: accuracy by kind, gain per cost, the router's confusion."""
    n = len(truth)
    metrics: dict[str, float] = {}
    accuracy = {m: sum(r) / n for m, r in right.items()}
    by_kind = {m: {k: sum(x for x, t in zip(r, truth, strict=True) if t == k) / truth.count(k)
                   for k in kinds} for m, r in right.items()}  # fmt: skip
    base, base_cost = accuracy["generalist"], costs["generalist"]
    gain_per_cost: dict[str, dict[str, float]] = {}
    for method, cost in costs.items():
        metrics[f"{method}_accuracy"] = accuracy[method]
        metrics[f"{method}_tokens"] = cost.tokens / n
        metrics[f"{method}_seconds"] = cost.seconds / n
        if method == "generalist":
            continue
        gain = 100 * (accuracy[method] - base)  # points
        extra_tokens = (cost.tokens - base_cost.tokens) / n
        extra_seconds = (cost.seconds - base_cost.seconds) / n
        metrics[f"{method}_gain"] = accuracy[method] - base
        gain_per_cost[method] = {
            "accuracy": accuracy[method], "gain_points": gain,
            "extra_tokens_per_question": extra_tokens, "extra_seconds_per_question": extra_seconds,
            "points_per_100_extra_tokens": 100 * gain / extra_tokens if extra_tokens > 0 else None,
            "points_per_extra_second": gain / extra_seconds if extra_seconds > 0 else None,
        }  # fmt: skip
    if "any sample right" in accuracy:  # what a perfect verifier would add: a verifier's room
        metrics["oracle_pick_gain"] = accuracy["any sample right"] - base
    if "oracle routing" in accuracy:
        metrics["oracle_routing_accuracy"] = accuracy["oracle routing"]
    if routed:
        metrics["router_accuracy"] = sum(a == b for a, b in zip(truth, routes, strict=True)) / n
        confusion = [[sum(t == a and r == b for t, r in zip(truth, routes, strict=True))
                      for b in kinds] for a in kinds]  # fmt: skip
    else:
        confusion = []
    table = {"accuracy": accuracy, "by_kind": by_kind, "gain_per_cost": gain_per_cost,
             "tokens": {m: c.tokens / n for m, c in costs.items()},
             "seconds": {m: c.seconds / n for m, c in costs.items()},
             "confusion": confusion}  # fmt: skip
    return metrics, table
