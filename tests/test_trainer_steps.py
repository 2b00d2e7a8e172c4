"""The task-agnostic trainer on synthetic tensors: steps, evaluation estimates, clipping,
accumulation, collation, resume within an epoch, a language model, and a lab's own loop."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import untimed
from torch import nn

from deepscape.config import ConfigError, TrainConfig
from deepscape.data import TensorSplit
from deepscape.loop import Loop, TrainingDiverged
from deepscape.runs import Run, RunStore
from deepscape.tasks import Classification, LanguageModeling, Task
from deepscape.train import Trainer

PLAIN = TrainConfig(
    threads=1, batch_size=8, lr=0.05, schedule="constant", warmup=0, optimizer="sgd", momentum=0
)


def blobs(n: int = 64, seed: int = 0) -> TensorSplit:
    """Two Gaussian blobs in 4-D: class = which blob."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 2
    inputs = torch.randn(n, 4, generator=g) + 2.0 * targets[:, None].float()
    return TensorSplit(inputs, targets)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def fit(tmp_path, config: TrainConfig, task: Task | None = None, name: str = "run", **kw) -> Run:
    run = RunStore(tmp_path).create(name, {})
    trainer = Trainer(config, run, task=task or Classification(2), progress=False)
    trainer.fit(kw.pop("net", None) or model(), blobs(), blobs(32, seed=1), **kw)
    run.commit_history()
    return run


def test_max_steps_with_evaluations_every_n_steps(tmp_path):
    run = fit(tmp_path, dataclasses.replace(PLAIN, max_steps=20, eval_every=5, epochs=99))
    assert len(run.history("step")) == 20
    evaluations = run.history("eval")
    assert [e["step"] for e in evaluations] == [5, 10, 15, 20]
    assert [e["epoch"] for e in evaluations] == [5 / 8, 10 / 8, 15 / 8, 20 / 8]
    assert not run.history("epoch")
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(evaluations[0])
    assert evaluations[-1]["val_accuracy"] > 0.8
    assert run.evaluations() == evaluations


def test_eval_batches_estimates_from_the_first_batches(tmp_path):
    config = dataclasses.replace(PLAIN, max_steps=4, eval_every=4)
    whole = fit(tmp_path, config, name="whole").history("eval")[-1]
    one = fit(tmp_path, dataclasses.replace(config, eval_batches=1), name="one").history("eval")
    assert one[-1]["train_loss"] == whole["train_loss"]  # the same training
    assert one[-1]["val_loss"] != pytest.approx(whole["val_loss"])  # 8 of 32 examples


def test_grad_clip_bounds_the_update_and_records_the_norm_before(tmp_path):
    net = model()
    before = [p.detach().clone() for p in net.parameters()]
    config = dataclasses.replace(PLAIN, max_steps=1, grad_clip=1e-3, lr=1.0)
    run = fit(tmp_path, config, net=net)
    moved = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(net.parameters(), before, strict=True)]
    )
    assert moved.norm() == pytest.approx(1e-3, rel=1e-3)  # plain SGD: lr · clipped gradient
    assert run.history("step")[0]["grad_norm"] > 0.01  # the norm before clipping


def test_grad_accum_of_two_half_batches_is_one_whole_batch(tmp_path):
    whole, halves = model(), model()
    fit(tmp_path, dataclasses.replace(PLAIN, max_steps=3), net=whole, name="whole")
    config = dataclasses.replace(PLAIN, max_steps=3, batch_size=4, grad_accum=2)
    run = fit(tmp_path, config, net=halves, name="halves")
    assert len(run.history("step")) == 3
    for a, b in zip(whole.parameters(), halves.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("steps", [{"epochs": 0}, {"max_steps": -1}])
def test_nothing_to_train_is_one_line_naming_the_fix(tmp_path, steps):
    config = dataclasses.replace(PLAIN, schedule="onecycle", **steps)  # once a ZeroDivisionError
    with pytest.raises(ConfigError) as error:
        fit(tmp_path, config)
    message = str(error.value)
    assert "\n" not in message and "nothing to train" in message
    assert "give epochs=1 or more, or max_steps=1 or more" in message


def test_adamw_takes_the_configured_betas(tmp_path):
    config = dataclasses.replace(PLAIN, optimizer="adamw", betas=(0.8, 0.95), max_steps=1)
    run = RunStore(tmp_path).create("run", {})
    trainer = Trainer(config, run, task=Classification(2), progress=False)
    from deepscape.optim import make_optimizer

    assert make_optimizer(model(), trainer.config).param_groups[0]["betas"] == (0.8, 0.95)


def test_a_per_item_dataset_with_a_collate_function(tmp_path):
    items = [(x, int(y)) for x, y in zip(blobs().inputs, blobs().targets, strict=True)]

    def collate(batch):
        return torch.stack([x for x, _ in batch]), torch.tensor([y for _, y in batch])

    run = RunStore(tmp_path).create("run", {})
    config = dataclasses.replace(PLAIN, epochs=2)
    trainer = Trainer(config, run, task=Classification(2), progress=False)
    net = trainer.fit(model(), items, items, collate=collate)
    assert [e["epoch"] for e in run.history("epoch")] == [0, 1]
    assert trainer.evaluate(net, items[:8], collate=collate)["accuracy"] >= 0.5


def test_evaluation_streams_the_metrics_of_the_whole_split(tmp_path):
    run = RunStore(tmp_path).create("run", {})
    trainer = Trainer(PLAIN, run, task=Classification(2), progress=False)
    net, data = model(), blobs(50)
    measured = trainer.evaluate(net, data)
    with torch.no_grad():
        logits = net(data.inputs)
    assert measured["loss"] == pytest.approx(float(F.cross_entropy(logits, data.targets)))
    expected = float((logits.argmax(1) == data.targets).float().mean())
    assert measured["accuracy"] == pytest.approx(expected)


def test_resume_within_an_epoch_continues_like_the_uninterrupted_run(tmp_path, monkeypatch):
    config = dataclasses.replace(PLAIN, max_steps=12, eval_every=3, checkpoint_every=0)

    def with_dropout() -> nn.Module:  # draws randomness at every step
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))

    reference = fit(tmp_path, config, net=with_dropout(), name="reference")
    checkpoint = Loop.checkpoint

    def ctrl_c_after_step_6(self):
        checkpoint(self)
        if self.step == 6:  # 6 of the first epoch's 8 steps
            raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "checkpoint", ctrl_c_after_step_6)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path, config, net=with_dropout(), name="cut")
    monkeypatch.setattr(Loop, "checkpoint", checkpoint)
    (cut,) = RunStore(tmp_path).list("cut")
    torch.manual_seed(123)  # whatever ran in between: the checkpoint's random state decides
    Trainer(config, cut, task=Classification(2), progress=False).fit(
        with_dropout(), blobs(), blobs(32, seed=1)
    )
    cut.commit_history()
    assert untimed(cut.history()) == untimed(reference.history())


class Bigram(nn.Module):
    """The smallest language model: the next token's logits from this token alone."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, idx, targets=None):
        logits = self.table(idx)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def test_a_language_model_learns_a_repeating_sequence(tmp_path):
    tokens = torch.arange(40) % 5  # 0 1 2 3 4 0 1 …: each token says the next
    windows = TensorSplit(tokens[:-1].unfold(0, 8, 4), tokens[1:].unfold(0, 8, 4))
    run = RunStore(tmp_path).create("lm", {})
    config = dataclasses.replace(PLAIN, optimizer="adamw", lr=0.1, max_steps=60, eval_every=30)
    torch.manual_seed(0)
    trainer = Trainer(config, run, task=LanguageModeling(), progress=False)
    trainer.fit(Bigram(5), windows, windows)
    evaluations = run.history("eval")
    assert evaluations[0]["val_loss"] > evaluations[-1]["val_loss"]
    assert evaluations[-1]["val_loss"] < 0.1  # ln 5 = 1.6 at the start
    assert run.summary["monitor"] == "val_loss"


def test_a_labs_own_loop_gets_records_checkpoints_resume_and_the_divergence_check(tmp_path):
    run = RunStore(tmp_path).create("own", {})
    weights = nn.Linear(2, 1)
    with Loop(run, total_steps=4, state={"model": weights}, checkpoint_every=0) as loop:
        while loop.step < 2:
            weights.weight.data += 1
            loop.log_step({"kind": "step", "step": loop.step, "loss": 1.0})
            loop.evaluated({"kind": "eval", "step": loop.step, "val_loss": 1.0})
    assert (run.dir / "progress.txt").read_text() == "2/4 steps\n"
    again = nn.Linear(2, 1)
    with Loop(Run(run.dir), total_steps=4, state={"model": again}) as loop:
        assert loop.step == 2  # resumed
        torch.testing.assert_close(again.weight, weights.weight)
        with pytest.raises(TrainingDiverged, match="the loss became nan at step 2: lower the"):
            loop.check(float("nan"))


def test_the_gradient_norm_is_recorded_every_step_only_when_clipping(tmp_path):
    config = dataclasses.replace(PLAIN, max_steps=3, diagnostics_every=10)
    plain = fit(tmp_path, config, name="plain").history("step")
    clipped = fit(tmp_path, dataclasses.replace(config, grad_clip=10.0), name="clipped")
    assert ["grad_norm" in s for s in plain] == [True, False, False]  # step 0 is diagnosed
    assert all(s["grad_norm"] > 0 for s in clipped.history("step"))  # computed anyway


def test_on_step_may_freeze_and_unfreeze_parameters_as_the_steps_go(tmp_path):
    # gradual unfreezing: the first layer frozen for 3 steps, then trained; AdamW with weight
    # decay, so a frozen weight would move if the optimizer did not skip it
    net, seen = model(), []
    first, start = net[0].weight, net[0].weight.detach().clone()
    moved = []

    def on_step(step: int) -> None:
        seen.append(step)
        moved.append(not torch.equal(first, start))
        first.requires_grad_(step >= 3)

    config = dataclasses.replace(PLAIN, max_steps=6, optimizer="adamw", weight_decay=0.1)
    fit(tmp_path, config, net=net, on_step=on_step)
    assert seen == list(range(6))
    assert moved == [False, False, False, False, True, True]  # still at step 3, moved after it
    assert not torch.equal(first, start)


class EpochAware(TensorSplit):
    """A split that records the epoch it was told of when each batch was drawn."""

    def __init__(self, split: TensorSplit):
        super().__init__(split.inputs, split.targets)
        self.epoch, self.drawn_in = -1, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitems__(self, indices):
        self.drawn_in.append(self.epoch)
        return super().__getitems__(indices)


def test_a_split_with_set_epoch_is_told_each_epoch_before_it_is_drawn_from(tmp_path):
    train = EpochAware(blobs())  # 8 batches an epoch
    run = RunStore(tmp_path).create("run", {})
    trainer = Trainer(dataclasses.replace(PLAIN, epochs=3), run, task=Classification(2))
    trainer.fit(model(), train, blobs(32, seed=1))
    assert train.drawn_in == [0] * 8 + [1] * 8 + [2] * 8

    # a run resumed within epoch 2 draws its next batch in epoch 2, not in Accelerate's first
    train.drawn_in.clear()
    loader = trainer.accelerator.prepare_data_loader(trainer.loader(train, shuffle=True))

    class ResumedLoop:
        def restore_random_state(self) -> None:
            pass

    next(trainer.batches(loader, 2 * len(loader) + 3, ResumedLoop()))
    assert train.drawn_in[-1] == 2
