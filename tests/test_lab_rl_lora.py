"""language/301/reinforcement-learning, part 2's second arm (GRPO on SmolLM2 with LoRA): the
reward reads the stated sum, held-out sums are never trained on, bad options are refused in one
line, and a tiny run with the real model records its steps and keeps only the adapter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from deepscape.config import ConfigError
from deepscape.labs.language import l301_reinforcement_learning as lab
from deepscape.labs.language import l301_reinforcement_learning_lora as arm

LAB = "language/301/reinforcement-learning"


def lora_config(**changes) -> lab.Config:
    return lab.Config(**{"part": "language-model", "policy": "smollm2-lora", "digits": 1,
                         "heldout_problems": 50, **changes})  # fmt: skip


@pytest.mark.parametrize(("said", "reward"), [
    ("9", 1.0), ("9.", 1.0), ("6 + 3 = 9", 1.0), ("The answer is 9.", 1.0),
    ("The answer is 9.\nBecause 6 + 3 = 10", 1.0),  # the first line is the answer
    ("6 + 3 = 10", 0.0), ("19", 0.0), ("To add 6 and 3, we", 0.0), ("", 0.0),
    ("\n6 + 3 = 9", 1.0),  # a leading blank line is not the answer's line
])  # fmt: skip
def test_the_reward_reads_the_last_number_of_the_first_line(said: str, reward: float):
    assert arm.right_sum(arm.Sum(6, 3), said) == reward


def test_held_out_sums_are_never_drawn_for_training():
    sums = arm.Sums(digits=1, heldout=50, seed=0)
    assert len(sums.heldout) == 50 and len(set(sums.heldout)) == 50
    drawn = sums.draw(500, random.Random(0))
    assert not set(drawn) & set(sums.heldout) and len(set(drawn)) == 50  # all the other 50
    assert arm.Sums(digits=1, heldout=50, seed=0).heldout == sums.heldout  # seeded


@pytest.mark.parametrize(("changes", "message"), [
    ({"digits": 3}, "digits=3: policy=smollm2-lora takes sums of numbers of 1 or 2 digits"),
    ({"heldout_problems": 60}, "heldout_problems=60: give 1 to half of the 100 sums"),
    ({"group_size": 1}, "group_size=1: GRPO compares answers within a group"),
    ({"lora_rank": 0}, "lora_rank=0: give a rank ≥ 1"),
])  # fmt: skip
def test_bad_options_are_refused_in_one_line(changes: dict, message: str):
    with pytest.raises(ConfigError, match=message) as refused:
        arm.check(lora_config(**changes))
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_a_tiny_run_records_its_steps_and_keeps_the_adapter(tmp_path: Path):
    pytest.importorskip("peft")
    from deepscape.models.language import PretrainedUnavailable, load_llm
    from deepscape.runs import RunStore

    try:
        load_llm()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))
    run = RunStore(tmp_path).create(LAB, {})
    run.show_progress = False
    config = lora_config(heldout_problems=2, grpo_steps=2, prompts_per_step=1, group_size=2,
                         grpo_eval_every=2, grpo_warmup=0, figures=False)  # fmt: skip
    metrics = lab.run(config, run)
    steps, evals = run.history("step"), run.history("eval")
    assert [s["step"] for s in steps] == [0, 1] and [e["step"] for e in evals] == [0, 2]
    assert all(0 <= s["reward"] <= 1 and s["answer_length"] > 0 for s in steps)
    assert 0 <= metrics["sft_accuracy"] <= 1 and "rl_test_accuracy_gain" in metrics
    adapter = run.dir / "adapter.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < 20e6  # the adapter, not the model
