"""The dataset registry and its one contract.

Every dataset, whatever its modality, loads as `Splits`: a train, a validation and a test split
(fixed, seeded, the same for every run so that runs compare), the class names, and a short
description of where the data came from. Labs choose data by name (`get_dataset("digits")`); model
selection looks at `validation`, and only the final evaluation touches `test`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Sampler

from deepscape.config import ConfigError, closest

SPLIT_SEED = 0  # the data split never depends on the run's seed: every run sees the same test set


class DataUnavailable(RuntimeError):
    """The data cannot be had here; the message says how to get it."""


class TensorSplit(Dataset):
    """A split held in memory as tensors; yields whole batches with one indexing operation."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # DataLoader calls this with a whole batch of indices: one gather instead of B lookups.
        index = torch.as_tensor(indices)
        return self.inputs[index], self.targets[index]

    def subset(self, indices: Sequence[int] | np.ndarray) -> TensorSplit:
        """The examples at `indices`, as a split of the same kind."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return TensorSplit(self.inputs[index], self.targets[index])

    def stratified(self, n: int) -> TensorSplit:
        """A stratified, seeded subset of `n` examples (the whole split when n is 0 or more)."""
        if not 0 < n < len(self):
            return self
        # holdout rounds the held-out count up: half an example of slack makes it keep exactly n
        return self.subset(kept_indices(self.targets.numpy(), (n + 0.5) / len(self)))


class TextSplit(TensorSplit):
    """Sentences as token ids ("b t", padded with 0) with the raw sentences beside them, for
    models that bring their own tokenizer (a pretrained encoder, an LLM)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, texts: list[str]):
        super().__init__(inputs, targets)
        if len(texts) != len(targets):
            raise ValueError(f"{len(texts)} sentences but {len(targets)} targets")
        self.texts = texts

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # The split is padded to its longest sentence; a batch needs only its own longest. On
        # SST-2's phrases (9 words on average, 52 at most) that is 3× less work for a CNN.
        ids, targets = super().__getitems__(indices)
        used = torch.nonzero((ids != 0).any(0))
        return ids[:, : int(used.max()) + 1 if len(used) else 1], targets

    @property
    def lengths(self) -> torch.Tensor:
        """Each sentence's length in tokens, "b"."""
        return (self.inputs != 0).sum(1)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextSplit:
        index = np.asarray(indices, dtype=np.int64)
        kept = super().subset(index)
        return TextSplit(kept.inputs, kept.targets, [self.texts[i] for i in index])


class LengthGroupedBatches(Sampler[list[int]]):
    """Batches of examples of similar length, in random order: shuffle, cut into pools of
    `pool` batches, sort each pool by length, cut it into batches, shuffle the batches. Padding
    to a batch's longest then costs little (HF Trainer's `group_by_length`); which examples meet
    in a batch is still random. Draws from torch's global generator, like `shuffle=True`."""

    def __init__(self, lengths: torch.Tensor, batch_size: int, *, pool: int = 50):
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches: list[torch.Tensor] = []
        for pool in torch.randperm(len(self.lengths)).split(self.batch_size * self.pool):
            by_length = pool[self.lengths[pool].argsort(stable=True)]
            batches.extend(by_length.split(self.batch_size))
        for index in torch.randperm(len(batches)).tolist():
            yield batches[index].tolist()


def whole_batch(batch: Any) -> Any:
    """collate_fn for splits that already return whole batches."""
    return batch


@dataclass
class Splits:
    name: str
    train: TensorSplit
    validation: TensorSplit
    test: TensorSplit
    classes: list[str]
    modality: str  # "image" or "text": what inspect/serve may do with it
    source: str  # where the data came from, for the run's summary
    tokenizer: Any = None  # text: the `tokenizers.Tokenizer` that made the token ids

    @property
    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s)) for s in ("train", "validation", "test")}

    def with_train_fraction(self, fraction: float) -> Splits:
        """The same splits with only `fraction` of the training split (stratified, seeded), for
        learning how much data buys; validation and test stay whole."""
        if not 0 < fraction <= 1:
            raise ConfigError(f"train_fraction={fraction:g} must be in (0, 1]")
        if fraction == 1:
            return self
        train = self.train.subset(kept_indices(self.train.targets.numpy(), fraction))
        return dataclasses.replace(self, train=train)

    def with_validation_in_training(self) -> Splits:
        """The same splits with the validation examples added to the training split: the final
        run of a recipe chosen on validation, as speed runs train on all 50,000 CIFAR-10 images.
        Validation stays, to watch the run, but its numbers no longer measure unseen data; the
        test split still does."""
        train = TensorSplit(
            torch.cat([self.train.inputs, self.validation.inputs]),
            torch.cat([self.train.targets, self.validation.targets]),
        )
        return dataclasses.replace(self, train=train)


Loader = Callable[[Path | None], Splits]
_REGISTRY: dict[str, tuple[Loader, str]] = {}


def register(name: str, description: str) -> Callable[[Loader], Loader]:
    """Add a loader `fn(data_dir) -> Splits` to the registry under `name`."""

    def add(loader: Loader) -> Loader:
        _REGISTRY[name] = (loader, description)
        return loader

    return add


def available() -> dict[str, str]:
    """Dataset names with their one-line descriptions."""
    _load_builtin_loaders()
    return {name: description for name, (_, description) in _REGISTRY.items()}


def get_dataset(name: str, data_dir: str | Path | None = None) -> Splits:
    """Load a registered dataset; `data_dir` points at a local copy where the loader takes one."""
    _load_builtin_loaders()
    if name not in _REGISTRY:
        raise DataUnavailable(
            f"unknown dataset '{name}'{closest(name, _REGISTRY)} (datasets: {', '.join(_REGISTRY)})"
        )
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataUnavailable(f"data_dir={data_dir} is not a folder")
    return _REGISTRY[name][0](Path(data_dir) if data_dir else None)


def holdout(
    inputs: np.ndarray, targets: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified, seeded split: (kept inputs, held-out inputs, kept targets, held-out ones)."""
    # Stratify (same class mix in both parts) unless the set is too small to have every class
    # in the held-out part.
    stratify = targets if fraction * len(targets) >= len(np.unique(targets)) else None
    return train_test_split(
        inputs, targets, test_size=fraction, stratify=stratify, random_state=SPLIT_SEED
    )


def kept_indices(targets: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the part `holdout` keeps when it holds out 1 − `fraction` (same split)."""
    kept, _, _, _ = holdout(np.arange(len(targets)), targets, 1 - fraction)
    return kept


def _load_builtin_loaders() -> None:
    from deepscape.data import masks, objects, text, vision  # noqa: F401  (registers on import)
