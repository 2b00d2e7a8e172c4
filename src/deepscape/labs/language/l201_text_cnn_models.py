"""language/201/text-cnn's word models, and the receptive field of every contestant, computed and
measured.

- `DilatedCNN`: word vectors → residual blocks of one 1-D convolution each, dilated 1, 2, 4, …:
  the field doubles with every block while the cost grows by one block.
- `TextTransformer`: word vectors → encoder blocks of the core's GPT (`models.gpt.Block`, not
  causal, RoPE positions) with a padding mask → the mean over the words.

The character CNN is the core's (`models.text.CharCNN`), Kim's shallow CNN language/101's. Every
contestant has `.embedding` (its input table) and `positions(model, ids)` gives its features at
every position before the pooling, which is where a receptive field is defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from deepscape.models.gpt import GPT, Block, GPTConfig, norm, rope_tables
from deepscape.models.text import PAD_ID, CharCNN, SentenceCNN, receptive_field


def inside(ids: Tensor) -> Tensor:
    """ "b t" bool: True at the words of each sentence, False on its padding."""
    return ids != PAD_ID


def word_table(embeddings: Tensor, *, frozen: bool) -> nn.Embedding:
    table = nn.Embedding(*embeddings.shape, padding_idx=PAD_ID)
    table.weight.data.copy_(embeddings)
    table.weight.requires_grad_(not frozen)
    return table


# -- the deeper word CNN with dilations -----------------------------------------------------------
class DilatedBlock(nn.Module):
    """x + conv_d(GELU(LayerNorm(x))): a pre-norm residual block whose convolution reads every
    d-th word, so that stacked with d = 1, 2, 4, … the field doubles each block."""

    def __init__(self, width: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel, dilation=dilation,
                              padding=dilation * (kernel - 1) // 2)  # fmt: skip

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:  # "b t c", "b t"
        y = self.conv(F.gelu(self.norm(x)).transpose(1, 2)).transpose(1, 2)
        return (x + y) * keep[..., None]  # zero past the end, as the padding is


class DilatedCNN(nn.Module):
    """Word vectors → a linear map to `width` channels → a `DilatedBlock` per dilation →
    LayerNorm → each channel's maximum over the words → dropout → classes. (Dropout only on the
    pooled features, as Kim's: on a CPU, drawing a mask for every block cost a tenth of a step.)"""

    def __init__(
        self,
        *,
        embeddings: Tensor,
        frozen: bool,
        num_classes: int,
        width: int = 128,
        kernel: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        dropout: float = 0.3,
    ):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel={kernel}: give an odd width (a word is its window's centre)")
        self.kernel, self.dilations = kernel, tuple(dilations)
        self.embedding = word_table(embeddings, frozen=frozen)
        self.project = nn.Linear(embeddings.shape[1], width)
        self.blocks = nn.ModuleList(DilatedBlock(width, kernel, d) for d in dilations)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    @property
    def receptive_field(self) -> int:
        """Words one position of the last block sees: 1 + (kernel − 1) × Σ dilations."""
        return receptive_field([(self.kernel, d, 1) for d in self.dilations])

    def positions(self, ids: Tensor) -> Tensor:
        """ "b t" word ids → features "b t width" (−inf past the end, out of the maximum)."""
        keep = inside(ids)
        x = self.project(self.embedding(ids)) * keep[..., None]
        for block in self.blocks:
            x = block(x, keep)
        return self.norm(x).masked_fill(~keep[..., None], -torch.inf)

    def forward(self, ids: Tensor) -> Tensor:
        features = self.positions(ids).amax(1)
        return self.classifier(self.dropout(features))


# -- the small transformer encoder -----------------------------------------------------------------
class EncoderBlock(Block):
    """The GPT's block (`models.gpt.Block`, built with causal=False) whose attention also skips
    the padding: a word attends to every word of its sentence and to nothing past its end."""

    def forward(self, x: Tensor, *, rope: tuple[Tensor, Tensor], keep: Tensor) -> Tensor:
        attention = self.attn
        q, k, v = attention.heads(self.ln_1(x), rope)
        # "b 1 1 t": for every head and query, the keys inside the sentence
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                           enable_gqa=True)  # fmt: skip
        x = x + attention.resid_dropout(attention.c_proj(rearrange(y, "b h t d -> b t (h d)")))
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """Word vectors → a linear map to `n_embd` → `n_layer` encoder blocks (llama style: RMSNorm,
    SwiGLU, rotary positions) → RMSNorm → the mean over the words → dropout → classes (none
    inside the blocks, as the GPT of language/201/transformers by default)."""

    def __init__(
        self,
        *,
        embeddings: Tensor,
        frozen: bool,
        num_classes: int,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.1,
        max_words: int = 1024,
    ):
        super().__init__()
        self.config = GPTConfig(style="llama", causal=False, n_layer=n_layer, n_head=n_head,
                                n_embd=n_embd, bias=False, vocab_size=1,
                                block_size=max_words)  # fmt: skip
        self.embedding = word_table(embeddings, frozen=frozen)
        self.project = nn.Linear(embeddings.shape[1], n_embd)
        self.blocks = nn.ModuleList(EncoderBlock(self.config) for _ in range(n_layer))
        self.blocks.apply(GPT._init_weights)  # GPT-2's initialisation, as the GPT gets it
        self.norm = norm(self.config)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_embd, num_classes)
        cos, sin = rope_tables(n_embd // n_head, max_words, self.config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def positions(self, ids: Tensor) -> Tensor:
        """ "b t" word ids → features "b t n_embd" (zero past the end, out of the mean)."""
        t = ids.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"a sentence of {t} words; this encoder reads up to "
                             f"{self.config.block_size}")  # fmt: skip
        keep, rope = inside(ids), (self.rope_cos[:t], self.rope_sin[:t])
        x = self.project(self.embedding(ids))
        for block in self.blocks:
            x = block(x, rope=rope, keep=keep)
        return self.norm(x) * keep[..., None]

    def forward(self, ids: Tensor) -> Tensor:
        words = inside(ids).sum(1, keepdim=True).clamp(min=1)
        return self.classifier(self.dropout(self.positions(ids).sum(1) / words))


# -- what every contestant sees --------------------------------------------------------------------
Contestant = CharCNN | DilatedCNN | TextTransformer | SentenceCNN


def positions(model: Contestant, ids: Tensor) -> Tensor:
    """The model's features at every position before its pooling, "b positions features". Kim's
    CNN: the responses of its widest filters at every window (−inf past the end)."""
    if isinstance(model, SentenceCNN):
        widest = model.widths.index(max(model.widths))
        return model.filter_maps(ids)[widest].transpose(1, 2)
    return model.positions(ids)


def field_of(model: Contestant) -> int | None:
    """The receptive field, computed: inputs (characters or words) that one position of the last
    layer sees; None for attention, which sees the whole sentence in one layer."""
    if isinstance(model, TextTransformer):
        return None
    if isinstance(model, SentenceCNN):
        return max(model.widths)
    return model.receptive_field


def measured_field(model: Contestant, ids: Tensor) -> int:
    """The receptive field, measured: the span of input positions that get a gradient from the
    middle position of `positions` (ids "b t", every position a real input). A max-pooling or a
    ReLU passes the gradient of only some inputs of each example, so the span is the union over
    the batch of random inputs."""
    captured: list[Tensor] = []

    def leaf(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        captured.append(output.detach().requires_grad_())  # also for a frozen table
        return captured[-1]

    was_training = model.training
    hook = model.embedding.register_forward_hook(leaf)
    try:
        features = positions(model.eval(), ids)
        features[:, features.shape[1] // 2].sum().backward()
    finally:
        hook.remove()
        model.train(was_training)
    reached = (captured[0].grad.abs().sum((0, 2)) > 0).nonzero()
    return int(reached.max() - reached.min() + 1)
