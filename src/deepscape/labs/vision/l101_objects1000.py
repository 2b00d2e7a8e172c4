"""vision/101/objects1000 — the third rung: 1000 kinds of objects, with a pretrained model.

The lesson names what is in real photos with a network trained by others on 1.28 million
photos. A pretrained model is an architecture (timm's zoo) and weights learnt elsewhere (the
hub); its preprocessing travels with it: the shorter side resized, the centre cropped, the
pixels normalised with the model's own mean and std (`PretrainedClassifier`). ImageNet-1k names
its 1000 classes by WordNet ids (n02123159 = tiger cat). It is measured as ImageNet does, by
top-1 and top-5 accuracy; and a softmax always names one of its classes, even for a photo of
none of them (the astronaut: there is no "astronaut" among the 1000). The most confident
mistakes say more than the accuracy: some are label errors, some are two right answers for one
photo. Last, models are weighed by accuracy, parameters and CPU latency, the trade-off every
deployment makes.

EfficientNet-Lite0 is offline (timm publishes 74.8 % top-1); a photo takes ~30 ms on one CPU
core, so all 50,000 validation photos take 30–60 min on 2 cores, a couple of minutes with
limit=2000. Offline, on scikit-image's photos, 5 of the 6 photos of an ImageNet class are named
right at top-1 (the motion-blurred clock comes out a "bubble", with "wall clock" third) and all
6 within the top 5. Bad images are reported and skipped.

    deepscape run vision/101/objects1000                             # scikit-image's photos
    deepscape run vision/101/objects1000 images=my-photos/           # yours, top-5 each
    deepscape run vision/101/objects1000 imagenet_dir=imagenet/val   # top-1, top-5, failures
    deepscape run vision/101/objects1000 imagenet_dir=imagenet/val limit=2000 \
        compare=resnet50,mobilenetv3_large_100,convnext_tiny          # online: the hub's models
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import timm
import torch
from matplotlib.ticker import PercentFormatter
from rich.console import Console
from rich.table import Table

from deepscape import figures
from deepscape.config import ConfigError, closest, option
from deepscape.costs import latency_ms
from deepscape.data import Splits, TensorSplit
from deepscape.data.imagenet import (
    ImageFiles,
    Skipped,
    batches,
    decode,
    fit_square,
    image_paths,
    imagenet_folder,
    skimage_photos,
)
from deepscape.inside import Trained
from deepscape.models.pretrained import (
    PretrainedClassifier,
    PretrainedUnavailable,
    imagenet_classes,
    load_backbone,
)
from deepscape.runs import Run, write_atomic

GALLERY = 24  # photos drawn and kept in the summary; predictions.json has every photo's top-k
FAILURES = 16  # most confident mistakes drawn
SHOWN = 20  # skipped files listed in the summary and on screen; skipped.json has them all


@dataclass
class Config:
    seed: int = option(0, "random seed (inference only: nothing here depends on it)")
    # models.pretrained's DEFAULT_MODEL, spelled out: `deepscape show` reads this class without
    # importing the lab's modules (and torch with them)
    model: str = option(
        "tf_efficientnet_lite0", "timm model with ImageNet-1k weights (offline: the default)"
    )
    images: str | None = option(None, "image file or folder to classify (default: scikit-image's)")
    imagenet_dir: str | None = option(None, "imagenet-folder to measure top-1 / top-5 on")
    limit: int = option(0, "evaluate at most this many imagenet_dir images, spread evenly (0: all)")
    compare: str | None = option(None, "comma-separated timm models to compare with `model`")
    top_k: int = option(5, "classes listed for each photo")
    batch_size: int = option(32, "images per forward pass")
    workers: int = option(0, "processes decoding imagenet_dir images (0: this one)")
    latency_runs: int = option(20, "batch-1 forward passes timed per model (the median is kept)")
    threads: int = option(0, "CPU threads for PyTorch (0: all cores)")


@dataclass
class Photo:
    name: str
    image: torch.Tensor | None  # "3 s s" as the model sees it (kept for the gallery only)
    top: list[tuple[str, float]]  # the top-k classes and their probabilities
    expected: tuple[str, ...] | None  # the classes that name it right; None: not known
    rank: int | None  # the best rank of an expected class (1: named right); None: not scored


@dataclass
class Evaluation:
    top1: float
    top5: float
    count: int
    skipped: Skipped
    # the most confident mistakes: (confidence, image index, predicted class, true class)
    failures: list[tuple[float, int, int, int]] = field(default_factory=list)
    hardest_classes: list[dict] = field(default_factory=list)


def run(config: Config, run: Run) -> dict[str, float]:
    if config.threads:
        torch.set_num_threads(config.threads)
    if min(config.top_k, config.batch_size, config.latency_runs) < 1:
        raise ConfigError("top_k, batch_size and latency_runs must be at least 1")
    others = [n.strip() for n in (config.compare or "").split(",") if n.strip()]
    for name in [config.model, *others]:
        if not timm.is_model(name):  # a typo: fail before any work
            hint = closest(name, timm.list_models()) or " (see timm.list_models())"
            raise ConfigError(f"timm has no model '{name}'{hint}")
    console = Console(stderr=True, quiet=not run.show_progress)

    # 1. The model: timm's architecture, ImageNet-1k weights, its own preprocessing in front.
    model = classifier(config.model)
    run.update_summary(model=describe(model, config.model))
    metrics = {"parameters": parameters(model), "latency_ms": latency(model, config)}

    # 2. Photos: the top-k classes of each, by name.
    photos, skipped = classify(model, config)
    print_photos(console, photos, config.model)
    metrics |= photo_scores(photos)
    write_atomic(run.dir / "predictions.json", json.dumps([as_record(p) for p in photos]))
    run.update_summary(photos=[as_record(p) for p in photos[:GALLERY]])
    title = f"{config.model}: the top 3 of 1000 classes for each photo, as the model sees it"
    title += " (centre crop)"
    if any(p.expected for p in photos):
        title += "\ngreen: a right name · red: a wrong one"
    gallery(run, "photos", [photo_tile(p) for p in photos[:GALLERY]], title)

    # 3. ImageNet: top-1, top-5 and the most confident mistakes on an imagenet-folder.
    if config.imagenet_dir:
        evaluation, images = evaluate(model, config, run.show_progress)
        skipped += evaluation.skipped
        metrics |= {
            "top1_accuracy": evaluation.top1,
            "top5_accuracy": evaluation.top5,
            "images_evaluated": evaluation.count,
        }
        run.update_summary(
            hardest_classes=evaluation.hardest_classes,
            failures=[  # for `deepscape serve`, which shows them again
                {"file": str(images.samples[i][0]), "true": true, "predicted": guess}
                for _, i, guess, true in evaluation.failures
            ],
        )
        result = f"top-1 {evaluation.top1:.2%} · top-5 {evaluation.top5:.2%}"
        console.print(f"{result} on {evaluation.count} images of {config.imagenet_dir}")
        if evaluation.failures:
            tiles = [failure_tile(model, images, f) for f in evaluation.failures]
            title = f"{config.model}: the {len(tiles)} most confident mistakes of "
            title += f"{evaluation.count} photos (top-1 {evaluation.top1:.1%}, top-5 "
            title += f"{evaluation.top5:.1%})\nin red what it answered; below, the true class"
            gallery(run, "failures", tiles, title)

    # 4. Bad files: reported, never fatal.
    metrics["images_skipped"] = len(skipped)
    write_atomic(run.dir / "skipped.json", json.dumps([[str(p), why] for p, why in skipped]))
    run.update_summary(skipped=[f"{p}: {why}" for p, why in skipped[:SHOWN]])
    for path, why in skipped[:SHOWN]:
        console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
    if len(skipped) > SHOWN:
        console.print(f"… and {len(skipped) - SHOWN} more, all in {run.dir / 'skipped.json'}")

    # 5. Other models measured the same way: parameters, CPU latency, accuracy.
    if others:
        ours = {k: metrics[k] for k in ("parameters", "latency_ms")}
        ours["accuracy"] = metrics.get("top1_accuracy", metrics.get("photos_named_right"))
        rows = [{"model": config.model, **ours}]
        rows += [compare(n, config, run.show_progress) for n in others if n != config.model]
        for row in rows:
            if "unavailable" in row:
                console.print(f"[yellow]not compared[/] {row['unavailable']}", highlight=False)
        run.update_summary(compare=rows)
        measure = "top-1 on imagenet_dir" if config.imagenet_dir else "photos named right"
        if config.images and not config.imagenet_dir:
            measure = "accuracy not measured: your photos have no labels"
        compare_figure(run, rows, measure)
    return {k: float(v) for k, v in metrics.items()}


# -- the model ------------------------------------------------------------------------------------
def trained_for(run: Run) -> Trained:
    """The run's model for `deepscape serve` and `inspect`: its pretrained weights (from the hub
    or the cache, not copied into the run) and, as the images to study, the run's most confident
    ImageNet mistakes when it evaluated an imagenet-folder, else scikit-image's scored photos."""
    config = run.config_as(Config)
    model = classifier(config.model)
    names = imagenet_classes()
    recorded = run.summary.get("failures") or []
    if recorded and all(Path(f["file"]).is_file() for f in recorded):
        images = [fit_square(decode(Path(f["file"])), model.scale_size) for f in recorded]
        labels = [f["true"] for f in recorded]
        source = f"the run's most confident mistakes on {config.imagenet_dir}"
    else:
        photos = [p for p in skimage_photos(model.scale_size) if p[2]]
        images, labels = [image for _, image, _ in photos], [names.index(e[0]) for *_, e in photos]
        source = "scikit-image's photos of ImageNet classes"
    shown = TensorSplit(torch.stack(images), torch.tensor(labels))
    data = Splits("imagenet", shown, shown, shown, names, modality="image", source=source)
    return Trained(run, model, data)


def classifier(name: str) -> PretrainedClassifier:
    backbone = load_backbone(name)
    if getattr(backbone, "num_classes", None) != 1000:
        raise ConfigError(f"{name} has {backbone.num_classes} classes, not ImageNet-1k's 1000")
    return PretrainedClassifier(backbone=backbone).eval()


def describe(model: PretrainedClassifier, name: str) -> dict:
    return {
        "name": name,
        "weights_from": model.backbone.pretrained_cfg.get("weights_from"),
        "parameters": parameters(model),
        "image_size": model.image_size,
        "shorter_side_resized_to": model.scale_size,
        "mean": list(model.normalize.mean),
        "std": list(model.normalize.std),
        "interpolation": model.backbone.pretrained_cfg.get("interpolation"),
    }


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def latency(model: PretrainedClassifier, config: Config) -> float:
    """Milliseconds per photo as the lab feeds them (a square at the model's scale, preprocessing
    included), one at a time, as a page serving one person would."""
    photo = torch.rand(1, 3, model.scale_size, model.scale_size)
    return latency_ms(model, photo, runs=config.latency_runs)


# -- photos ---------------------------------------------------------------------------------------
def photo_batches(
    config: Config, size: int
) -> Iterator[tuple[list[str], torch.Tensor, list[tuple[str, ...] | None], Skipped]]:
    """(names, "b 3 size size" images, expected classes, skipped files), a batch at a time."""
    if config.images is None:
        names, images, expected = zip(*skimage_photos(size), strict=True)
        yield list(names), torch.stack(images), list(expected), []
        return
    root = Path(config.images)
    files = ImageFiles([(path, -1) for path in image_paths(root)], size=size)
    for batch in batches(files, batch_size=config.batch_size, show_progress=False):
        paths = [files.samples[i][0] for i in batch.indices.tolist()]
        names = [str(p.relative_to(root)) if root.is_dir() else p.name for p in paths]
        yield names, batch.images, [None] * len(names), batch.skipped


@torch.inference_mode()
def classify(model: PretrainedClassifier, config: Config) -> tuple[list[Photo], Skipped]:
    photos: list[Photo] = []
    skipped: Skipped = []
    names = imagenet_classes()
    for files, images, expected, bad in photo_batches(config, model.scale_size):
        skipped += bad
        for name, image, probs, wanted in zip(
            files, images, model(images).softmax(1), expected, strict=True
        ):
            values, indices = probs.topk(config.top_k)
            top = [(names[i], round(float(v), 4)) for v, i in zip(values, indices, strict=True)]
            rank = None
            if wanted:
                best = max(float(probs[names.index(c)]) for c in wanted)
                rank = int((probs > best).sum()) + 1
            seen = model.seen(image[None])[0] if len(photos) < GALLERY else None
            photos.append(Photo(name, seen, top, wanted, rank))
    return photos, skipped


def photo_scores(photos: list[Photo]) -> dict[str, float]:
    """Shares of the scored photos named right at top-1 and within the top 5."""
    ranks = [p.rank for p in photos if p.rank is not None]
    if not ranks:
        return {}
    return {
        "photos_named_right": float(np.mean([r == 1 for r in ranks])),
        "photos_top5_right": float(np.mean([r <= 5 for r in ranks])),
    }


def as_record(photo: Photo) -> dict:
    return {
        "photo": photo.name,
        "top": dict(photo.top),
        "expected": photo.expected,
        "expected_rank": photo.rank,
    }


def print_photos(console: Console, photos: list[Photo], model_name: str) -> None:
    scored = any(photo.expected is not None for photo in photos)
    table = Table("photo", "top classes", *["named right?"] * scored, title=model_name)
    for photo in photos:
        verdict = "" if photo.expected is None else "[dim]none of the 1000 fits[/]"
        if photo.rank is not None:
            verdict = "[green]yes[/]" if photo.rank == 1 else f"[red]no[/]: rank {photo.rank}"
        top = " · ".join(f"{n} {p:.0%}" for n, p in photo.top)
        table.add_row(photo.name, top, *[verdict] * scored)
    console.print(table)


# -- ImageNet -------------------------------------------------------------------------------------
@torch.inference_mode()
def evaluate(
    model: PretrainedClassifier, config: Config, show_progress: bool
) -> tuple[Evaluation, ImageFiles]:
    """Top-1 and top-5 accuracy on the imagenet-folder, its most confident mistakes, and the
    classes it gets wrong most often."""
    images, skipped = imagenet_folder(config.imagenet_dir, size=model.scale_size)
    if 0 < config.limit < len(images):  # evenly spaced over a sorted folder: every class
        kept = np.linspace(0, len(images) - 1, config.limit).round().astype(int)
        images = ImageFiles([images.samples[i] for i in kept], size=images.size)
    hits1, hits5, counts = torch.zeros(1000), torch.zeros(1000), torch.zeros(1000)  # per class
    failures: list[tuple[float, int, int, int]] = []  # a min-heap on confidence
    loading = {"workers": config.workers, "show_progress": show_progress}
    for batch in batches(images, batch_size=config.batch_size, description="ImageNet", **loading):
        skipped += batch.skipped
        if not len(batch.labels):
            continue
        probs = model(batch.images).softmax(1)  # "b 1000"
        ranked = probs.topk(5).indices  # "b 5"
        right = ranked[:, 0] == batch.labels
        hits1 += torch.bincount(batch.labels[right], minlength=1000)
        hits5 += torch.bincount(
            batch.labels[(ranked == batch.labels[:, None]).any(1)], minlength=1000
        )
        counts += torch.bincount(batch.labels, minlength=1000)
        for j in (~right).nonzero().flatten().tolist():
            index, predicted, true = int(batch.indices[j]), int(ranked[j, 0]), int(batch.labels[j])
            item = (float(probs[j, predicted]), index, predicted, true)
            (heapq.heappush if len(failures) < FAILURES else heapq.heappushpop)(failures, item)
    count = int(counts.sum())
    if not count:
        raise ConfigError(f"no readable image in imagenet_dir={config.imagenet_dir}")
    names = imagenet_classes()
    enough = (counts >= 5).nonzero().flatten()  # a class seen once or twice says little
    worst = enough[(hits1[enough] / counts[enough]).argsort()][:10].tolist()
    hardest = [
        {"class": names[c], "top1": float(hits1[c] / counts[c]), "images": int(counts[c])}
        for c in worst
    ]
    top1, top5 = float(hits1.sum()) / count, float(hits5.sum()) / count
    return Evaluation(top1, top5, count, skipped, sorted(failures, reverse=True), hardest), images


def compare(name: str, config: Config, show_progress: bool) -> dict:
    """Another model measured as the lab's own; one without weights here is noted, not fatal."""
    try:
        model = classifier(name)
    except (PretrainedUnavailable, ConfigError) as error:
        return {"model": name, "unavailable": str(error)}
    if config.imagenet_dir:
        accuracy = evaluate(model, config, show_progress)[0].top1
    else:  # your own photos have no labels: no accuracy
        accuracy = photo_scores(classify(model, config)[0]).get("photos_named_right")
    return {
        "model": name,
        "parameters": parameters(model),
        "latency_ms": latency(model, config),
        "accuracy": accuracy,
    }


# -- figures --------------------------------------------------------------------------------------
Line = tuple[str, str]  # text, colour


def photo_tile(photo: Photo) -> tuple[torch.Tensor, Line, list[Line]]:
    def colour(name: str) -> str:
        if not photo.expected:
            return "black"
        return "green" if name in photo.expected else figures.WRONG

    lines = [(f"{name}  {p:.0%}", colour(name)) for name, p in photo.top[:3]]
    if photo.expected == ():
        lines.append(("(none of the 1000 fits)", "grey"))
    title = photo.name if len(photo.name) <= 30 else "…" + photo.name[-29:]
    return photo.image, (title, "black"), lines


def failure_tile(
    model: PretrainedClassifier, images: ImageFiles, failure: tuple[float, int, int, int]
) -> tuple[torch.Tensor, Line, list[Line]]:
    confidence, index, predicted, true = failure
    names = imagenet_classes()
    with torch.inference_mode():
        image = images[index][0][None]
        probs = model(image).softmax(1)[0]
        seen = model.seen(image)[0]
    rank = int((probs > probs[true]).sum()) + 1
    file = images.samples[index][0].name
    lines = [
        (f"true: {names[true]}", "black"),
        (f"ranked {rank} of 1000, {probs[true]:.0%}", "grey"),
    ]
    lines.append((file if len(file) <= 32 else "…" + file[-31:], "grey"))
    return seen, (f"{names[predicted]}  {confidence:.0%}", figures.WRONG), lines


def gallery(
    run: Run, name: str, tiles: list[tuple[torch.Tensor, Line, list[Line]]], title: str
) -> None:
    """Images four to a row, each with a heading above and lines below, laid out in inches so
    that no text overlaps an image whatever the number of rows."""
    cols, side, gap, top = min(4, len(tiles)), 2.8, 0.3, 0.75
    rows = -(-len(tiles) // cols)
    above, below = 0.35, 0.1 + 0.22 * max(len(lines) for _, _, lines in tiles)
    width, cell = cols * side + (cols + 1) * gap, above + side + below
    height = top + rows * cell
    fig = plt.figure(figsize=(width, height))
    below_image = {"ha": "center", "va": "top", "fontsize": 9.5}
    for n, (image, (heading, heading_colour), lines) in enumerate(tiles):
        row, col = divmod(n, cols)
        bottom = height - top - row * cell - above - side
        left = gap + col * (side + gap)
        ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.axis("off")
        ax.set_title(heading, fontsize=10, color=heading_colour, fontweight="bold")
        below_image["transform"] = ax.transAxes
        for i, (text, colour) in enumerate(lines):
            ax.text(0.5, -0.03 - i * 0.22 / side, text, color=colour, **below_image)
    fig.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=11)
    figures.save(fig, run.figure_path(name), tight=False)


def compare_figure(run: Run, rows: list[dict], measure: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        if "unavailable" in row:
            continue
        y = row["accuracy"] if row["accuracy"] is not None else 0
        ax.scatter(row["latency_ms"], y, s=row["parameters"] / 1e5, alpha=0.6)
        label = f"{row['model']}\n{row['parameters'] / 1e6:.1f} M parameters"
        ax.annotate(label, (row["latency_ms"], y), xytext=(9, 4), textcoords="offset points")
    slowest = max(r["latency_ms"] for r in rows if "unavailable" not in r)
    ax.set_xlim(0, 1.45 * slowest)  # room for the labels, right of each disc
    ax.margins(y=0.2)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlabel="CPU latency per image, ms (median, batch of 1)",
        ylabel=measure,
        title="Accuracy vs latency (disc area: parameters)",
    )
    ax.grid(alpha=0.3)
    missing = [r["model"] for r in rows if "unavailable" in r]
    if missing:
        ax.set_title(
            f"not measured, no weights here: {', '.join(missing)}",
            loc="left",
            fontsize=8,
            color="grey",
            y=-0.2,
        )
    figures.save(fig, run.figure_path("compare"))
