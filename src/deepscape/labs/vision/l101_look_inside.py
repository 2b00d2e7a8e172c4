"""vision/101/look-inside — what a trained network looks at, and whether to believe the pictures.

The lesson opens up the digits CNN. The filters its first layer learnt, its 3×3 weights drawn as
images. Feature maps: what a layer outputs, channel by channel, for one input. Gradient maps of
the pixels that drive a decision, above all for the most confident mistakes, where explanations
teach most: vanilla saliency |∂ score / ∂ pixel|, SmoothGrad (averaged over noisy copies),
Integrated Gradients (gradients along a path from a black image) and Grad-CAM (the last
convolution's maps weighted by their gradients), all four from captum with their published
settings.

Then the maps are tested (Adebayo et al. 2018): a map that looks the same when the weights are
random explains the image, not the model. The rank correlation (Spearman ρ) between the trained
model's maps and those of the same model with random weights is set against a control, a second
model trained the same way from another seed. Vanilla saliency passes; Integrated Gradients from
a black baseline fails on digits: it ranks pixels by their ink, whatever the weights.

    deepscape run vision/101/look-inside                    # trains two digits CNNs (~1 minute)
    deepscape run vision/101/look-inside reuse=RUN_ID       # look inside a finished digits run
    deepscape inspect RUN_ID                                # the figures alone, for any vision run
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepscape.config import ConfigError, option
from deepscape.inside import METHODS, gradient_maps, load_trained, randomized_copy, rank_similarity
from deepscape.inside_figures import draw_inside, sanity_figure
from deepscape.labs.vision import l101_digits
from deepscape.runs import Run, RunStore
from deepscape.sweep import stage

DIGITS = "vision/101/digits"


@dataclass
class Config:
    seed: int = option(0, "seed of the randomised weights")
    reuse: str | None = option(None, "a finished digits run to look inside (default: train one)")
    images: int = option(6, "test images (and mistakes) per gradient-map figure")
    sanity_images: int = option(200, "test images the sanity check's correlations average over")
    epochs: int = option(40, "epochs of the digits CNNs this lab trains")
    jobs: int = option(2, "digits runs trained at a time")


def run(config: Config, run: Run) -> dict[str, Any]:
    # 1. Two digits CNNs trained alike but for the seed: the model we look inside, and a control
    #    for the sanity check (how much do maps vary between two equally good models?).
    settings = [f"epochs={config.epochs}", "model=cnn"]
    trained_runs = stage(
        run, "trained", DIGITS, l101_digits.Config, settings, seeds=2, jobs=config.jobs
    )
    first, control = sorted(trained_runs, key=lambda r: r.config["seed"])
    main = RunStore(run.dir.parent).get(config.reuse) if config.reuse else first
    if main.summary["lab"] != DIGITS:
        raise ConfigError(
            f"reuse={config.reuse} is a run of {main.summary['lab']}: pick a digits run"
        )
    model, other = load_trained(main), load_trained(control)
    run.update_summary(inspected_run=main.id, control_run=control.id)

    # 2. Filters, feature maps, gradient maps and the most confident mistakes.
    draw_inside(model, run, count=config.images)

    # 3. The sanity check: the same maps from random weights, and from the second trained model.
    test = model.data.test
    images = test.inputs[: config.sanity_images]
    predicted = model.probabilities(images).argmax(1)
    random_model = randomized_copy(model.model, seed=config.seed)
    maps, similarity = {}, {}
    for method in METHODS:
        trained_maps = gradient_maps(model.model, images, predicted, method)
        random_maps = gradient_maps(random_model, images, predicted, method)
        control_maps = gradient_maps(other.model, images, predicted, method)
        maps[method] = (trained_maps[0], random_maps[0])
        similarity[method] = {
            "random": float(rank_similarity(trained_maps, random_maps).nanmean()),
            "retrained": float(rank_similarity(trained_maps, control_maps).nanmean()),
        }
    sanity_figure(
        images[0],
        {m: pair[0] for m, pair in maps.items()},
        {m: pair[1] for m, pair in maps.items()},
        similarity,
        run.figure_path("inside_sanity_check"),
    )
    # A method passes when random weights change its maps more than retraining does.
    passed = [m for m, rho in similarity.items() if rho["random"] < min(0.5, rho["retrained"])]
    run.update_summary(sanity_check_passed=passed)
    return {
        "random_model_map_similarity": similarity["saliency"]["random"],
        **{f"{m}_similarity_random": rho["random"] for m, rho in similarity.items()},
        **{f"{m}_similarity_retrained": rho["retrained"] for m, rho in similarity.items()},
        "test_accuracy": main.summary["metrics"]["test_accuracy"],
        "test_mistakes": int((model.probabilities(test.inputs).argmax(1) != test.targets).sum()),
    }
