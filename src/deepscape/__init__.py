"""deepscape: the deep learning landscape, made runnable.

from deepscape import run_lab
run = run_lab("vision/101/digits", ["model=mlp"])
run.summary["metrics"]
"""

from typing import Any

__all__ = ["run_lab"]


def __getattr__(name: str) -> Any:
    # Lazy, so `deepscape map` answers without importing torch.
    if name == "run_lab":
        from deepscape.lab import run_lab

        return run_lab
    raise AttributeError(f"module 'deepscape' has no attribute {name!r}")
