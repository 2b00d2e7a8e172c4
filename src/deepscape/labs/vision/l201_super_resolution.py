"""vision/201/super-resolution — make a small photo larger and sharper than bicubic can.

Super-resolution is regression from image to image: the input is a photo shrunk by `scale`, the
answer the photo itself. Shrinking throws the fine detail away; bicubic enlargement guesses it
smoothly and blurs edges; a network trained on pairs learns what detail goes with which pattern.
Pairs are made as the published tables make them: the photo cropped to a multiple of the scale,
shrunk by bicubic (PyTorch's antialiased kernel, `F.interpolate(mode="bicubic", antialias=True)`,
a = −0.5 like PIL's and MATLAB's; used for every enlargement here too), rounded to 8 bits.

The ladder (method=…), each a step of the history:
  bicubic   no learning: the line every model must clear.
  srcnn     SRCNN (Dong et al. 2014): three convolutions (9-1-5) on the bicubic enlargement.
  espcn     ESPCN (Shi et al. 2016): convolutions at the low resolution, and a last one making s²
            values per pixel that the sub-pixel convolution (`nn.PixelShuffle`) lays out as an
            s× larger image: s² times cheaper than working on the enlargement.
  edsr      a small EDSR (Lim et al. 2017): residual blocks without batch norm, then pixel shuffle.
  ladder    each learning rung in turn, as runs of this lab, compared on the same test images.
All learn only the detail bicubic misses (their output is added to bicubic's: VDSR's global skip),
from random patches flipped and turned, with an L1 loss (EDSR's: sharper than MSE's mean).

Measured as the papers measure: PSNR and SSIM on the Y channel (BT.601, MATLAB's rgb2ycbcr) of the
8-bit result, `scale` pixels cut from each border, PSNR per image then averaged. The test images
are whole photos, one at a time; bicubic is measured on the same images in the same run.

Offline, it trains on three photos that come with scikit-image (astronaut, rocket, motorcycle),
validates on a fourth (coffee) and tests on two more (chelsea the cat, and matplotlib's Grace
Hopper). The benchmark's data trains on the 80 photos of Sun & Hays and tests on Set5 and Set14;
bicubic measured here gives 30.41 and 27.63 dB at ×3 (published, MATLAB's imresize: 30.39, 27.54).

The default, a 4-block EDSR of 92k parameters, 1,500 steps of 16 patches ×3: 64 s of training on
one core (other jobs sharing the 2 cores), +0.70 dB over bicubic on the two test photos (30.93 vs
30.24 dB). The map's target, on Sun-Hays 80 at ×3: a 6-block EDSR on 24×24-pixel inputs, 10,000
steps, 10.5 minutes of training alone on 2 cores, gained +2.35 dB on Set5 (32.76 dB, above the
published SRCNN's 32.39 and ESPCN's 32.55) and +1.70 dB on Set14 (29.34): both bars met
(docs/benchmarks.md). At 3,000 steps (beside other jobs) it had gained +1.40 and +1.06: more
steps kept paying. At the default budget the ladder on Sun-Hays 80 gave SRCNN +1.26 dB on Set5
in 4.0 minutes, ESPCN +0.98 in 1.0 and the EDSR +1.00 in 2.3 (beside other jobs).

    deepscape run vision/201/super-resolution                          # edsr ×3 on the photos
    deepscape run vision/201/super-resolution method=ladder            # srcnn, espcn, edsr
    deepscape run vision/201/super-resolution scale=4 method=espcn
    deepscape run vision/201/super-resolution data_dir=../shared/data/sr dataset=set5 \\
        blocks=6 patch_size=72 patches=16000 epochs=10     # the target: +2.35 dB on Set5
    deepscape serve RUN                                                # upscale your own photo
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from deepscape import figures
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.costs import forward_flops, parameters
from deepscape.labs.vision import l201_super_resolution_figures as draw
from deepscape.labs.vision.l201_super_resolution_data import (
    OFFLINE,
    Pair,
    RandomPatches,
    as_tensor,
    check_size,
    degrade,
    grid_patches,
    measured,
    offline_photos,
    one_at_a_time,
    read_folder,
)
from deepscape.labs.vision.l201_super_resolution_models import METHODS, Bicubic, build
from deepscape.runs import Run, RunStore
from deepscape.sweep import inherited, stage
from deepscape.tasks import ImageToImage
from deepscape.train import Trainer

if TYPE_CHECKING:
    import gradio as gr

SUPER_RESOLUTION = "vision/201/super-resolution"


@dataclass
class Config(TrainConfig):
    # what to run
    method: Literal["edsr", "espcn", "srcnn", "bicubic", "ladder"] = option(
        "edsr", "the model (bicubic: no training); ladder: srcnn, espcn and edsr, compared"
    )
    scale: int = option(3, "how many times larger (2, 3 and 4 are the published tables')")
    # data
    dataset: str = option(
        "photos", "the test images the target is judged on: photos (offline), or a test folder "
        "of data_dir by its name in lower case (set5, set14)"
    )  # fmt: skip
    data_dir: str | None = option(
        None, "a folder of image folders: train on `train_set`, test on every other "
        "(../shared/data/sr); none: the offline photos"
    )  # fmt: skip
    train_set: str = option("Sun_Hays80", "data_dir's folder of training photos")
    val_images: int = option(2, "training photos held out for validation (data_dir only)")
    patch_size: int = option(48, "pixels per side of a training patch (a multiple of scale)")
    patches: int = option(4000, "random patches an epoch draws")
    val_patches: int = option(64, "fixed validation patches, on a grid over the held-out photos")
    # the models
    width: int = option(32, "edsr: channels of its residual blocks")
    blocks: int = option(4, "edsr: residual blocks")
    residual: bool = option(True, "add the model's output to bicubic's (learn the detail only)")
    objective: Literal["l1", "mse"] = option("l1", "pixel loss: l1 (EDSR's) or mse (SRCNN's)")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(6, "passes of `patches` random patches")
    batch_size: int = option(16, "patches per optimisation step")
    lr: float = option(1e-3, "peak learning rate (AdamW)")
    figures: bool = option(True, "draw the figures (a sweep of many runs may skip them)")


def run(config: Config, run: Run) -> dict[str, Any]:
    checked(config)
    if config.method == "ladder":
        return ladder(config, run)
    return one_rung(config, run)


def checked(config: Config) -> None:
    """Bad knobs fail here, before any photo is read."""
    if config.scale < 2:
        raise ConfigError(f"scale={config.scale}: super-resolution enlarges, give an integer ≥ 2")
    if config.patch_size % config.scale or config.patch_size < 2 * config.scale:
        fits = max(2, round(config.patch_size / config.scale)) * config.scale
        raise ConfigError(
            f"patch_size={config.patch_size} is not a multiple of scale={config.scale} of at "
            f"least {2 * config.scale}: try patch_size={fits}"
        )


# -- 1. the data: pairs of photos and their shrunk copies ----------------------------------------
@dataclass
class Sets:
    name: str
    train: list[Pair]
    validation: list[Pair]
    tests: dict[str, list[Pair]]  # by name; `dataset`'s first


def load_sets(config: Config) -> Sets:
    s = config.scale
    if config.data_dir is None:
        if config.dataset != "photos":
            raise ConfigError(
                f"dataset={config.dataset} is a folder of data_dir: give "
                "data_dir=../shared/data/sr (its Set5/ and Set14/), or dataset=photos"
            )
        split = {part: offline_photos(names) for part, names in OFFLINE.items()}
        pairs = {
            part: [degrade(n, t, s) for n, t in photos.items()] for part, photos in split.items()
        }
        return Sets("photos", pairs["train"], pairs["validation"], {"photos": pairs["photos"]})
    root = Path(config.data_dir).expanduser()
    training = [degrade(n, t, s) for n, t in read_folder(root / config.train_set).items()]
    if not 0 < config.val_images < len(training):
        raise ConfigError(f"val_images={config.val_images}: hold out 1 to {len(training) - 1}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != config.train_set)
    tests = {p.name.lower(): [degrade(n, t, s) for n, t in read_folder(p).items()] for p in folders}
    if config.dataset not in tests:
        raise ConfigError(
            f"dataset={config.dataset}: {root} has no such test folder (it has: "
            f"{', '.join(tests) or 'none'})"
        )
    tests = {config.dataset: tests.pop(config.dataset), **tests}
    held = len(training) - config.val_images
    return Sets(config.train_set, training[:held], training[held:], tests)


# -- 2. one rung: train it, measure it and bicubic on the same test images -----------------------
def model_for(config: Config) -> nn.Module:
    return build(config.method, config.scale, width=config.width, blocks=config.blocks,
                 residual=config.residual)  # fmt: skip


def one_rung(config: Config, run: Run) -> dict[str, Any]:
    sets = load_sets(config)
    check_size(sets.train + sets.validation, config.patch_size, config.scale)
    model = model_for(config)
    sizes = {"train": len(sets.train), "validation": len(sets.validation),
             **{name: len(pairs) for name, pairs in sets.tests.items()}}  # fmt: skip
    low_patch = torch.zeros(
        1, 3, config.patch_size // config.scale, config.patch_size // config.scale
    )
    costs = {"parameters": parameters(model), "patch_flops": forward_flops(model, low_patch)}
    run.update_summary(data={"name": sets.name, **sizes}, costs=costs)

    task = ImageToImage(objective=config.objective, view=measured(config.scale))
    trainer = Trainer(config, run, task=task)
    validation = grid_patches(sets.validation, scale=config.scale, patch=config.patch_size,
                              most=config.val_patches)  # fmt: skip
    baseline = Bicubic(config.scale)
    metrics: dict[str, Any] = {
        "bicubic_val_psnr_db": trainer.evaluate(baseline, validation)["psnr_db"]
    }
    if config.method != "bicubic":
        patches = RandomPatches(sets.train, scale=config.scale, patch=config.patch_size,
                                length=config.patches)  # fmt: skip
        model = trainer.fit(model, patches, validation)
        last = run.evaluations()[-1]
        metrics |= {"val_psnr_db": last["val_psnr_db"], "train_seconds": last["seconds"]}

    # whole test images, the model and bicubic the same way; `dataset`'s set is the headline
    for i, (name, pairs) in enumerate(sets.tests.items()):
        made = trainer.evaluate(model, one_at_a_time(pairs))
        plain = trainer.evaluate(baseline, one_at_a_time(pairs))
        for prefix in ["test_"] * (i == 0) + [f"{name}_"]:
            metrics |= {
                f"{prefix}psnr_db": made["psnr_db"],
                f"{prefix}ssim": made["ssim"],
                f"{prefix}bicubic_psnr_db": plain["psnr_db"],
                f"{prefix}bicubic_ssim": plain["ssim"],
            }
        if i == 0:
            metrics["bicubic_psnr_db"] = metrics.pop("test_bicubic_psnr_db")
            metrics["bicubic_ssim"] = metrics.pop("test_bicubic_ssim")
            metrics["psnr_gain_db"] = made["psnr_db"] - plain["psnr_db"]
        metrics[f"{name}_psnr_gain_db"] = made["psnr_db"] - plain["psnr_db"]

    if config.figures and config.method != "bicubic":
        title = f"{config.method} ×{config.scale} on {sets.name}"
        figures.training_curves(run, title=f"{title}: training curves")
        draw.psnr_curve(run, metrics["bicubic_val_psnr_db"], title=f"{title}: validation PSNR")
        headline = next(iter(sets.tests.values()))[:3]
        draw.crops(run, model, headline, scale=config.scale, title=f"{title}: test images")
    return {**metrics, **costs}


# -- 3. the ladder: every learning rung, trained the same way, on the same images ----------------
def ladder(config: Config, run: Run) -> dict[str, Any]:
    """srcnn, espcn and edsr, each a run of this lab with this run's options (recorded as a stage:
    a resumed ladder reuses the rungs it has), compared on the same test images."""
    items = [*inherited(config, {"method", "figures", "seed"}), f"method={','.join(METHODS)}"]
    runs = stage(run, "rungs", SUPER_RESOLUTION, Config, [*items, "figures=false"])
    rungs = {r.config["method"]: r for r in runs if r.status == "finished"}
    if not rungs:
        raise RuntimeError(f"no rung of the ladder finished: see `deepscape runs` ({run.id})")
    if config.figures:
        title = f"The ladder, ×{config.scale}: bicubic, then three generations of networks"
        draw.ladder(run, rungs, title=title)
    metrics: dict[str, Any] = {}
    for method, rung in rungs.items():
        metrics |= {f"{method}_{key}": value for key, value in rung.summary["metrics"].items()
                    if "bicubic" not in key}  # fmt: skip
    best = max(rungs, key=lambda m: rungs[m].summary["metrics"]["psnr_gain_db"])
    shared = rungs[best].summary["metrics"]
    run.update_summary(best_rung={"method": best, "run": rungs[best].id})
    return {
        **metrics,
        **{key: value for key, value in shared.items() if "bicubic" in key},
        "test_psnr_db": shared["test_psnr_db"],
        "psnr_gain_db": shared["psnr_gain_db"],
    }


# -- 4. serve: upscale a photo you upload ---------------------------------------------------------
MAX_INPUT_PIXELS = 500_000  # an upload larger than this takes too long to enlarge on a CPU


def trained_rung(run: Run) -> tuple[Config, nn.Module]:
    """The run's model with its weights (a ladder's: its best rung's)."""
    from deepscape.inside import load_weights

    if best := run.summary.get("best_rung"):
        run = RunStore(run.dir.parent).get(best["run"])
    config = run.config_as(Config)
    model = model_for(config)
    if config.method != "bicubic":
        load_weights(run, model)
    return config, model.eval()


def page_for(run: Run) -> gr.Blocks:
    """`deepscape serve RUN`: an uploaded photo enlarged by bicubic and by the model."""
    from deepscape.serve import BadImage
    from deepscape.serve_image import array_to_pil, image_page, pil_to_array

    config, model = trained_rung(run)
    s, tested = config.scale, run.summary.get("metrics", {})

    @torch.no_grad()
    def respond(image: Any) -> tuple[list[Any], str]:
        width, height = image.size
        if min(width, height) < 8 or width * height > MAX_INPUT_PIXELS:
            raise BadImage(
                f"the image is {width}×{height} pixels: send one of at least 8 pixels a side "
                f"and at most {MAX_INPUT_PIXELS:,} pixels (it comes back {s}× larger each way)"
            )
        low = as_tensor((pil_to_array(image, mode="RGB") * 255).round().astype("uint8"))[None]
        pictures = [Bicubic(s)(low), model(low)]
        shown = [array_to_pil(p[0].clamp(0, 1).permute(1, 2, 0).numpy()) for p in pictures]
        said = f"{width}×{height} → {width * s}×{height * s} pixels with {config.method} ×{s}."
        if "psnr_gain_db" in tested:
            said += (
                f" On its test images it gained {tested['psnr_gain_db']:+.2f} dB PSNR over "
                f"bicubic ({tested['test_psnr_db']:.2f} vs {tested['bicubic_psnr_db']:.2f} dB)."
            )
        return shown, said

    intro = (
        f"Upload a photo: it comes back {s}× larger, enlarged by bicubic and by the "
        f"{config.method} model, side by side. Zoom in on edges and text to see the difference."
    )
    return image_page(run, intro=intro, shown=[f"bicubic ×{s}", f"{config.method} ×{s}"],
                      respond=respond)  # fmt: skip
