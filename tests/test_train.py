"""The trainer: same seed, same run; divergence and broken checkpoints end in one clear line."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch
from conftest import untimed

from deepscape.config import ConfigError, TrainConfig, apply_overrides
from deepscape.lab import run_lab
from deepscape.labs.vision.l101_digits import Config
from deepscape.loop import Loop
from deepscape.optim import base_lr, make_optimizer, make_schedule
from deepscape.runs import Run, RunStore
from deepscape.tasks import Classification
from deepscape.train import CorruptCheckpoint, Trainer, TrainingDiverged, UpdateWatcher

DIGITS = "vision/101/digits"
SMALL = ["epochs=2", "model=mlp", "threads=1"]
STEPS_PER_EPOCH = 41  # ceil(1293 training digits / batch_size 32)


def _run(root: Path, overrides: list[str]) -> Run:
    return run_lab(DIGITS, overrides, store=RunStore(root), show_progress=False)


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory) -> dict[str, Run]:
    """Two runs with seed 0 and one with seed 1, each in its own store."""
    return {
        name: _run(tmp_path_factory.mktemp(name), [*SMALL, f"seed={seed}"])
        for name, seed in (("first", 0), ("again", 0), ("other_seed", 1))
    }


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_same_history_and_metrics(small_runs):
    first, again = small_runs["first"], small_runs["again"]
    assert first.status == again.status == "finished"
    assert untimed(first.history()) == untimed(again.history())
    assert first.summary["metrics"] == again.summary["metrics"]
    assert untimed([first.summary["best"]]) == untimed([again.summary["best"]])


def test_another_seed_gives_other_numbers(small_runs):
    first, other = small_runs["first"], small_runs["other_seed"]
    assert [s["loss"] for s in first.history("step")] != [s["loss"] for s in other.history("step")]
    assert first.summary["metrics"]["test_loss"] != other.summary["metrics"]["test_loss"]


def test_same_seed_in_one_process_does_not_depend_on_what_ran_before(small_runs, tmp_path):
    # a CNN run in between changes torch's global state; the seed must still decide everything
    _run(tmp_path / "cnn", ["epochs=1", "model=cnn", "threads=1", "seed=5"])
    repeat = _run(tmp_path / "repeat", [*SMALL, "seed=0"])
    assert untimed(repeat.history()) == untimed(small_runs["first"].history())


# -- what a run records ----------------------------------------------------------------------------
def test_step_records(small_runs):
    steps = small_runs["first"].history("step")
    assert len(steps) == 2 * STEPS_PER_EPOCH
    assert [s["step"] for s in steps] == list(range(2 * STEPS_PER_EPOCH))
    assert [s["epoch"] for s in steps] == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
    weight_matrices = {"1.layers.1.weight", "1.layers.4.weight", "1.layers.7.weight"}
    for s in steps:
        watched = s["step"] % 10 == 0  # diagnostics every diagnostics_every steps
        keys = {"kind", "step", "epoch", "loss", "lr"}
        assert set(s) == (keys | {"grad_norm", "update_ratio"} if watched else keys)
        assert math.isfinite(s["loss"]) and s["loss"] > 0
        assert 0 < s["lr"] <= 3e-3  # one-cycle up to the lab's peak lr
        if watched:
            assert math.isfinite(s["grad_norm"]) and s["grad_norm"] > 0
            assert set(s["update_ratio"]) == weight_matrices  # matrices only: no biases
            assert all(0 < r < 1 for r in s["update_ratio"].values())
    lrs = [s["lr"] for s in steps]
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1  # warm up, then anneal
    assert max(lrs) == pytest.approx(3e-3, rel=0.05)
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_epoch_records_and_best(small_runs):
    run = small_runs["first"]
    epochs = run.history("epoch")
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert [e["step"] for e in epochs] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    for e in epochs:
        assert set(e) == {
            "kind",
            "epoch",
            "step",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
        }
        assert 0 <= e["train_accuracy"] <= 1 and 0 <= e["val_accuracy"] <= 1
        assert e["train_loss"] > 0 and e["val_loss"] > 0
    assert epochs[1]["val_loss"] < epochs[0]["val_loss"]
    best = max(epochs, key=lambda e: e["val_accuracy"])
    assert run.summary["monitor"] == "val_accuracy"
    assert run.summary["best"] == {k: v for k, v in best.items() if k != "kind"}
    mean_step_loss = sum(s["loss"] for s in run.history("step")[:STEPS_PER_EPOCH])
    assert epochs[0]["train_loss"] == pytest.approx(mean_step_loss / STEPS_PER_EPOCH)


def _checkpointed_epochs(store: RunStore, overrides: list[str], monkeypatch) -> list[int]:
    taken: list[int] = []
    checkpoint = Loop.checkpoint

    def counting(self):
        taken.append(self.step // STEPS_PER_EPOCH)
        checkpoint(self)

    monkeypatch.setattr(Loop, "checkpoint", counting)
    run_lab(DIGITS, overrides, store=store, show_progress=False)
    return taken


def test_checkpoint_every_0_checkpoints_each_epoch(store, monkeypatch):
    overrides = ["epochs=3", "model=linear", "threads=1", "checkpoint_every=0"]
    assert _checkpointed_epochs(store, overrides, monkeypatch) == [1, 2, 3]


def test_checkpoints_are_timed_but_the_last_epoch_always_gets_one(store, monkeypatch):
    assert Config().checkpoint_every == 10.0
    overrides = ["epochs=3", "model=linear", "threads=1", "checkpoint_every=1e9"]
    assert _checkpointed_epochs(store, overrides, monkeypatch) == [3]


def test_a_finished_run_keeps_weights_and_drops_its_checkpoint(small_runs):
    run = small_runs["first"]
    assert run.weights_path.stat().st_size > 0
    assert not run.checkpoint_path.exists()
    assert (
        run.dir / "progress.txt"
    ).read_text() == f"{2 * STEPS_PER_EPOCH}/{2 * STEPS_PER_EPOCH} steps\n"
    assert run.config["epochs"] == 2 and run.config["model"] == "mlp"


# -- divergence ------------------------------------------------------------------------------------
DIVERGE = ["epochs=1", "model=mlp", "threads=1", "lr=1e6", "optimizer=sgd"]
DIVERGE += ["schedule=constant", "warmup=0"]


def test_a_diverging_run_stops_with_a_message_naming_lr(store):
    started: list[Run] = []
    with pytest.raises(TrainingDiverged) as error:
        run_lab(DIGITS, DIVERGE, store=store, show_progress=False, on_start=started.append)
    message = str(error.value)
    assert "lower lr (now 1e+06)" in message
    assert "raise warmup (now 0)" in message
    assert message.startswith("the loss became nan") or message.startswith("the loss became inf")
    (run,) = started
    assert run.status == "failed"
    assert run.summary["error"] == f"TrainingDiverged: {message}"
    assert run.summary["wall_seconds"] > 0
    steps = run.history("step")  # the steps up to the blow-up are kept, for the post-mortem
    assert steps and all(math.isfinite(s["loss"]) for s in steps)
    assert not run.weights_path.exists()


# -- checkpoints -----------------------------------------------------------------------------------
def _interrupted_run(store: RunStore, checkpoint: bytes) -> Run:
    config = apply_overrides(Config(), ["epochs=1", "model=mlp", "threads=1"])
    run = store.create(DIGITS, dataclasses.asdict(config), target="t")
    run.checkpoint_path.write_bytes(checkpoint)
    run.update_summary(status="interrupted")
    return run


@pytest.mark.parametrize(
    "garbage",
    [b"this is not a checkpoint", b"PK\x03\x04" + b"\x00" * 64, b""],
    ids=["text", "zip-header", "empty"],
)
def test_resuming_from_a_corrupt_checkpoint_fails_with_one_line(store, garbage):
    run = _interrupted_run(store, garbage)
    with pytest.raises(CorruptCheckpoint) as error:
        run_lab(DIGITS, [], store=store, resume=run.id, show_progress=False)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint {run.checkpoint_path} cannot be read (")
    assert message.endswith("start a new run instead of resuming this one")
    assert run.status == "failed"
    assert run.summary["error"].startswith("CorruptCheckpoint: ")


def test_a_checkpoint_of_another_model_is_corrupt_too(store, tmp_path):
    other = torch.nn.Linear(2, 2)
    torch.save({"model": other.state_dict(), "epochs_done": 1}, tmp_path / "ckpt.pt")
    run = _interrupted_run(store, (tmp_path / "ckpt.pt").read_bytes())
    with pytest.raises(CorruptCheckpoint, match=r"cannot be read \(RuntimeError\)"):
        run_lab(DIGITS, [], store=store, resume=run.id, show_progress=False)


@pytest.mark.parametrize("lookahead", ["false", "true"])
def test_interrupt_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(
    store, tmp_path, monkeypatch, lookahead
):
    """In-process twin of the CLI test: Ctrl-C lands right after epoch 2's checkpoint. With
    Lookahead the slow weights travel in the checkpoint too, or the resumed run would differ."""
    overrides = ["epochs=4", "model=mlp", "threads=1", "seed=3", "checkpoint_every=0"]
    overrides.append(f"lookahead={lookahead}")
    reference = _run(tmp_path / "reference", overrides)

    checkpoint = Loop.checkpoint

    def checkpoint_then_ctrl_c(self):
        checkpoint(self)
        if self.step == 2 * STEPS_PER_EPOCH:
            raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "checkpoint", checkpoint_then_ctrl_c)
    started: list[Run] = []
    with pytest.raises(KeyboardInterrupt):
        run_lab(DIGITS, overrides, store=store, show_progress=False, on_start=started.append)
    (run,) = started
    assert run.status == "interrupted"
    assert run.summary["resume_with"] == f"deepscape run {DIGITS} --resume {run.id}"
    assert run.checkpoint_path.exists()
    assert [e["epoch"] for e in Run(run.dir).history("epoch")] == [0, 1]
    monkeypatch.setattr(Loop, "checkpoint", checkpoint)

    resumed = run_lab(DIGITS, [], store=store, resume=run.id, show_progress=False)
    assert resumed.dir == run.dir
    assert resumed.status == "finished"
    assert resumed.summary["resume_with"] is None
    assert resumed.summary["metrics"] == reference.summary["metrics"]
    assert untimed(Run(resumed.dir).history()) == untimed(reference.history())


def test_ctrl_c_between_history_and_checkpoint_loses_nothing(store, tmp_path, monkeypatch):
    """The history of epoch 2 is on disk but its checkpoint never landed: resume redoes epoch 2
    from the epoch-1 checkpoint and the history ends up exactly like an uninterrupted run's."""
    overrides = ["epochs=3", "model=mlp", "threads=1", "seed=4", "checkpoint_every=0"]
    reference = _run(tmp_path / "reference", overrides)

    save, calls = torch.save, []

    def save_then_ctrl_c_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_ctrl_c_on_the_second)
    started: list[Run] = []
    with pytest.raises(KeyboardInterrupt):
        run_lab(DIGITS, overrides, store=store, show_progress=False, on_start=started.append)
    (run,) = started
    assert [e["epoch"] for e in Run(run.dir).history("epoch")] == [0, 1]  # 1 is past the checkpoint
    monkeypatch.setattr(torch, "save", save)

    resumed = run_lab(DIGITS, [], store=store, resume=run.id, show_progress=False)
    assert untimed(Run(resumed.dir).history()) == untimed(reference.history())
    assert resumed.summary["metrics"] == reference.summary["metrics"]


# -- the optimiser and the schedule ----------------------------------------------------------------
def _model() -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))


def test_weight_decay_only_on_weight_matrices():
    model = _model()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1))
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert all(p.ndim == 1 for p in plain["params"]) and len(plain["params"]) == 4
    sgd = make_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]


def test_lr_scales_by_name_prefix_and_frozen_parameters_left_out():
    model = _model()
    model[0].requires_grad_(False)  # a frozen first layer
    config = TrainConfig(lr=0.1, weight_decay=0.1, schedule="onecycle", warmup=0.5)
    optimizer = make_optimizer(model, config, {"1.": 0.1})
    groups = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in optimizer.param_groups}
    assert groups == {(0.1 * 0.1, 0.0): 2, (0.1, 0.1): 1, (0.1, 0.0): 1}  # norm ×0.1; last layer
    trained = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(trained) == 4 and all(p is not model[0].weight for p in trained)
    scheduler = make_schedule(optimizer, config, total_steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    low, high, _ = sorted(g["lr"] for g in optimizer.param_groups)
    assert low == pytest.approx(high * 0.1) and high > 0.05  # each group's cycle at its own peak
    assert base_lr(optimizer) == pytest.approx(high)  # what the step records call "lr"
    watched = UpdateWatcher(model).names
    assert "0.weight" not in watched and "2.weight" in watched  # frozen weights do not move


def test_an_lr_scale_of_zero_freezes_those_parameters():
    model = _model()
    optimizer = make_optimizer(model, TrainConfig(lr=0.1), {"0.": 0})
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model[0].weight) not in trained and not model[0].weight.requires_grad
    assert id(model[2].weight) in trained
    assert base_lr(optimizer) == pytest.approx(0.1)


def _lrs(schedule: str, warmup: float, total: int = 100) -> list[float]:
    config = TrainConfig(lr=0.1, schedule=schedule, warmup=warmup)
    optimizer = make_optimizer(_model(), config)
    scheduler = make_schedule(optimizer, config, total_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_constant_schedule_with_warmup():
    lrs = _lrs("constant", warmup=0.1)
    assert lrs[0] == pytest.approx(1e-4)  # 1e-3 of the peak
    assert lrs[5] < lrs[9] < 0.1
    assert lrs[10:] == pytest.approx([0.1] * 90)
    assert _lrs("constant", warmup=0) == pytest.approx([0.1] * 100)


def test_cosine_schedule_decays_to_zero():
    lrs = _lrs("cosine", warmup=0.1)
    assert lrs[10] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 1e-3


def test_onecycle_schedule_peaks_after_warmup():
    lrs = _lrs("onecycle", warmup=0.3)
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.1)
    assert 25 <= peak <= 32
    assert lrs[0] < 0.01 and lrs[-1] < 1e-4


def test_triangle_schedule_is_airbenchs_straight_lines_with_constant_momentum():
    lrs = _lrs("triangle", warmup=0.23)  # peak at step 23 of 100
    assert lrs[0] == pytest.approx(0.02)  # 0.2 of the peak
    assert lrs[23] == pytest.approx(0.1) and max(lrs) == pytest.approx(0.1)
    assert lrs[99] == pytest.approx(0.1 * (1 - 0.93 * 76 / 77))  # on the way to 0.07 at step 100
    rises, falls = itertools.pairwise(lrs[:24]), itertools.pairwise(lrs[23:])
    assert all(b - a == pytest.approx(0.08 / 23) for a, b in rises)
    assert all(a - b == pytest.approx(0.093 / 77) for a, b in falls)
    config = TrainConfig(lr=0.1, optimizer="sgd", momentum=0.85, schedule="triangle")
    optimizer = make_optimizer(_model(), config)
    scheduler = make_schedule(optimizer, config, total_steps=10)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["momentum"] == 0.85  # one-cycle's would cycle


def test_device_cuda_without_a_gpu_is_refused(store):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    run = store.create(DIGITS, {})
    with pytest.raises(ConfigError, match="device=cuda but no GPU is visible to PyTorch"):
        Trainer(Config(device="cuda", threads=1), run, task=Classification(10), progress=False)


def test_runs_of_different_precision_in_one_process(store):
    """Accelerate's state is per process: a bf16 run after an fp32 run must not be refused."""
    first = run_lab(DIGITS, ["epochs=2", "threads=1"], store=store, show_progress=False)
    second = run_lab(
        DIGITS, ["epochs=2", "threads=1", "precision=bf16"], store=store, show_progress=False
    )
    assert first.status == second.status == "finished"
    assert second.summary["metrics"]["test_accuracy"] > 0.8


def test_plain_sgd_without_momentum_is_accepted():
    model = _model()
    optimizer = make_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.0))
    assert optimizer.defaults["momentum"] == 0 and optimizer.defaults["nesterov"] is False
