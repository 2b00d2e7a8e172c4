"""deepscape: the deep learning landscape, made runnable.

from deepscape import run_lab
run = run_lab("vision/101/digits", ["model=mlp"])
run.summary["metrics"]
"""

from typing import Any

__all__ = ["exit_quickly", "run_lab"]


def exit_quickly() -> None:
    """Skip the garbage collector's last pass when the interpreter exits. With torch and
    matplotlib loaded it walks millions of objects for about a second, which every command and
    every sweep worker would pay; the operating system frees the memory anyway."""
    import atexit
    import gc

    atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler


def __getattr__(name: str) -> Any:
    # Lazy, so `deepscape map` answers without importing torch.
    if name == "run_lab":
        from deepscape.lab import run_lab

        return run_lab
    raise AttributeError(f"module 'deepscape' has no attribute {name!r}")
