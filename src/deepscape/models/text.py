"""The sentence CNN of Kim (2014): word embeddings → parallel 1-D convolutions of a few widths →
max over time → dropout → linear.

Each filter of width w is an n-gram detector: it slides over every w consecutive words and fires
on the phrases it has learned; max-over-time keeps its strongest response anywhere in the
sentence, so a sentence of any length becomes one fixed-size feature vector — the CNN as a
feature extractor, the classifier a linear layer on top.

Token ids are padded with 0 ([PAD]) to the longest sentence of a batch, and every sentence gets
width − 1 more pads so that its last words are seen by windows of every width. Windows that start
past a sentence's end are masked out of the max, so a sentence gets the same features however
much padding its batch has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID = 0


class SentenceCNN(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        dim: int = 50,
        widths: tuple[int, ...] = (3, 4, 5),
        filters: int = 100,
        dropout: float = 0.5,
        embeddings: torch.Tensor | None = None,
        freeze_embeddings: bool = False,
    ):
        super().__init__()
        if embeddings is not None:
            vocab_size, dim = embeddings.shape
        self.widths = tuple(widths)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        if embeddings is not None:
            self.embedding.weight.data.copy_(embeddings)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, w) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(filters * len(self.widths), num_classes)

    def filter_maps(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Each width's filter responses at every window start, "b filters windows", with the
        windows that start past the sentence's end at −inf."""
        # w − 1 pads after the end: the last words get windows of every width too
        ids = F.pad(ids, (0, max(self.widths) - 1), value=PAD_ID)
        x = self.embedding(ids).transpose(1, 2)  # "b t d -> b d t": Conv1d slides over t
        lengths = (ids != PAD_ID).sum(1).clamp(min=1)  # "b"
        maps = []
        for conv in self.convs:
            response = F.relu(conv(x))  # "b f (t - w + 1)": a window per start
            starts = torch.arange(response.shape[2], device=ids.device)
            past_end = starts[None, :] >= lengths[:, None]  # "b s"
            maps.append(response.masked_fill(past_end[:, None, :], -torch.inf))
        return maps

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """ "b t" token ids → "b (widths filters)": each filter's strongest response."""
        return torch.cat([m.amax(2) for m in self.filter_maps(ids)], dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(ids)))
