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


# -- receptive fields ------------------------------------------------------------------------------
def receptive_field(layers: list[tuple[int, int, int]]) -> int:
    """How many consecutive inputs one output position of a stack of 1-D layers sees, from each
    layer's (kernel width, dilation, stride), first layer first. A layer widens the field by
    (kernel − 1) × dilation steps of its input, and a step of its input is the product of the
    strides below it: r = 1 + Σ (k_l − 1) · d_l · Π_{i<l} s_i."""
    field, step = 1, 1
    for kernel, dilation, stride in layers:
        field += (kernel - 1) * dilation * step
        step *= stride
    return field


# -- the character-level CNN --------------------------------------------------------------------
# Zhang, Zhao & LeCun (2015)'s alphabet, lower-case, with the space given a symbol of its own
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/\\|_@#$%^&*~`+=<>()[]{} "
UNKNOWN_CHAR = 1  # id of a character outside the alphabet; 0 pads, the alphabet starts at 2
CHAR_IDS = {c: i for i, c in enumerate(ALPHABET, start=2)}


def char_ids(texts: list[str], *, max_chars: int = 0) -> torch.Tensor:
    """Lower-cased characters of `texts` as ids "b t", padded with 0 to the longest (each text
    cut at `max_chars` when > 0). An empty text is one pad."""
    texts = [t.lower()[:max_chars] if max_chars > 0 else t.lower() for t in texts]
    out = torch.zeros(len(texts), max((len(t) for t in texts), default=0) or 1, dtype=torch.long)
    for row, text in enumerate(texts):
        out[row, : len(text)] = torch.tensor([CHAR_IDS.get(c, UNKNOWN_CHAR) for c in text])
    return out


class CharCNN(nn.Module):
    """Zhang et al. (2015)'s character CNN, scaled down for a CPU: characters one-hot → six 1-D
    convolutions of widths 7, 7, 3, 3, 3, 3 (ReLU), max-pooling by 3 after the first, second and
    sixth → each channel's maximum over the text → two fully connected layers with dropout →
    classes. The paper had 256 or 1,024 channels, layers of 1,024 or 2,048 units, and flattened a
    fixed frame of 1,014 characters; `width` and `hidden` choose the sizes here, and the global
    maximum takes a sentence of any length.

    The paper drew the weights from N(0, 0.05²); here He's initialisation. PyTorch's default
    draws them a third as large, and the signal fades through six layers: measured on 200 MR
    sentences (batches of 20, dropout 0.1), the default still sat near chance after 100 steps,
    where He's fitted 99 % of the last 20 batches.

    The one-hot encoding is a frozen embedding table (an identity, with a zero row for [PAD]).
    Positions past a text's end are zeroed after every layer, so each convolution sees there what
    its own zero padding shows at the edge: a text gets the same features however much padding
    its batch has."""

    LAYERS = ((7, 3), (7, 3), (3, 1), (3, 1), (3, 1), (3, 3))  # (kernel width, pooling after)

    def __init__(
        self, *, num_classes: int, width: int = 128, hidden: int = 256, dropout: float = 0.5
    ):
        super().__init__()
        symbols = len(ALPHABET) + 1  # and the unknown character; [PAD] is no symbol
        self.embedding = nn.Embedding(symbols + 1, symbols, padding_idx=PAD_ID)
        self.embedding.weight.data = torch.cat([torch.zeros(1, symbols), torch.eye(symbols)])
        self.embedding.weight.requires_grad_(False)
        channels = [symbols] + [width] * len(self.LAYERS)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], kernel, padding=kernel // 2)
            for i, (kernel, _) in enumerate(self.LAYERS)
        )
        for conv in self.convs:  # He et al.'s: the signal keeps its size through six ReLUs
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    @property
    def receptive_field(self) -> int:
        """Characters one position of the last layer sees: 123 (a pooling by 3 is a layer of
        width 3 and stride 3)."""
        layers = []
        for kernel, pool in self.LAYERS:
            layers.append((kernel, 1, 1))
            if pool > 1:
                layers.append((pool, 1, pool))
        return receptive_field(layers)

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """ "b t" character ids → the last layer's features "b t/27 width", zero past the end."""
        lengths = (ids != PAD_ID).sum(1)
        x = self.embedding(ids).transpose(1, 2)  # "b t symbols -> b symbols t"
        for conv, (_, pool) in zip(self.convs, self.LAYERS, strict=True):
            inside = torch.arange(x.shape[2], device=ids.device)[None, :] < lengths[:, None]
            x = F.relu(conv(x)) * inside[:, None, :]
            if pool > 1:  # a window across the end sees zeros there, which never win a max of
                x = F.max_pool1d(x, pool, ceil_mode=True)  # ReLUs; one past it is all zeros
                lengths = torch.div(lengths, pool, rounding_mode="floor") + (lengths % pool > 0)
        return x.transpose(1, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # after ReLU every feature is ≥ 0, so the zeros past the end never win the maximum
        return self.head(self.positions(ids).amax(1))
