"""vision/101/digits: the model really learns real digits, and the run records everything."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from deepscape.data import get_dataset
from deepscape.lab import run_lab
from deepscape.models.vision import build_model
from deepscape.runs import Run, RunStore

DIGITS = "vision/101/digits"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Run:
    store = RunStore(tmp_path_factory.mktemp("cnn"))
    return run_lab(DIGITS, ["epochs=3", "threads=1"], store=store, show_progress=False)


def test_a_short_cnn_run_reads_digits(cnn_run):
    metrics = cnn_run.summary["metrics"]
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["val_accuracy"] >= 0.95
    assert metrics["test_loss"] < 0.5
    assert metrics["parameters"] == sum(
        p.numel()
        for p in build_model(
            "cnn", images=torch.rand(4, 1, 8, 8), num_classes=10, width=32, depth=2, dropout=0.1
        ).parameters()
    )


def test_the_linear_model_learns_too(store):
    run = run_lab(
        DIGITS, ["model=linear", "epochs=8", "threads=1"], store=store, show_progress=False
    )
    assert run.summary["metrics"]["test_accuracy"] >= 0.85
    assert run.summary["metrics"]["parameters"] == 8 * 8 * 10 + 10
    assert run.summary["target"]["reached"] is False  # the bottom rung stays below 99 %


def test_a_run_counted_in_steps_records_its_last_evaluation(store):
    # max_steps evaluates every eval_every steps ("eval" records), not at epochs' ends
    run = run_lab(
        DIGITS,
        ["max_steps=60", "eval_every=30", "threads=1", "figures=false"],
        store=store,
        show_progress=False,
    )
    evaluations = run.history("eval")
    assert [e["step"] for e in evaluations] == [30, 60]
    assert run.summary["metrics"]["val_accuracy"] == evaluations[-1]["val_accuracy"]
    assert run.summary["metrics"]["test_accuracy"] >= 0.8


def test_the_mlp_learns_on_mnist_5k(store):
    run = run_lab(
        DIGITS,
        ["dataset=mnist-5k", "model=mlp", "width=64", "epochs=3", "threads=1"],
        store=store,
        show_progress=False,
    )
    assert run.summary["data"]["name"] == "mnist-5k"
    assert run.summary["metrics"]["test_accuracy"] >= 0.85


def test_the_summary_records_the_whole_run(cnn_run):
    summary = cnn_run.summary
    assert summary["status"] == "finished" and cnn_run.status == "finished"
    assert summary["lab"] == DIGITS
    assert summary["data"] == {
        "name": "digits",
        "source": summary["data"]["source"],
        "train": 1293,
        "validation": 144,
        "test": 360,
    }
    target = summary["target"]
    assert (target["metric"], target["op"], target["value"]) == ("test_accuracy", ">=", 0.99)
    assert isinstance(target["reached"], bool)
    assert target["reached"] == (summary["metrics"]["test_accuracy"] >= 0.99)
    assert {"python", "deepscape", "torch", "numpy"} <= set(summary["versions"])
    assert summary["machine"]["cpus"] >= 1 and summary["machine"]["host"]
    assert 0 < summary["wall_seconds"] < 300
    assert summary["best"]["epoch"] in range(3)
    assert set(summary["best"]) >= {"epoch", "val_accuracy", "val_loss"}
    assert cnn_run.config["epochs"] == 3 and cnn_run.config["model"] == "cnn"
    assert len(cnn_run.history("epoch")) == 3


def test_the_four_figures_are_drawn(cnn_run):
    figures = {path.stem: path for path in cnn_run.figures()}
    assert set(figures) == {"curves", "optimization", "confusion_matrix", "predictions"}
    for path in figures.values():
        content = path.read_bytes()
        assert content.startswith(PNG_MAGIC), path
        assert len(content) > 10_000, path  # a drawn figure, not an empty canvas


def test_saved_weights_reproduce_the_test_accuracy(cnn_run):
    config = cnn_run.config
    data = get_dataset(config["dataset"])
    model = build_model(
        config["model"],
        images=data.train.inputs,
        num_classes=len(data.classes),
        width=config["width"],
        depth=config["depth"],
        dropout=config["dropout"],
    )
    model.load_state_dict(load_file(cnn_run.weights_path))
    model.eval()
    with torch.inference_mode():
        predictions = model(data.test.inputs).argmax(1)
    accuracy = (predictions == data.test.targets).float().mean().item()
    assert accuracy == pytest.approx(cnn_run.summary["metrics"]["test_accuracy"], abs=1e-6)


def test_saved_weights_carry_the_normalisation(cnn_run):
    weights = load_file(cnn_run.weights_path)
    pixels = get_dataset("digits").train.inputs
    assert weights["0.mean"].flatten().item() == pytest.approx(pixels.mean().item(), rel=1e-5)
    assert weights["0.std"].flatten().item() == pytest.approx(pixels.std().item(), rel=1e-4)
