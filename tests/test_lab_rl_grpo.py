"""language/301/reinforcement-learning, part 2 (GRPO): group-normalised advantages give no signal
when a group's rewards are equal, the k3 KL is ≥ 0 and 0 at the reference, a reward function
that raises scores 0 and is counted, and on one-digit sums GRPO raises the reward of a GPT that
SFT left mostly wrong. The objective and its gradients equal trl's GRPOTrainer's. Bad options
are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import untimed

from deepscape.config import ConfigError
from deepscape.labs.language import l301_reinforcement_learning_grpo as grpo
from deepscape.labs.language.l201_unsolvable_tasks import Example
from deepscape.labs.language.l301_reinforcement_learning import Config
from deepscape.runs import RunStore

LAB = "language/301/reinforcement-learning"


# one-digit sums: 40 held out, SFT on 20 of the other 60, GRPO on all 60 (~8 s on one thread)
TINY = dict(digits=1, heldout_problems=40, sft_examples=20, sft_steps=100, grpo_steps=200,
            grpo_eval_every=200, prompts_per_step=8, grpo_lr=1e-3, grpo_warmup=0)  # fmt: skip


def new_run(tmp_path: Path):
    run = RunStore(tmp_path / "runs").create(LAB, {})
    run.show_progress = False
    return run


def test_grpo_raises_the_reward_on_one_digit_sums(tmp_path):
    run = new_run(tmp_path)
    metrics = grpo.language_model(Config(**TINY), run)
    # seeds 0, 1, 2: the mean reward of the first and last 20 steps 0.08 → 0.28, 0.07 → 0.27,
    # 0.11 → 0.34; with grpo_lr=0 (no learning) 0.15 → 0.17
    assert metrics["mean_reward_last"] > metrics["mean_reward_first"] + 0.12
    assert metrics["kl_last"] > 0 and metrics["reward_errors"] == 0
    assert 0 <= metrics["sft_accuracy"] <= 1 and 0 <= metrics["rl_accuracy"] <= 1
    steps, evals = run.history("step"), run.history("eval")
    assert [s["step"] for s in steps] == list(range(200))
    assert [e["step"] for e in evals] == [0, 200]  # the SFT model, then the policy
    assert {"reward", "kl", "answer_length", "clipped", "loss"} <= set(steps[-1])
    assert max(s["clipped"] for s in steps) > 0  # the second update on a batch moves the ratio
    assert (run.dir / "figures" / "grpo.png").stat().st_size > 10_000
    assert run.checkpoint_path.exists()  # a stopped run resumes from it


def test_equal_rewards_give_no_advantage_and_no_gradient():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    advantages = grpo.group_advantages(rewards)
    assert advantages[:2].abs().max() == 0
    assert torch.allclose(advantages[2], torch.tensor([3.0, -1.0, -1.0, -1.0]) / 3**0.5, atol=1e-3)
    # a policy's log-probabilities of 2 groups' answers, 3 tokens each
    logits = torch.randn(8, 3, requires_grad=True)
    logp = logits.log_softmax(-1)
    ref = torch.randn(8, 3).log_softmax(-1)
    mask = torch.ones(8, 3, dtype=torch.bool)
    flat = grpo.group_advantages(torch.tensor([[1.0] * 4, [0.0] * 4])).flatten()
    loss, _ = grpo.grpo_loss(logp, logp.detach(), ref, flat, mask, clip=0.2, kl_coef=0.0)
    loss.backward()
    assert logits.grad.abs().max() == 0  # nothing to learn from a group that agrees
    logits.grad = None
    loss, _ = grpo.grpo_loss(logits.log_softmax(-1), logp.detach(), ref, flat, mask, clip=0.2,
                             kl_coef=0.1)  # fmt: skip
    loss.backward()
    assert logits.grad.abs().max() > 0  # apart from the pull to the reference


def test_k3_is_a_kl():
    logp = torch.randn(1000).log_softmax(-1)
    ref = torch.randn(1000).log_softmax(-1)
    assert (grpo.k3(logp, ref) >= 0).all()
    assert grpo.k3(logp, logp).abs().max() == 0
    # its mean over tokens drawn from π is KL(π ‖ π_ref)
    drawn = torch.multinomial(logp.exp(), 200_000, replacement=True,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    exact = (logp.exp() * (logp - ref)).sum()
    assert torch.isclose(grpo.k3(logp[drawn], ref[drawn]).mean(), exact, rtol=0.05)


def test_a_reward_that_raises_scores_zero_and_is_counted(tmp_path):
    def fragile(example: Example, said: str) -> float:
        if said.startswith("1"):
            raise ValueError("cannot read it")
        return grpo.exact(example, said)

    examples = [Example("\n1+2=", "3\n"), Example("\n5+6=", "11\n")]
    rewards, errors = grpo.score(fragile, examples, ["3\n", "11\n"])
    assert rewards.tolist() == [1.0, 0.0] and errors == 1
    # in a run: counted, and the run goes on
    options = {**TINY, "grpo_steps": 5, "sft_steps": 20, "figures": False}
    metrics = grpo.language_model(Config(**options), new_run(tmp_path), reward=fragile)
    assert metrics["reward_errors"] > 0


def test_a_stopped_run_resumes_where_its_checkpoint_left_it(tmp_path):
    options = Config(**{**TINY, "grpo_steps": 12, "grpo_eval_every": 4, "figures": False,
                        "checkpoint_every": 0})  # fmt: skip
    whole = new_run(tmp_path)
    expected = grpo.language_model(options, whole)
    asked = 0

    def stopped(example: Example, said: str) -> float:  # Ctrl-C during step 9
        nonlocal asked
        asked += 1
        if asked > 9 * options.prompts_per_step * options.group_size:
            raise KeyboardInterrupt
        return grpo.exact(example, said)

    run = new_run(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        grpo.language_model(options, run, reward=stopped)
    run.discard_pending()  # as `deepscape run` does: the checkpoint (step 8) is the truth
    resumed = grpo.language_model(options, run)
    assert len(RunStore(run.dir / "sft").list()) == 1  # its SFT model, reused
    assert untimed(run.history()) == untimed(whole.history())
    assert {k: v for k, v in resumed.items() if "seconds" not in k} == {
        k: v for k, v in expected.items() if "seconds" not in k}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group_size": 1}, "group_size=1: GRPO compares answers within a group: give ≥ 2"),
        ({"digits": 1, "heldout_problems": 60}, "heldout_problems=60: give 1 to half"),
        ({"temperature": 0.0}, "give temperature > 0"),
        ({"gpt_width": 30}, "gpt_width=30 must split into gpt_heads=4 heads"),
    ],
)
def test_bad_options_are_refused_in_one_line(tmp_path, change, message):
    with pytest.raises(ConfigError) as error:
        grpo.language_model(Config(**change), new_run(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_objective_and_its_gradient_are_trls(tmp_path):
    """The written-out GRPO objective is trl's GRPOTrainer's (loss_type="grpo", the paper's): on
    the same answers, with ratios to the old policy inside and outside the clip and a reference
    apart from the policy, the loss and every gradient agree, at a temperature that is not 1."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from deepscape.labs.language.l301_reinforcement_learning_lora import answer_logprobs

    words = ["<pad>", *map(str, range(10)), "+", "="]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<pad>")),
        pad_token="<pad>", eos_token="=",
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=32))  # fmt: skip
    # made with beta=0: with a KL term, a model that is not a peft one has its reference loaded
    # from the hub by name; the objective reads the trainer's beta, set after
    args = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                          loss_type="grpo", beta=0.0, epsilon=0.2, temperature=0.7,
                          use_bias_correction_kl=False,  # its default weighs the KL by the ratio
                          bf16=False,  # its default autocasts, where ours runs in float32
                          num_generations=4, per_device_train_batch_size=8)  # fmt: skip
    trainer = trl.GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [0.0] * 8,
                              args=args, train_dataset=Dataset.from_list([{"prompt": "1 + 2"}]),
                              processing_class=tokenizer)  # fmt: skip
    trainer.beta, trainer.current_gradient_accumulation_steps = 0.04, 1  # the second: its loop's
    prompt, answers = torch.randint(1, 13, (8, 5)), torch.randint(1, 13, (8, 6))
    mask = torch.ones(8, 6, dtype=torch.long)
    mask[0, 2:] = mask[5, 4:] = 0  # answers that stopped early
    with torch.no_grad():
        logp = answer_logprobs(model, torch.cat([prompt, answers], 1), 5, temperature=0.7)
    old, ref = logp + 0.3 * torch.randn_like(logp), logp + 0.5 * torch.randn_like(logp)
    advantages = grpo.group_advantages(torch.tensor([[1.0, 0, 0, 1], [0, 0, 1, 0]])).flatten()

    theirs = trainer._compute_loss(model, {
        "prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": answers,
        "completion_mask": mask, "advantages": advantages, "old_per_token_logps": old,
        "ref_per_token_logps": ref})  # fmt: skip
    theirs.backward()
    their_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ours, stats = grpo.grpo_loss(
        answer_logprobs(model, torch.cat([prompt, answers], 1), 5, temperature=0.7), old, ref,
        advantages, mask.bool(), clip=0.2, kl_coef=0.04)  # fmt: skip
    ours.backward()
    assert 0.1 < stats["clipped"] < 0.9  # the clip acts on some tokens, not on all
    assert torch.allclose(ours, theirs, atol=1e-6)
    for ours_grad, their_grad in zip([p.grad for p in model.parameters()], their_grads,
                                     strict=True):  # fmt: skip
        assert torch.allclose(ours_grad, their_grad, atol=1e-6)
