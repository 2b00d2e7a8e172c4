"""Looking inside trained models: maps of the right shape, the sanity check, clear errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from deepscape import inside
from deepscape.cli import app
from deepscape.models.vision import ObjectsCNN

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(digits_run):
    return inside.load_trained(digits_run)


@pytest.mark.parametrize("method", inside.METHODS)
def test_every_method_maps_every_pixel_of_a_real_trained_model(trained, method):
    images, targets = trained.data.test.inputs[:5], trained.data.test.targets[:5]
    maps = inside.gradient_maps(trained.model, images, targets, method)
    assert maps.shape == (5, *images.shape[-2:])  # "b h w", like the input
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert (maps.flatten(1).amax(1) > 0).all()  # something matters in every image


def test_gradcam_sees_through_a_residual_cnn_after_a_few_steps():
    """Grad-CAM reads the last convolution, inside objects10's last residual branch: the branch
    must learn from its zero start, or every map is blank (as the attention lab's once were)."""
    torch.manual_seed(0)
    model = ObjectsCNN(in_shape=(1, 28, 28), num_classes=4, width=8, flip_average=False)
    images, targets = torch.rand(32, 1, 28, 28), torch.arange(32) % 4
    images[targets == 1, :, :14] += 1  # classes a convolution can tell apart
    images[targets == 2, :, :, 14:] += 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), targets).backward()
        optimizer.step()
    maps = inside.gradient_maps(model.eval(), images[:8], targets[:8], "gradcam")
    assert (maps.flatten(1).amax(1) > 0).sum() >= 4


def test_the_sanity_check_separates_trained_from_random_weights(looked_inside):
    lab_run, _ = looked_inside
    metrics = lab_run.summary["metrics"]
    assert lab_run.summary["target"]["reached"] is True
    for method in ("saliency", "gradcam"):  # maps that depend on what the model learnt
        assert metrics[f"{method}_similarity_random"] <= 0.5
        assert metrics[f"{method}_similarity_random"] < metrics[f"{method}_similarity_retrained"]
        assert method in lab_run.summary["sanity_check_passed"]
    # Integrated Gradients from a black baseline follows the ink, whatever the weights: the
    # lesson's warning, measured.
    assert metrics["integrated_gradients_similarity_random"] > 0.7
    assert "integrated_gradients" not in lab_run.summary["sanity_check_passed"]


def test_the_lab_draws_the_full_set(looked_inside):
    names = {path.name for path in looked_inside[0].figures()}
    expected = {"filters", "feature_maps", "gradient_maps", "mistakes", "sanity_check"}
    assert names == {f"inside_{name}.png" for name in expected}
    for path in looked_inside[0].figures():
        content = path.read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 15_000, path


def test_rank_similarity_is_one_for_the_same_maps_and_low_for_unrelated_ones():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(20, 8, 8, generator=generator)
    assert torch.allclose(inside.rank_similarity(maps, maps), torch.ones(20))
    unrelated = torch.rand(20, 8, 8, generator=generator)
    assert inside.rank_similarity(maps, unrelated).abs().mean() < 0.2


def test_randomized_copy_changes_the_weights_but_keeps_the_input_normalisation(trained):
    random_model = inside.randomized_copy(trained.model)
    before, after = trained.model.state_dict(), random_model.state_dict()
    assert torch.equal(before["0.mean"], after["0.mean"])
    conv = next(k for k in before if k.endswith("weight") and before[k].ndim == 4)
    assert not torch.equal(before[conv], after[conv])


def test_inspect_draws_into_the_run_folder(digits_run, looked_inside):
    store = looked_inside[1]
    result = CliRunner().invoke(app, ["inspect", digits_run.id, "--home", str(store.root)])
    assert result.exit_code == 0, result.output
    for name in ("filters", "feature_maps", "gradient_maps", "mistakes"):
        assert (digits_run.dir / "figures" / f"inside_{name}.png").stat().st_size > 10_000


def test_inspect_names_the_layers_when_one_is_missing(digits_run, looked_inside):
    store = looked_inside[1]
    args = ["inspect", digits_run.id, "--layer", "1.features.0.0.9", "--home", str(store.root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "no layer '1.features.0.0.9'" in result.output
    assert "did you mean" in result.output and "1.features.0.0.0" in result.output


def test_inspect_refuses_a_run_that_is_not_a_vision_model(looked_inside):
    lab_run, store = looked_inside
    result = CliRunner().invoke(app, ["inspect", lab_run.id, "--home", str(store.root)])
    assert result.exit_code == 2
    assert "no vision model of its own" in result.output


def test_corrupt_weights_are_reported_not_unpickled(digits_run, tmp_path):
    from deepscape.runs import Run

    copy = tmp_path / digits_run.id
    shutil.copytree(digits_run.dir, copy)
    (copy / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(inside.InspectError, match="corrupt"):
        inside.load_trained(Run(copy))
    (copy / "model.safetensors").unlink()
    with pytest.raises(inside.InspectError, match="no weights"):
        inside.load_trained(Run(copy))
