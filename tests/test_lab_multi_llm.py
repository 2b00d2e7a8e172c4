"""language/301/multi-llm: the vote, the answers' checks, the worked solutions, the router, the
cost accounting (on a stub LM), the gain table and bad input — and one small run with the real
model (slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from deepscape.config import ConfigError
from deepscape.labs.language import l301_multi_llm as lab
from deepscape.labs.language.l201_one_model_tasks import Item, arithmetic, capitals
from deepscape.labs.language.l301_agents_tasks import word_problem
from deepscape.labs.language.l301_multi_llm_methods import (
    Cost,
    Router,
    best,
    complete,
    distinct,
    final_answer,
    is_correct,
    majority,
    until_stop,
    word_problems,
    worked,
)


# -- the vote and the checks ----------------------------------------------------------------------
def test_majority_counts_votes_and_breaks_ties_by_the_first_sampled():
    assert majority(["12", "7", "12", "", "7", "12"]) == "12"
    assert majority(["7", "12", "12", "7"]) == "7"  # a tie: the one sampled first
    assert majority(["", "", "3"]) == "3"  # an empty answer never wins
    assert majority(["", ""]) == ""


def test_final_answers_read_the_last_number_or_the_trimmed_text():
    assert (
        final_answer("word-problem", "37 * 24 = 888. 888 - 100 = 788. The answer is 788.") == "788"
    )
    assert final_answer("arithmetic", "1,042") == "1042"
    assert final_answer("arithmetic", "no idea") == ""
    assert final_answer("capital", " Lima. ") == "lima"
    item = Item("What is the area?", ("274,200 sq km", "274,200"))
    assert is_correct("extraction", "It is 274,200.", item)
    assert not is_correct("extraction", "274,201", item)
    assert not is_correct("capital", "", Item("q", ("",)))  # saying nothing is never right


def test_votes_on_final_answers_merge_different_worked_solutions():
    samples = ["37 * 24 = 888. 888 - 100 = 788. The answer is 788.",
               "37 * 24 = 880. 880 - 100 = 780. The answer is 780.",
               "24 * 37 = 888. 888 - 100 = 788. The answer is 788."]  # fmt: skip
    assert majority([final_answer("word-problem", s) for s in samples]) == "788"
    assert distinct("word-problem", samples) == samples[:2]  # one candidate per answer
    assert best(["a", "b", "c"], [0.1, 0.5, 0.5]) == "b" and best([], []) == ""


def test_worked_solutions_reach_the_agents_tasks_answers():
    rng = random.Random(0)
    for _ in range(200):
        task = word_problem(rng)
        solution = worked(task.trace[0].argument)
        assert final_answer("word-problem", solution) == task.answer, solution
        assert solution.count(" = ") == 2


def test_word_problems_keep_the_test_apart_from_the_pool():
    task = word_problems(30, seed=1, pool=200)
    assert len(task.test) == 30 and len(task.pool) == 200
    assert not {i.text for i in task.test} & {i.text for i in task.pool}
    assert all(i.answers[0].endswith(".") and "The answer is " in i.answers[0] for i in task.test)
    assert task.max_new_tokens >= max(len(i.answers[0].split()) for i in task.pool)


# -- the router -----------------------------------------------------------------------------------
def test_the_router_learns_the_kinds_from_a_few_queries():
    tasks = {"arithmetic": arithmetic(40, 0), "capital": capitals(40, 0),
             "word-problem": word_problems(40, 0, pool=100)}  # fmt: skip
    texts = [i.text for t in tasks.values() for i in t.pool[:6]]
    kinds = [k for k, t in tasks.items() for _ in t.pool[:6]]
    router = Router(texts, kinds)
    queries = [(k, i.text) for k, t in tasks.items() for i in t.test]
    routed, seconds = router.route([q for _, q in queries])
    right = sum(r == k for r, (k, _) in zip(routed, queries, strict=True)) / len(queries)
    assert right >= 0.95 and seconds < 1


# -- the cost accounting, on a stub LM ------------------------------------------------------------
class StubTokenizer:
    """A chat template of three fixed tokens, then one token per character of the message."""

    eos_token_id = 0

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True):
        return [1, 2, 3, *(10 + ord(c) % 40 for c in messages[-1]["content"])]

    def encode(self, text, add_special_tokens=False):
        return [10 + ord(c) % 40 for c in text]

    def decode(self, tokens, skip_special_tokens=True):
        return " ".join(str(t) for t in tokens if t != 0)


class StubCache:
    def __init__(self, length: int = 0):
        self.length = length

    def select(self, rows: torch.Tensor) -> StubCache:
        return StubCache(self.length)


class StubLM(nn.Module):
    """Whatever the prompt, it answers 5 6 and ends its turn (0): three generated tokens."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def new_cache(self, max_length: int) -> StubCache:
        return StubCache()

    def forward(self, ids: torch.Tensor, cache: StubCache, at: torch.Tensor | None = None):
        cache.length += ids.shape[1]
        nxt = torch.full_like(ids, 5)
        nxt[ids == 5], nxt[ids == 6] = 6, 0
        logits = torch.nn.functional.one_hot(nxt, 50).float() * 100
        return logits if at is None else logits.gather(1, at[..., None].expand(-1, -1, 50))


def test_greedy_answers_count_the_shared_start_once_and_the_stop_token():
    said, cost = complete(StubLM(), StubTokenizer(), ["ab", "cd", "efg"], max_new_tokens=8)
    assert said == [["5 6"]] * 3
    assert cost.read == 3 + 2 + 2 + 3  # the chat start once, then each prompt's own tokens
    assert cost.generated == 3 * 3 and cost.seconds > 0


def test_samples_read_each_prompt_once_and_pay_for_every_sample():
    said, cost = complete(StubLM(), StubTokenizer(), ["ab", "efg"], samples=4, temperature=1.0,
                          max_new_tokens=8)  # fmt: skip
    assert [len(s) for s in said] == [4, 4] and said[0][0] == "5 6"
    assert cost.read == 5 + 6 and cost.generated == 2 * 4 * 3
    assert until_stop([5, 6, 0, 0], 0) == [5, 6, 0] and until_stop([5, 6], 0) == [5, 6]
    total = Cost(1, 2, 0.5) + Cost(3, 4, 1.0)
    assert (total.read, total.generated, total.tokens, total.seconds) == (4, 6, 10, 1.5)


def test_the_gain_table_sets_each_method_against_the_generalist():
    right = {"generalist": [True, False, False, False], "vote": [True, True, False, False],
             "routed": [True, False, False, False],
             "any sample right": [True, True, True, False]}  # fmt: skip
    costs = {"generalist": Cost(40, 20, 2.0), "vote": Cost(40, 160, 6.0),
             "routed": Cost(40, 20, 2.4)}  # fmt: skip
    truth = ["a", "a", "b", "b"]
    metrics, table = lab.summarise(right, costs, truth, ["a", "b", "b", "b"], ["a", "b"], True)
    assert metrics["vote_gain"] == pytest.approx(0.25) and metrics["routed_gain"] == 0
    assert metrics["vote_tokens"] == pytest.approx(50) and metrics["router_accuracy"] == 0.75
    assert (
        metrics["oracle_pick_gain"] == pytest.approx(0.5) and "any sample right_gain" not in metrics
    )
    vote = table["gain_per_cost"]["vote"]
    assert vote["extra_tokens_per_question"] == pytest.approx(35)
    assert vote["points_per_100_extra_tokens"] == pytest.approx(100 * 25 / 35)
    assert vote["points_per_extra_second"] == pytest.approx(25)
    assert table["by_kind"]["vote"] == {"a": 1.0, "b": 0.0}
    assert table["confusion"] == [[1, 1], [0, 2]]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"samples": 0}, "samples=0: the vote and the verifiers need ≥ 1"),
     ({"methods": ("vote", "voting")}, "method 'voting' is not one of routed, vote, judge, "
                                       "rerank — did you mean 'vote'?"),
     ({"kinds": ("arithmetic", "capitol")}, "did you mean 'capital'?"),
     ({"kinds": ("capital",)}, "routing needs 2 kinds or more"),
     ({"temperature": 0.0}, "temperature=0.0: sampled answers need a temperature > 0"),
     ({"n": 0}, "n=0: give 1 or more"), ({"top_k": -1}, "top_k=-1")],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_fix(overrides: dict, message: str):
    with pytest.raises(ConfigError) as error:
        lab.check(lab.Config(**overrides))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_one_kind_is_fine_without_routing():
    lab.check(lab.Config(kinds=("capital",), methods=("vote", "judge")))
    lab.check(lab.Config(samples=0, methods=("routed",)))  # no samples needed


# -- the real model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_small_run_with_smollm2(tmp_path: Path):
    pytest.importorskip("peft")
    from deepscape.models.language import PretrainedUnavailable, load_llm
    from deepscape.runs import RunStore

    try:
        load_llm()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))
    run = RunStore(tmp_path).create("language/301/multi-llm", {})
    config = lab.Config(kinds=("arithmetic", "capital"), n=2, steps=1, batch_size=2, samples=2,
                        router_examples=3, threads=1)  # fmt: skip
    metrics = lab.run(config, run)
    for method in ("generalist", *lab.METHODS):
        assert 0 <= metrics[f"{method}_accuracy"] <= 1
        assert metrics[f"{method}_tokens"] > 0
    # the vote and the verifiers pay for the samples, then some
    assert metrics["judge_tokens"] > metrics["vote_tokens"] > metrics["generalist_tokens"]
    assert run.figure_path("multi_llm").is_file()
