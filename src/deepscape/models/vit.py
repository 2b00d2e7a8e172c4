"""ViT in one file: images "b c h w" → class logits "b classes" (Dosovitskiy et al. 2021).

    b c h w → cut into p×p patches, each mapped to `dim` numbers by one linear layer → b n dim
            → a learned class token in front, learned position embeddings added → b (1+n) dim
            → `depth` pre-norm transformer blocks: x + attention(norm(x)), x + MLP(norm(x))
            → norm → the class token's vector → linear → b classes

The patch embedding is a convolution whose kernel and stride are both the patch size: the same
linear map applied to every patch, patches that do not overlap. The blocks are models/gpt.py's
`Block`, unmasked (`causal=False`): every patch may look at every other from the first layer on,
which is exactly the prior a CNN does not have — a CNN sees a 3×3 neighbourhood and grows its
view layer by layer; a ViT must learn from data which patches belong together.

`stem="convolutions"` makes the same grid of tokens with a few 3×3 convolutions of stride 2
instead, each halving the image, batch-norm and ReLU between them (Xiao et al. 2021, "Early
convolutions help transformers see better"). The one-layer patch map is a large-kernel,
large-stride convolution that optimises poorly; the stem hands the transformer local features,
a CNN's prior at the input only, for a few percent more FLOPs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from deepscape.config import ConfigError
from deepscape.models.gpt import GPT, Block, GPTConfig, attention_weights
from deepscape.models.vision import ViewAveraged


@dataclass(kw_only=True)
class ViTConfig:
    image_size: int = 32  # square images, image_size × image_size pixels
    channels: int = 3
    patch_size: int = 4  # must divide image_size
    num_classes: int = 10
    dim: int = 192  # numbers per token
    depth: int = 6  # transformer blocks
    heads: int = 3
    mlp_ratio: float = 2.0  # the MLP's hidden width, in multiples of dim
    dropout: float = 0.0
    attention: Literal["sdpa", "written"] = "sdpa"
    stem: Literal["patches", "convolutions"] = "patches"  # how images become tokens
    flip_average: bool = False  # at test time, average the logits of each image and its mirror

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            valid = [p for p in range(1, self.image_size + 1) if self.image_size % p == 0]
            raise ConfigError(
                f"patch_size={self.patch_size} does not divide the {self.image_size}×"
                f"{self.image_size} images into whole patches; valid sizes: "
                + ", ".join(map(str, valid))
            )
        if (
            self.stem == "convolutions"
            and math.ceil(self.image_size / 2**self.halvings) != self.grid
        ):
            raise ConfigError(
                f"stem=convolutions halves the {self.image_size}-pixel side {self.halvings} "
                f"times, which does not make the {self.grid}×{self.grid} grid of "
                f"patch_size={self.patch_size}: give a patch size that is a power of two, or "
                "stem=patches"
            )
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} does not split into heads={self.heads} heads")

    @property
    def grid(self) -> int:
        """Patches along each side of the image."""
        return self.image_size // self.patch_size

    @property
    def halvings(self) -> int:
        """Stride-2 convolutions of the convolutional stem: enough to shrink a patch to a pixel."""
        return math.ceil(math.log2(self.patch_size))

    def block_config(self) -> GPTConfig:
        """The GPT block's config for this encoder: unmasked, learned positions added outside."""
        return GPTConfig(
            n_embd=self.dim,
            n_head=self.heads,
            n_layer=self.depth,
            intermediate_size=round(self.mlp_ratio * self.dim),
            dropout=self.dropout,
            attention=self.attention,
            causal=False,
            style="gpt2",
        )


class ViT(ViewAveraged):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.flip_average, self.shift_average = config.flip_average, False
        c, p, dim = config.channels, config.patch_size, config.dim
        if config.stem == "patches":
            self.patch_embed = nn.Conv2d(c, dim, kernel_size=p, stride=p)
        else:
            self.patch_embed = convolutional_stem(c, dim, config.halvings)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, dim))
        self.blocks = nn.ModuleList(Block(config.block_config()) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.num_classes)
        # GPT-2's initialisation (timm's ViT uses the same scale): N(0, 0.02) weights, zero biases
        self.apply(GPT._init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if config.stem == "patches":  # a linear layer over a flattened patch (the stem: PyTorch's)
            nn.init.trunc_normal_(self.patch_embed.weight, std=1 / math.sqrt(c * p * p))
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # each residual branch adds variance (GPT-2)
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.depth))

    def tokens(self, images: Tensor) -> Tensor:
        """The encoder's input "b (1 + n) dim": the class token, then one token per patch in
        reading order, each plus its position's embedding."""
        patches = rearrange(self.patch_embed(images), "b dim gh gw -> b (gh gw) dim")
        cls = repeat(self.cls_token, "1 1 dim -> b 1 dim", b=len(images))
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def logits(self, images: Tensor) -> Tensor:  # "b c h w -> b classes"
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])  # the class token has gathered what it needs

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> Tensor:
        """Every layer's and head's attention weights "b layer head t t", written out whichever
        attention the model computes with: row i is how token i (0: the class token) spreads
        its attention over the tokens."""
        x, maps = self.tokens(images), []
        for block in self.blocks:
            q, k, _ = block.attn.heads(block.ln_1(x))
            maps.append(attention_weights(q, k, mask=None))
            x = block(x)
        return torch.stack(maps, dim=1)


def convolutional_stem(channels: int, dim: int, halvings: int) -> nn.Sequential:
    """ "b c h w -> b dim h/2^halvings w/2^halvings": 3×3 convolutions of stride 2, their widths
    doubling up to `dim`, batch-norm and ReLU between them; the last one maps to the tokens, as
    the patch embedding does (a pixel-wise one when there is nothing to halve)."""
    if halvings == 0:
        return nn.Sequential(nn.Conv2d(channels, dim, kernel_size=1))
    widths = [channels, *(dim // 2 ** (halvings - 1 - i) for i in range(halvings))]
    layers: list[nn.Module] = []
    for i, (into, out) in enumerate(itertools.pairwise(widths)):
        last = i == halvings - 1
        layers.append(nn.Conv2d(into, out, kernel_size=3, stride=2, padding=1, bias=last))
        if not last:
            layers += [nn.BatchNorm2d(out), nn.ReLU()]
    return nn.Sequential(*layers)
