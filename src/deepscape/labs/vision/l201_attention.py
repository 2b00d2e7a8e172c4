"""vision/201/attention — self-attention, a vision transformer, and what a CNN knows for free.

Self-attention lets every token look at every other: softmax(QKᵀ/√d)·V, queries matched against
keys, values averaged by the match, in several heads at once. The core writes it out
(models/gpt.py's `CausalSelfAttention`, here unmasked), and every run first checks it, in
float64, against PyTorch's fused `scaled_dot_product_attention` and against `nn.MultiheadAttention`
holding the same weights.

The vision transformer (models/vit.py) is built on that block: the image cut into patches, each
patch mapped to a vector by one linear layer (by default here, a few convolutions: below), a
learned class token in front, learned position embeddings added, pre-norm transformer blocks,
and the class token's last vector classified. By default the attention is the written-out one:
for 17 tokens of 32 numbers per head, two matrix products and a softmax ran a training step
faster than the fused kernel here (711 vs 1,224 ms at batch 128, measured while other jobs
shared the 2 cores: the ratio is to be re-measured).

Where does it look? Attention rollout (Abnar & Zuidema 2020) follows attention through the
layers: each layer's head-averaged weights, mixed half-and-half with the identity for the
residual path, multiplied from the first layer to the last; the class token's row says how much
each patch flowed into the decision. It is drawn beside Grad-CAM of a CNN of about the same size
(vision/101/objects10's), trained on the same images in a run of this lab (method=cnn).

What the CNN knows for free: a convolution assumes that neighbouring pixels belong together and
that a pattern means the same wherever it is; a ViT has to learn both from the data.
method=sizes trains both on 1,000 … all training images at the same budget of steps and draws
test accuracy against the number of images: the gap shows where the CNN's prior pays.

The default is the ViT on Fashion-MNIST: 4 blocks of 128 numbers a token over 16 tokens, made
by a convolutional stem (`stem=convolutions`, models/vit.py: three 3×3 convolutions of stride 2,
Xiao et al. 2021), 20 epochs. The stem learns faster per epoch than the paper's one linear map a
7×7 patch (`stem=patches`), for 22 % more FLOPs: it hands the transformer local features, a
CNN's prior given back at the input only. On a 2-core AMD EPYC with AVX512-BF16
(docs/benchmarks.md) the default reached 91.7 % test in 6.6 minutes of training, where patches
reached 88.7 % in 5.7 at the same epochs; earlier, on an AVX2-only EPYC, patches had reached
88.1 % in 16 epochs and 90.2 % in 32, and the other recipes tried there did no better (4×4
patches with 6 blocks of 64, smaller batches, the peak LR from 1e-3 to 5e-3). bf16 matters:
on the AVX512-BF16 machine an epoch took 32.5 s in fp32 against 21.0 in bf16 (precision=auto
picks it), so 20 epochs would take about 11 minutes in fp32, and about 17 on the AVX2 one.
On CIFAR-10 (`dataset=cifar10 patch_size=4`: 64 tokens) the stem reached 77.15 % in 15 epochs,
12.2 minutes of training, where patches had reached 67.97 % in 11 epochs (15.2 minutes, AVX2).
method=sizes keeps the patches (stem=auto): there the ViT's missing prior is the lesson. At 800
steps it kept the ViT at 79 % on Fashion-MNIST from 1,000 to 55,000 images, while the CNN went
from 85.7 to 90.8 %; on CIFAR-10 the CNN's lead grew from 13.5 points at 1,000 images (ViT
41.2 %, CNN 54.7 %) to 22.2 from 16,000 on (55.9 against 78.1 % with all 45,000).

    deepscape run vision/201/attention                              # the ViT on Fashion-MNIST
    deepscape run vision/201/attention method=sizes                 # ViT vs CNN, 1k … 55k images
    deepscape run vision/201/attention dataset=cifar10 data_dir=cifar10-images patch_size=4 \
        epochs=15 crop_padding=4                                    # 77 % in 12 minutes
    deepscape run vision/201/attention stem=patches                 # the paper's patch map
    deepscape run vision/201/attention method=cnn                   # the CNN beside it, alone
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from deepscape import figures
from deepscape.config import TrainConfig, option
from deepscape.costs import forward_flops, parameters
from deepscape.data import Splits, get_dataset
from deepscape.figures import WRONG
from deepscape.inside import gradient_maps, load_trained
from deepscape.inside_figures import HEAT, show_image
from deepscape.labs.vision.l101_objects10 import photo_task
from deepscape.learning_curve import curve_figure, curve_metrics, parse_sizes, run_points
from deepscape.models.gpt import CausalSelfAttention, attention_weights
from deepscape.models.vision import Standardize, build_model
from deepscape.models.vit import ViT, ViTConfig
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import classify
from deepscape.train import Trainer

ATTENTION = "vision/201/attention"
ARMS = ("vit", "cnn")


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["fashion-mnist", "cifar10"] = option("fashion-mnist", "which 10 objects")
    data_dir: str | None = option(None, "local copy: IDX files, or train/<class>/ test/<class>/")
    labelled: int = option(0, "training images an arm learns from (stratified; 0: all)")
    crop_padding: int = option(2, "pixels a random crop may shift an image each way (0: none)")
    flip_average: bool = option(True, "average the logits of each test image and its mirror")
    # what to run
    method: Literal["vit", "cnn", "sizes"] = option(
        "vit", "vit or cnn: train one; sizes: both at every number of images in `sizes`"
    )
    sizes: str = option("1000,4000,16000,all", "training images along the curve (method=sizes)")
    steps: int = option(800, "optimisation steps of every arm along the curve (method=sizes)")
    # the ViT
    patch_size: int = option(7, "pixels per side of a patch (must divide the image's side)")
    stem: Literal["auto", "patches", "convolutions"] = option(
        "auto",
        "tokens from one linear map a patch, or from 3×3 convolutions of stride 2 "
        "(auto: convolutions, but patches in method=sizes)",
    )
    dim: int = option(128, "numbers per token")
    vit_depth: int = option(4, "transformer blocks")
    heads: int = option(4, "attention heads per block")
    mlp_ratio: float = option(2.0, "the MLP's hidden width, in multiples of dim")
    attention: Literal["written", "sdpa"] = option(
        "written", "softmax(QKᵀ/√d)·V as matrix products, or PyTorch's fused kernel"
    )
    # the CNN: objects10's, sized to about the ViT's parameters
    cnn_width: int = option(40, "channels of the CNN's first stage (each of 3 stages doubles)")
    cnn_epochs: int = option(1, "epochs of the CNN whose Grad-CAM is drawn beside the rollout")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(20, "passes over the training images (~7 minutes on 2 cores with bf16)")
    batch_size: int = option(128, "examples per optimisation step")
    lr: float = option(2e-3, "peak learning rate (AdamW; the CNN: SGD at 0.1)")
    weight_decay: float = option(0.05, "decoupled weight decay (weight matrices only)")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "onecycle", "learning-rate schedule over the whole run"
    )
    warmup: float = option(0.1, "fraction of steps spent warming the LR up from ~0")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware has it (AVX512-BF16 or AMX CPUs, recent GPUs), else fp32"
    )
    figures: bool = option(True, "draw the figures (a sweep of many runs may skip them)")


def run(config: Config, run: Run) -> dict[str, Any]:
    if config.method == "sizes":
        return inductive_bias(config, run)
    return one_arm(config, run)


# -- 1. self-attention, checked against PyTorch's ------------------------------------------------
def attention_check(*, dim: int = 64, heads: int = 4, tokens: int = 17) -> dict[str, float]:
    """The largest differences, in float64 on random inputs, between the core's attention written
    out (softmax(QKᵀ/√d)·V per head) and PyTorch's fused kernel on the same queries, keys and
    values, and between the whole block and `nn.MultiheadAttention` given the same weights."""
    torch.manual_seed(0)
    x = torch.randn(2, tokens, dim, dtype=torch.float64)
    ours = CausalSelfAttention(n_embd=dim, n_head=heads, causal=False, attention="written")
    ours = ours.double().eval()
    q, k, v = ours.heads(x)
    written = attention_weights(q, k, mask=None) @ v
    fused = F.scaled_dot_product_attention(q, k, v)
    # nn.MultiheadAttention keeps queries, keys and values in one matrix too, in the same order
    theirs = nn.MultiheadAttention(dim, heads, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(ours.c_attn.weight)
        theirs.in_proj_bias.copy_(ours.c_attn.bias)
        theirs.out_proj.weight.copy_(ours.c_proj.weight)
        theirs.out_proj.bias.copy_(ours.c_proj.bias)
        module, _ = theirs(x, x, x, need_weights=False)
        return {
            "vs_sdpa": float((written - fused).abs().max()),
            "vs_multihead_attention": float((ours(x) - module).abs().max()),
        }


# -- 2. one arm: the ViT or the CNN, trained ------------------------------------------------------
def labelled_splits(config: Config) -> Splits:
    data = get_dataset(config.dataset, config.data_dir)
    return dataclasses.replace(data, train=data.train.stratified(config.labelled))


def stem_for(config: Config) -> Literal["patches", "convolutions"]:
    """The ViT's stem: as given, or (auto) convolutions — they learn faster — except where the
    ViT is weighed against the CNN (method=sizes): there the lesson is the prior patches lack."""
    if config.stem != "auto":
        return config.stem
    return "patches" if config.method == "sizes" else "convolutions"


def model_for(config: Config, data: Splits) -> nn.Module:
    """The arm's model behind the same per-channel standardisation (serve and inspect rebuild a
    run's model with this). A patch size that does not divide the image is a ConfigError."""
    images = data.train.inputs
    if config.method == "cnn":
        return build_model(
            "resnet",
            images=images,
            num_classes=len(data.classes),
            width=config.cnn_width,
            depth=3,
            flip_average=config.flip_average,
        )
    channels, height, _ = images.shape[1:]
    vit = ViT(
        ViTConfig(
            image_size=height,
            channels=channels,
            patch_size=config.patch_size,
            num_classes=len(data.classes),
            dim=config.dim,
            depth=config.vit_depth,
            heads=config.heads,
            mlp_ratio=config.mlp_ratio,
            attention=config.attention,
            stem=stem_for(config),
            flip_average=config.flip_average,
        )
    )
    return nn.Sequential(Standardize.of(images), vit)


def one_arm(config: Config, run: Run) -> dict[str, Any]:
    data = labelled_splits(config)
    model = model_for(config, data)  # a bad patch size fails here, before anything is trained
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    if config.method == "vit":
        run.update_summary(attention_check=attention_check())
    net = model[1]  # the ViT or the CNN, behind the standardisation
    net.flip_average = False  # the cost of one pass (the mirror doubles it at test time)
    costs = {
        "parameters": parameters(model),
        "forward_flops": forward_flops(model, data.test.inputs[:1]),
    }
    net.flip_average = config.flip_average
    run.update_summary(costs=costs)

    recipe = config
    if config.method == "cnn":  # objects10's recipe: SGD with Nesterov momentum
        lr = 0.2 * config.batch_size / 256
        recipe = dataclasses.replace(config, optimizer="sgd", lr=lr, weight_decay=5e-4)
    crops = "crop-flip" if config.crop_padding else "none"
    task = photo_task(len(data.classes), augment=crops, padding=config.crop_padding,
                      label_smoothing=config.label_smoothing)  # fmt: skip
    trainer = Trainer(recipe, run, task=task)
    run.update_summary(precision=trainer.precision)
    model = trainer.fit(model, data.train, data.validation)
    test = classify(trainer, model, data.test)

    if config.figures:
        title = f"{config.method} on {data.name}"
        figures.training_curves(run, title=f"{title}: training curves")
        figures.confusion_matrix(run, test.targets, test.predictions, data.classes)
    if config.method == "vit" and config.figures and config.cnn_epochs > 0:
        cnn = cnn_beside(config, run)
        where_they_look(run, model.eval(), cnn, data, count=8)

    evaluations = run.evaluations()
    return {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": evaluations[-1]["val_accuracy"],
        "train_seconds": evaluations[-1]["seconds"],
        **costs,
    }


# -- 3. where they look: attention rollout beside Grad-CAM ----------------------------------------
def attention_rollout(maps: Tensor, *, residual: float = 0.5) -> Tensor:
    """How attention flows from the input tokens to each token of the last layer, "b t t", from
    every layer's and head's weights "b layer head t t" (Abnar & Zuidema 2020). The heads are
    averaged; the residual connection carries a token's own vector past the attention, so each
    layer mixes `residual` of the identity in; the layers compose by matrix products. Each row
    is a distribution over the input tokens: it sums to 1."""
    eye = torch.eye(maps.shape[-1], dtype=maps.dtype, device=maps.device)
    layers = residual * eye + (1 - residual) * maps.mean(dim=2)  # "b layer t t"
    rollout = eye.expand_as(layers[:, 0])
    for layer in layers.unbind(dim=1):  # the first layer first: it sees the input
        rollout = layer @ rollout
    return rollout


def rollout_maps(vit: ViT, images: Tensor) -> Tensor:
    """The class token's rollout over the patches, as heat maps the size of the images "b h w"."""
    rollout = attention_rollout(vit.attention_maps(images))
    grid = vit.config.grid
    patches = rearrange(rollout[:, 0, 1:], "b (gh gw) -> b 1 gh gw", gh=grid, gw=grid)
    return F.interpolate(patches, size=images.shape[-2:], mode="nearest")[:, 0]


def cnn_beside(config: Config, run: Run) -> nn.Module:
    """The CNN for the comparison: a run of this lab (method=cnn) on the same images, recorded
    as a stage of this one (a resumed run reuses it), its trained model loaded back."""
    own = {"method", "epochs", "figures", "seed", "sizes", "steps"}
    items = [*inherited(config, own), "method=cnn", f"epochs={config.cnn_epochs}", "figures=false"]
    (cnn_run,) = stage(run, "cnn", ATTENTION, Config, items)
    cnn = load_trained(cnn_run).model
    cnn[1].flip_average = False  # Grad-CAM follows one pass through the last convolution
    run.update_summary(cnn={"run": cnn_run.id, **cnn_run.summary.get("metrics", {})})
    return cnn


def where_they_look(run: Run, vit: nn.Module, cnn: nn.Module, data: Splits, *, count: int) -> None:
    """The first `count` test images; beside each, the ViT's attention rollout and the CNN's
    Grad-CAM for the class each one predicts. `vit`: the standardisation, then the ViT."""
    images, targets = data.test.inputs[:count], data.test.targets[:count]
    with torch.no_grad():
        vit_probabilities, cnn_probabilities = vit(images).softmax(1), cnn(images).softmax(1)
    standardize, transformer = vit
    columns = {
        "ViT: attention rollout": (
            rollout_maps(transformer, standardize(images)),
            vit_probabilities,
        ),
        "CNN: Grad-CAM": (
            gradient_maps(cnn, images, cnn_probabilities.argmax(1), "gradcam"),
            cnn_probabilities,
        ),
    }
    fig, axes = plt.subplots(count, 3, figsize=(7.5, 2.3 * count + 0.8), squeeze=False)
    for row in range(count):
        target = int(targets[row])
        show_image(axes[row, 0], images[row], f"true {data.classes[target]}")
        for col, (name, (maps, probabilities)) in enumerate(columns.items(), start=1):
            ax = axes[row, col]
            low, high = maps[row].min(), maps[row].max()
            heat = (maps[row] - low) / (high - low).clamp_min(1e-12)
            ax.imshow(images[row].mean(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.imshow(heat.numpy(), cmap=HEAT, vmin=0, vmax=1, alpha=0.7)
            predicted = int(probabilities[row].argmax())
            style = {} if predicted == target else {"color": WRONG, "fontweight": "bold"}
            ax.set_title(f"{name}\npredicted {data.classes[predicted]} "
                         f"({probabilities[row].max():.0%})", fontsize=8, **style)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "Where they look: the ViT's class token followed back through its attention layers,\n"
        "beside the CNN's Grad-CAM (bright: counts most; each map scaled from its least to most)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the panels' own
    figures.save(fig, run.figure_path("where_they_look"), tight=False)


# -- 4. inductive bias, measured: ViT against CNN over the number of training images -------------
def inductive_bias(config: Config, run: Run) -> dict[str, Any]:
    """Both arms at every size in `sizes`, each a run of this lab with the same `steps` (so a
    small set is seen many times over), and the curve of test accuracy against images."""
    data = get_dataset(config.dataset, config.data_dir)
    sizes = parse_sizes(config.sizes, len(data.train), unit="images")
    config = dataclasses.replace(config, stem=stem_for(config))  # the arms' runs: method=vit
    points = dataclasses.replace(
        config, max_steps=config.steps, eval_every=max(1, config.steps // 4), figures=False
    )
    curve = run_points(run, ATTENTION, points, sizes, methods=ARMS)
    vit, cnn = (model_for(dataclasses.replace(config, method=arm), data) for arm in ARMS)
    p = config.patch_size
    stem = f"patches {p}×{p}" if config.stem == "patches" else "a convolutional stem"
    labels = {
        "vit": f"ViT, {stem} ({parameters(vit):,} parameters)",
        "cnn": f"CNN, objects10's ({parameters(cnn):,} parameters)",
    }
    title = f"Inductive bias on {data.name}: ViT vs CNN, {config.steps} steps each"
    curve_figure(run, curve, labels, title=title, unit="images", name="inductive_bias")
    metrics: dict[str, Any] = curve_metrics(curve)
    for n in sorted(set(curve["vit"]) & set(curve["cnn"])):
        metrics[f"cnn_lead_{n}"] = curve["cnn"][n] - curve["vit"][n]
    return metrics
