"""vision/201/unsolvable: the attacks are torchattacks' step for step and stay in their ε-ball,
the built images are what they say, and on a tiny budget each failure shows: FGSM and PGD break
the digits model and an ImageNet model, random labels are fitted without being learnt, rotated
and foreign digits are missed, coloured MNIST's CNN follows the colour. Bad options are refused
in one line, and the command line writes the four figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.config import ConfigError
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.inside import load_trained
from deepscape.lab import run_lab
from deepscape.labs.vision import l201_unsolvable_data as built
from deepscape.labs.vision.l201_unsolvable_attacks import fgsm, pgd
from deepscape.runs import RunStore

LAB = "vision/201/unsolvable"
FIGURES = {"adversarial", "memorisation", "shift", "coloured_mnist"}
ATTACKED = "digits,objects10,efficientnet-lite0" if FASHION_DEBIAN_DIR.is_dir() else (
    "digits,efficientnet-lite0")  # fmt: skip
# MLPs train in seconds; every experiment keeps its shape
TINY = ["model=mlp", "width=64", "epochs=4", "threads=1", "attack_images=200",
        "epsilons=0,0.1,0.3", "photo_epsilons=0,2", "pgd_steps=4", f"attack_models={ATTACKED}",
        "objects_fraction=0.02", "objects_width=8", "memorise_images=300", "memorise_width=256",
        "memorise_epochs=25", "memorise_lr=2e-3", "font_variants=4", "rotations=0,45,90,180",
        "noise_levels=0,0.5", "blur_levels=0,2", "contrast_levels=1,0.1"]  # fmt: skip


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory):
    """One run of all four experiments on the tiny budget, and the store holding its runs
    (~50 s on 2 shared cores, a third of it reading mnist-5k's CSV twice)."""
    store = RunStore(tmp_path_factory.mktemp("unsolvable"))
    run = run_lab(LAB, TINY, store=store, show_progress=False)
    assert run.status == "finished", run.summary.get("error")
    return run, store


# -- the attacks ----------------------------------------------------------------------------------
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def test_fgsm_and_pgd_are_torchattacks_step_for_step():
    torchattacks = pytest.importorskip("torchattacks")
    model, images = small_cnn().eval(), torch.rand(16, 1, 8, 8)
    labels, aims = torch.randint(0, 10, (16,)), torch.randint(0, 10, (16,))
    torch.testing.assert_close(fgsm(model, images, labels, 0.1),
                               torchattacks.FGSM(model, eps=0.1)(images, labels))  # fmt: skip
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.03, steps=5, random_start=False)
    ours = pgd(model, images, labels, 0.1, steps=5, step_size=0.03)
    torch.testing.assert_close(ours, theirs(images, labels))
    theirs.set_mode_targeted_by_label(quiet=True)
    aimed = pgd(model, images, aims, 0.1, steps=5, step_size=0.03, targeted=True)
    torch.testing.assert_close(aimed, theirs(images, aims))


def test_attacks_stay_in_the_ball_raise_the_loss_and_leave_the_model_as_it_was():
    model, images = small_cnn().train(), torch.rand(32, 1, 8, 8)
    labels = torch.randint(0, 10, (32,))
    before = [p.clone() for p in model.parameters()]
    with torch.no_grad():
        clean_loss = F.cross_entropy(model.eval()(images), labels)
    model.train()
    for attacked in (fgsm(model, images, labels, 0.05), pgd(model, images, labels, 0.05)):
        assert (attacked - images).abs().max() <= 0.05 + 1e-6
        assert attacked.min() >= 0 and attacked.max() <= 1
        with torch.no_grad():
            assert F.cross_entropy(model.eval()(attacked), labels) > clean_loss
        model.train()
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    inside = (images > 0.05) & (images < 0.95)  # not clipped: moved by exactly ±ε
    moved = (fgsm(model, images, labels, 0.05) - images)[inside].abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 0.05))


# -- the images -----------------------------------------------------------------------------------
def test_mnist_framing_fits_the_ink_in_20_pixels_with_its_centre_of_mass_at_the_centre():
    ink = np.zeros((60, 90), dtype=np.float32)
    ink[5:45, 60:80] = 1.0  # a tall bar far from the centre of a wide page
    field = built.mnist_frame(ink)
    rows, cols = np.nonzero(field > 0.5)
    assert field.shape == (28, 28) and field.max() == pytest.approx(1.0)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 == 10
    centre = [(np.arange(28)[:, None] * field).sum() / field.sum() + 0.5,
              (np.arange(28)[None, :] * field).sum() / field.sum() + 0.5]  # fmt: skip
    np.testing.assert_allclose(centre, [14, 14], atol=0.5)


def test_font_digits_hold_out_whole_fonts_and_every_digit():
    fonts = built.font_digits(variants=2)
    assert fonts.sizes == {"train": 14 * 20, "validation": 2 * 20, "test": 6 * 20}
    assert fonts.train.inputs.shape[1:] == (1, 28, 28)
    for split in (fonts.train, fonts.test):
        assert torch.bincount(split.targets).tolist() == [len(split) // 10] * 10
    train, test = (set(map(bytes, s.inputs.numpy())) for s in (fonts.train, fonts.test))
    assert not train & test


def test_coloured_mnist_agrees_with_the_label_in_training_only():
    labels = built.embedded("mnist-5k").train.targets
    for agreement in (0.95, 0.1):
        colours = built.colour_classes(labels, agreement, seed=0)
        assert (colours == labels).float().mean() == pytest.approx(agreement, abs=0.02)
    painted = built.coloured_mnist(0.95)
    assert painted.splits.train.inputs.shape[1] == 3
    assert (painted.test_colours == painted.splits.test.targets).float().mean() < 0.15


def test_random_labels_replace_the_share_asked_for_the_same_every_time():
    targets = torch.arange(10).repeat(500)
    noisy = built.noisy_labels(targets, 0.5, 10, seed=3)
    assert torch.equal(noisy, built.noisy_labels(targets, 0.5, 10, seed=3))
    assert (noisy != targets).float().mean() == pytest.approx(0.5 * 0.9, abs=0.03)
    assert torch.equal(built.noisy_labels(targets, 0.0, 10, seed=3), targets)


def test_the_mildest_corruptions_change_nothing_and_all_stay_in_range():
    images = built.embedded("mnist-5k").test.inputs[:8]
    for name, identity in {"rotation": 0, "noise": 0, "blur": 0, "contrast": 1}.items():
        torch.testing.assert_close(built.CORRUPTIONS[name](images, identity), images)
    for name, severe in {"rotation": 90, "noise": 0.8, "blur": 3, "contrast": 0.05}.items():
        corrupted = built.CORRUPTIONS[name](images, severe)
        assert corrupted.min() >= 0 and corrupted.max() <= 1 and not torch.equal(corrupted, images)


# -- the failures, measured on a tiny budget ------------------------------------------------------
@pytest.mark.slow
def test_fgsm_and_pgd_break_the_digits_model_and_an_imagenet_model(measured):
    m = measured[0].summary["metrics"]
    assert m["digits_clean_accuracy"] > 0.8
    assert m["digits_fgsm_accuracy"] < m["digits_clean_accuracy"] - 0.3  # at ε = 0.3
    assert m["digits_pgd_accuracy"] <= m["digits_fgsm_accuracy"] + 0.02
    # 5 of 6 photos named right; at 2/255 PGD leaves at most 2
    assert m["efficientnet-lite0_clean_named_right"] >= 4 / 6
    assert m["efficientnet-lite0_pgd_named_right"] <= 2 / 6


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DEBIAN_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_the_objects10_model_falls_too(measured):
    m = measured[0].summary["metrics"]
    assert m["objects10_pgd_accuracy"] < m["objects10_clean_accuracy"] - 0.3


@pytest.mark.slow
def test_random_labels_are_fitted_but_not_learnt(measured):
    m = measured[0].summary["metrics"]
    assert m["random_label_train_accuracy"] > m["random_label_test_accuracy"] + 0.3
    assert m["random_label_test_accuracy"] < 0.2  # chance is 0.1
    assert m["true_label_test_accuracy"] > 0.6  # the same images, labels that carry signal


@pytest.mark.slow
def test_rotated_and_foreign_digits_are_missed(measured):
    m = measured[0].summary["metrics"]
    assert m["rotated_90_accuracy"] < m["mnist_on_mnist_accuracy"] - 0.3
    assert m["mnist_on_fonts_accuracy"] < m["mnist_on_mnist_accuracy"] - 0.1
    assert m["digits-28_on_mnist_accuracy"] < m["digits-28_on_digits-28_accuracy"] - 0.1


@pytest.mark.slow
def test_the_coloured_mnist_cnn_follows_the_colour_and_the_grey_one_does_not(measured):
    m = measured[0].summary["metrics"]
    assert m["coloured_test_accuracy"] < m["coloured_train_accuracy"] - 0.3
    assert m["colour_follow_rate"] > 0.5
    assert abs(m["grey_gap"]) < 0.1 and m["grey_test_accuracy"] > m["coloured_test_accuracy"]


@pytest.mark.slow
def test_every_experiment_draws_its_figure_and_its_models_can_be_inspected(measured):
    run, store = measured
    assert {p.stem for p in run.figures()} == FIGURES
    fonts = next(r for r in store.list() if r.config.get("dataset") == "font-digits")
    trained = load_trained(fonts)
    assert trained.data.name == "font-digits" and trained.input_shape == (1, 28, 28)
    assert run.summary["target"]["reached"] is not None


# -- bad input, and the command line --------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("epsilons=0,-0.1", "give ε ≥ 0 in ascending order"),
        ("epsilons=0,2", "pixels lie in [0, 1]"),
        ("label_noises=0,1.5", "a share, between 0 and 1"),
        ("photo_target=toastr", "did you mean 'toaster'"),
    ],
)
def test_bad_options_are_refused_in_one_line_before_anything_trains(store, option, said):
    with pytest.raises(ConfigError, match=None) as refused:
        run_lab(LAB, [option], store=store, show_progress=False)
    assert said in str(refused.value) and "\n" not in str(refused.value)
    assert store.list() == []


def test_the_command_line_runs_one_experiment_and_writes_its_figure(home):
    options = ["part=memorisation", "memorise_images=200", "memorise_width=128",
               "memorise_epochs=5", "threads=1"]  # fmt: skip
    result = CliRunner().invoke(app, ["run", LAB, *options, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "finished" and "random_label_test_accuracy" in report["metrics"]
    store = RunStore(home)
    assert [p.stem for p in store.get(report["run_id"]).figures()] == ["memorisation"]
