"""A captioner in one file: an image's grid of features "b cells d" + caption ids "b t" → logits.

Show, Attend and Tell (Xu et al. 2015) with a transformer for the recurrent network: the text side
is our GPT's decoder — token and position embeddings, causal self-attention with a KV cache, a
GELU MLP, pre-norm residual blocks (`deepscape.models.gpt`'s own pieces) — and every block gains
one step between its self-attention and its MLP: cross-attention, where each word's query looks
over the image's cells (a frozen encoder's 7×7 grid, say), so the next word can be read off the
part of the picture it is about. The image is encoded once (`encode`); decoding only appends
words.

`ImageConditioned` makes a captioner and a batch of images a `deepscape.generate.CausalLM`: its
cache carries the image memory beside the KV cache and selects both together, so greedy
decoding and beam search are `generate` and `beam_search` themselves, not another loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from deepscape.models.gpt import MLP, CausalSelfAttention, GPTConfig, KVCache, norm


@dataclass(kw_only=True)
class CaptionerConfig(GPTConfig):
    """GPT's text decoder (its `block_size` is the longest caption, in tokens) and the image's
    grid: `cells` positions of `feature_dim` channels each."""

    feature_dim: int = 1280
    cells: int = 49


class CrossAttention(nn.Module):
    """Multi-head attention "b t c" × memory "b m c" → "b t c": queries from the text, keys and
    values from the image, no mask (every word may look at every cell). Written out, so the
    weights — where each word looked — can be drawn."""

    def __init__(self, *, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.n_head = n_head
        self.q = nn.Linear(n_embd, n_embd, bias=bias)
        self.kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def weights(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """softmax(QKᵀ/√d) "b h t m" and the values "b h m d"."""
        q = rearrange(self.q(x), "b t (h d) -> b h t d", h=self.n_head)
        k, v = rearrange(self.kv(memory), "b m (two h d) -> two b h m d", two=2, h=self.n_head)
        return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1), v

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        weights, v = self.weights(x, memory)
        y = rearrange(self.attn_dropout(weights) @ v, "b h t d -> b t (h d)")
        return self.resid_dropout(self.c_proj(y))


class CaptionBlock(nn.Module):
    """x + self-attention(norm(x)), x + cross-attention(norm(x), image), x + MLP(norm(x))."""

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(
            n_embd=config.n_embd, n_head=config.n_head, bias=config.bias,
            dropout=config.dropout, attention=config.attention,
        )  # fmt: skip
        self.ln_2 = norm(config)
        self.cross = CrossAttention(
            n_embd=config.n_embd, n_head=config.n_head, bias=config.bias, dropout=config.dropout
        )
        self.ln_3 = norm(config)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, memory: Tensor, *, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache=cache, layer=layer)
        x = x + self.cross(self.ln_2(x), memory)
        return x + self.mlp(self.ln_3(x))


class Captioner(nn.Module):
    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.config = config
        # the image side: each cell's features normalised, projected to the text's width, and
        # told where in the grid it is (a learned embedding per cell)
        self.memory_norm = nn.LayerNorm(config.feature_dim)
        self.memory_in = nn.Linear(config.feature_dim, config.n_embd)
        self.cell_embedding = nn.Embedding(config.cells, config.n_embd)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CaptionBlock(config) for _ in range(config.n_layer))
        self.ln_f = norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2's
        for module in self.modules():  # GPT-2's initialisation
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def encode(self, features: Tensor) -> Tensor:
        """The image memory "b cells c" of an encoder's grid features "b cells feature_dim"."""
        cells = torch.arange(features.shape[1], device=features.device)
        memory = self.memory_in(self.memory_norm(features.float())) + self.cell_embedding(cells)
        return self.drop(memory)

    def new_cache(self, max_length: int | None = None) -> KVCache:
        return KVCache(n_layer=self.config.n_layer, max_length=max_length or self.config.block_size)

    def decode(
        self,
        ids: Tensor,
        memory: Tensor,
        *,
        cache: KVCache | None = None,
        logits_at: Tensor | None = None,
    ) -> Tensor:
        """Logits "b t vocab" of the next token at each position of ids "b t" (after the cache's
        positions), or only at positions `logits_at` "b k", given the image memory "b m c"."""
        start = cache.length if cache is not None else 0
        end = start + ids.shape[1]
        if end > self.config.block_size:
            raise ValueError(f"{end} positions, but block_size is {self.config.block_size}")
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(start, end, device=ids.device)))
        for layer, block in enumerate(self.blocks):
            x = block(x, memory, cache=cache, layer=layer)
        if cache is not None:
            cache.length = end
        x = self.ln_f(x)
        if logits_at is not None:
            x = x.take_along_dim(logits_at.unsqueeze(-1), dim=1)
        return self.lm_head(x)

    def forward(
        self, ids: Tensor, features: Tensor, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Logits "b t vocab" for caption ids "b t" of images with grid features "b cells d", and
        the cross-entropy with `targets` "b t" (-100: skipped) — teacher forcing."""
        logits = self.decode(ids, self.encode(features))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def cross_attention_maps(self, ids: Tensor, features: Tensor) -> Tensor:
        """Every layer's and head's cross-attention "layer head t cells" of one caption ids "t"
        over one image's features "cells d": row i is where token i looked to say the next."""
        ids, memory = ids.reshape(1, -1), self.encode(features.reshape(1, *features.shape[-2:]))
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        maps = []
        for block in self.blocks:
            x = x + block.attn(block.ln_1(x))
            maps.append(block.cross.weights(block.ln_2(x), memory)[0])
            x = x + block.cross(block.ln_2(x), memory)
            x = x + block.mlp(block.ln_3(x))
        return torch.cat(maps)


# -- a captioner and its images as a causal LM ---------------------------------------------------
class CaptionCache:
    """The text's KV cache and the image memory "b m c" of the same rows: beam search's `select`
    keeps each surviving beam's image with its words."""

    def __init__(self, kv: KVCache, memory: Tensor):
        self.kv, self.memory = kv, memory

    @property
    def length(self) -> int:
        return self.kv.length

    def select(self, rows: Tensor) -> CaptionCache:
        return CaptionCache(self.kv.select(rows), self.memory[rows])


class ImageConditioned:
    """A `Captioner` and images' grid features "b cells d" as a `CausalLM` of their captions:
    prompt row i (the start token) is continued with image i's caption."""

    def __init__(self, model: Captioner, features: Tensor):
        self.model, self.features = model, features

    def __call__(self, ids: Tensor, cache: CaptionCache, at: Tensor | None = None) -> Tensor:
        return self.model.decode(ids, cache.memory, cache=cache.kv, logits_at=at)

    def new_cache(self, max_length: int) -> CaptionCache:
        features = self.features.to(next(self.model.parameters()).device)
        return CaptionCache(self.model.new_cache(max_length), self.model.encode(features))
