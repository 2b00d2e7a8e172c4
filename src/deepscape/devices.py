"""Where a model runs and in which precision: the `device` and `precision` options of every
training lab, resolved for this machine — by the trainer, and alike by a lab that runs a model
outside it (a transfer lab embedding sentences with a pretrained encoder)."""

from __future__ import annotations

import torch

from deepscape.config import ConfigError, TrainConfig


def resolve_device(choice: str) -> torch.device:
    """`auto` → a GPU when PyTorch sees one, else the CPU; `cuda` without a GPU is an error."""
    gpu = choice != "cpu" and torch.cuda.is_available()
    if choice == "cuda" and not gpu:
        raise ConfigError("device=cuda but no GPU is visible to PyTorch: use device=auto")
    return torch.device("cuda" if gpu else "cpu")


def resolve_precision(precision: str, *, gpu: bool) -> str:
    """`auto` → bf16 where the hardware computes it natively (a recent GPU; a CPU with AVX512-BF16
    or AMX, where it is ~2× faster than fp32), else fp32; any other choice is kept."""
    if precision != "auto":
        return precision
    if gpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"


def device_and_precision(config: TrainConfig) -> tuple[torch.device, str]:
    """The device `config` asks for on this machine, and the precision it computes in there."""
    device = resolve_device(config.device)
    return device, resolve_precision(config.precision, gpu=device.type == "cuda")
