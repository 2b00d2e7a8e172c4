"""vision/201/attention: attention written out matches PyTorch's, rollout is a distribution over
the patches, a small ViT learns real Fashion-MNIST, and a bad patch size says what would fit."""

from __future__ import annotations

import os

import pytest
import torch

from deepscape.config import ConfigError
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.lab import run_lab
from deepscape.labs.vision.l201_attention import (
    Config,
    attention_check,
    attention_rollout,
    rollout_maps,
    stem_for,
)
from deepscape.models.gpt import CausalSelfAttention
from deepscape.models.vit import ViT, ViTConfig
from deepscape.runs import RunStore

ATTENTION = "vision/201/attention"
TINY = ["patch_size=7", "dim=32", "vit_depth=2", "heads=2", "threads=2"]

needs_fashion = pytest.mark.skipif(
    not FASHION_DEBIAN_DIR.is_dir() and not os.environ.get("CI"),
    reason="needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist",
)


def test_attention_written_out_matches_sdpa_and_multihead_attention():
    errors = attention_check()
    assert errors["vs_sdpa"] < 1e-12
    assert errors["vs_multihead_attention"] < 1e-12


def test_the_unmasked_block_gives_the_same_output_written_or_fused():
    torch.manual_seed(0)
    x = torch.randn(3, 10, 48, dtype=torch.float64)
    written = CausalSelfAttention(n_embd=48, n_head=4, causal=False, attention="written").double()
    fused = CausalSelfAttention(n_embd=48, n_head=4, causal=False, attention="sdpa").double()
    fused.load_state_dict(written.state_dict())
    torch.testing.assert_close(written(x), fused(x), rtol=0, atol=1e-12)
    # unmasked: the first token's output depends on the last token (a causal one's would not)
    y = x.clone()
    y[:, -1] += 1
    assert not torch.allclose(written(x)[:, 0], written(y)[:, 0])


@pytest.mark.parametrize("stem", ["patches", "convolutions"])
def test_rollout_rows_are_distributions_over_the_tokens(stem):
    config = ViTConfig(image_size=28, channels=1, patch_size=7, dim=32, depth=3, heads=4, stem=stem)
    vit = ViT(config)
    images = torch.rand(5, 1, 28, 28)
    maps = vit.attention_maps(images)
    assert maps.shape == (5, 3, 4, 17, 17)  # 16 patches and the class token
    rollout = attention_rollout(maps)
    assert rollout.shape == (5, 17, 17)
    assert (rollout >= 0).all()
    torch.testing.assert_close(rollout.sum(-1), torch.ones(5, 17))
    assert rollout_maps(vit, images).shape == (5, 28, 28)


def test_a_patch_size_that_does_not_divide_the_image_names_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        ViTConfig(image_size=28, channels=1, patch_size=5)
    message = str(error.value)
    assert "\n" not in message
    assert "patch_size=5" in message and "valid sizes: 1, 2, 4, 7, 14, 28" in message


def test_the_convolutional_stem_halves_the_image_down_to_the_patch_grid():
    for patch_size, image_size, halvings in [(7, 28, 3), (4, 32, 2), (2, 28, 1), (1, 28, 0)]:
        config = ViTConfig(image_size=image_size, channels=3, patch_size=patch_size, dim=64,
                           heads=4, stem="convolutions")  # fmt: skip
        assert config.halvings == halvings
        grid = ViT(config).patch_embed(torch.rand(2, 3, image_size, image_size)).shape
        assert grid == (2, 64, config.grid, config.grid)
    with pytest.raises(
        ConfigError, match="stem=convolutions halves the 24-pixel side 3 times"
    ) as e:
        ViTConfig(image_size=24, channels=1, patch_size=6, stem="convolutions")
    assert "\n" not in str(e.value) and "or stem=patches" in str(e.value)


def test_the_default_stem_is_convolutions_but_patches_where_the_vit_meets_the_cnn():
    assert stem_for(Config()) == "convolutions"
    assert stem_for(Config(method="sizes")) == "patches"  # the prior patches lack is the lesson
    assert stem_for(Config(method="sizes", stem="convolutions")) == "convolutions"
    assert stem_for(Config(stem="patches")) == "patches"


@needs_fashion
@pytest.mark.slow
def test_a_small_vit_learns_real_fashion_mnist(tmp_path):
    recipe = ["labelled=4000", "epochs=6", "batch_size=64", "lr=5e-3", "eval_batches=4",
              "flip_average=false"]  # fmt: skip
    run = run_lab(
        ATTENTION,
        [*TINY, *recipe, "figures=false"],
        store=RunStore(tmp_path),
        show_progress=False,
    )
    metrics = run.summary["metrics"]
    assert metrics["test_accuracy"] > 0.5  # chance is 0.10; this one reached 0.62
    assert run.summary["attention_check"]["vs_sdpa"] < 1e-5


@needs_fashion
def test_a_bad_patch_size_stops_the_run_before_training(tmp_path):
    with pytest.raises(ConfigError, match="valid sizes: 1, 2, 4, 7, 14, 28"):
        run_lab(ATTENTION, ["patch_size=5"], store=RunStore(tmp_path), show_progress=False)
