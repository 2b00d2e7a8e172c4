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
