"""Weights & Biases: offline logging with no account and no network, and sweep translation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deepscape import landscape
from deepscape.cli import app
from deepscape.lab import run_lab
from deepscape.labs.vision.l101_digits import Config
from deepscape.sweep import parse_spec, sweep_config

DIGITS = "vision/101/digits"
TINY = ["model=linear", "epochs=2", "threads=1"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.mark.slow
def test_a_run_logs_to_wandb_offline_without_an_account(store, offline):
    seen: list[dict] = []
    notes: list[str] = []
    run = run_lab(
        DIGITS,
        TINY,
        store=store,
        show_progress=False,
        wandb=True,
        notify=notes.append,
        on_start=lambda r: r.log_listeners.append(seen.append),
    )
    assert run.status == "finished"
    info = run.summary["wandb"]
    assert info["mode"] == "offline" and info["id"]
    assert info["sync_with"].startswith("wandb sync ")
    assert any("sync later" in note for note in notes)
    # every record reached the listeners (W&B's among them), and W&B wrote its offline run
    assert len(seen) == len(run.history())
    offline_runs = list((run.dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    (log,) = offline_runs[0].glob("*.wandb")
    assert log.stat().st_size > 5_000  # metrics, figures, summary and the weights artifact


def test_a_wandb_failure_never_fails_the_run(store, offline, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("wandb is down")

    monkeypatch.setattr(wandb, "init", broken)
    notes: list[str] = []
    run = run_lab(DIGITS, TINY, store=store, show_progress=False, wandb=True, notify=notes.append)
    assert run.status == "finished"
    assert any("W&B logging stopped (RuntimeError: wandb is down)" in n for n in notes)
    assert "wandb" not in run.summary


def test_sweep_spec_translates_to_a_wandb_sweep_config():
    spec = parse_spec(
        DIGITS,
        Config,
        ["lr=1e-4..1e-1:log", "width=16..128:int", "dropout=0..0.5", "model=mlp,cnn", "epochs=3"],
        seeds=2,
        random_draws=5,
    )
    config = sweep_config(spec, landscape.load().lab(DIGITS).target)
    assert config["method"] == "random" and config["run_cap"] == 10
    assert config["metric"] == {"name": "test_accuracy", "goal": "maximize"}
    assert config["parameters"] == {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "width": {"distribution": "int_uniform", "min": 16, "max": 128},
        "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
        "model": {"values": ["mlp", "cnn"]},
        "epochs": {"value": "3"},
        "seed": {"values": [0, 1]},
    }
    assert config["command"] == ["deepscape", "run", DIGITS, "--wandb", "${args_no_hyphens}"]
    grid = sweep_config(
        parse_spec(DIGITS, Config, ["lr=0.1,0.01"]), landscape.load().lab(DIGITS).target
    )
    assert grid["method"] == "grid" and "run_cap" not in grid


def test_agent_without_login_says_what_it_needs_and_keeps_the_config(home, offline):
    result = CliRunner().invoke(app, ["sweep", "digits", "lr=0.1,0.01", "--wandb", "--agent"])
    assert result.exit_code == 1
    assert "needs a W&B login and the network" in result.stderr
    (saved,) = (home / "sweeps").glob("*/wandb_sweep.json")
    assert json.loads(saved.read_text())["parameters"]["lr"] == {"values": [0.1, 0.01]}
    refused = CliRunner().invoke(app, ["sweep", "digits", "lr=0.1,0.01", "--agent"])
    assert refused.exit_code == 2 and "add --wandb" in refused.stderr
