"""The core both transfer labs stand on: the sizes of a learning curve and the gain read off it,
the linear probe, the cache's keys and the device and precision a config asks for."""

from __future__ import annotations

import pytest
import torch

from deepscape.cache import cache_key
from deepscape.config import ConfigError, TrainConfig
from deepscape.devices import device_and_precision, resolve_device, resolve_precision
from deepscape.learning_curve import curve_metrics, gain_at, parse_sizes
from deepscape.probe import fit_probe


def test_sizes_are_sorted_clipped_and_all_means_the_whole_split():
    assert parse_sizes("500, 100,all,100", 300, unit="images") == [100, 300]
    assert parse_sizes("0,50", 120) == [50, 120]


@pytest.mark.parametrize("text", ["5", "lots", "-100", "100,", "1e3"])
def test_a_bad_size_is_a_one_line_error_that_names_the_unit(text):
    with pytest.raises(ConfigError, match=r"is not a number of sentences ≥ 10, or 0 or all$"):
        parse_sizes(text, 1000, unit="sentences")


def test_the_gain_is_read_at_the_largest_size_both_methods_have():
    curve = {"scratch": {50: 0.5, 200: 0.6, 1000: 0.7}, "finetune": {50: 0.6, 200: 0.8}}
    assert gain_at(curve["finetune"], curve["scratch"], most=1000) == {
        "gain": pytest.approx(0.2),
        "compared_at": 200,
    }
    assert gain_at(curve["finetune"], curve["scratch"], most=40) == {}
    assert curve_metrics(curve) == {
        "scratch_50": 0.5, "scratch_200": 0.6, "scratch_1000": 0.7,
        "finetune_50": 0.6, "finetune_200": 0.8,
    }  # fmt: skip


def test_a_probe_chooses_its_l2_on_validation_and_reports_test():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=generator) * 3

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 3
        return centres[y] + torch.randn(n, 8, generator=generator), y

    probe = fit_probe(split(60), split(30), split(30), strengths=(1e-3, 1e-2))
    assert probe.l2 in (1e-3, 1e-2)
    assert probe.test_accuracy >= 0.9 and probe.test_loss < 0.5
    assert probe.head.weight.shape == (3, 8)


def test_cache_keys_name_what_they_hold_and_hash_what_the_size_cannot_tell():
    assert cache_key("tf_efficientnet_lite0-96px", "cifar10", "test", 500) == (
        "tf_efficientnet_lite0-96px-cifar10-test500"
    )
    one = cache_key("sentence-transformers/all-MiniLM-L6-v2", "mr", "train", 2, "fp32", "a", "b")
    assert one.startswith("sentence-transformers--all-MiniLM-L6-v2-mr-train2-")
    assert one != cache_key("sentence-transformers/all-MiniLM-L6-v2", "mr", "train", 2, "fp32",
                            "a", "c")  # fmt: skip


def test_device_and_precision_are_resolved_for_this_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("fp16", gpu=False) == "fp16"
    assert resolve_precision("auto", gpu=False) in ("bf16", "fp32")
    device, precision = device_and_precision(TrainConfig(device="cpu", precision="bf16"))
    assert (device.type, precision) == ("cpu", "bf16")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="device=cuda but no GPU"):
            resolve_device("cuda")
