"""Tensors worth computing once: a pretrained model's vectors of a dataset, an LLM's scores.

They live in the run store's `cache/<kind>/` folder as safetensors files named by a key that
says what they are (`cache_key`: model, dataset, split, size), so every run in the store — every
arm of a learning curve — finds them there instead of computing them again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepscape.runs import Run


def cache_key(model: str, dataset: str, split: str, size: int, *identity: str) -> str:
    """`model-dataset-splitSIZE`, and a hash of `identity` where the size alone cannot tell two
    subsets of a split apart (the sentences themselves, the question asked, the precision)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "--", model)  # a hub name's "/" may not be in a file name
    key = f"{slug}-{dataset}-{split}{size}"
    if identity:
        key += "-" + hashlib.sha1("\n".join(identity).encode()).hexdigest()[:10]
    return key


def cached(run: Run, kind: str, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor stored under `key` in the run store's cache/`kind`/, else computed and stored
    (written to a temporary file and renamed: another arm may be reading)."""
    path = run.dir.parent / "cache" / kind / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["values"]
        except (SafetensorError, KeyError, OSError):
            pass  # a broken file is computed again and replaced
    values = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: arms may run side by side
    try:
        save_file({"values": values.contiguous()}, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return values
