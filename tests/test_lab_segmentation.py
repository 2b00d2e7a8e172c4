"""vision/201/segmentation: the U-Net keeps the image's size, Dice and IoU score what they say, a
mask moves with its image, the built scenes are exact, a small U-Net learns them and beats the
classical threshold, bad folders are answered in one line, and the page masks an upload."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.functional.classification import multiclass_jaccard_index

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable, TensorSplit, get_dataset
from deepscape.data.augment import PairedCrop, PairedFlips
from deepscape.data.masks import KINDS, build_scenes, texture_pages
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.lab import run_lab
from deepscape.labs.vision.l201_segmentation import PretrainedUNet, UNet, masker
from deepscape.labs.vision.l201_segmentation_baseline import OtsuBaseline, per_image_iou
from deepscape.serve import BadImage, build_app
from deepscape.tasks import Segmentation, soft_dice_loss

SEGMENTATION = "vision/201/segmentation"
ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi-membrane"

needs_fashion = pytest.mark.skipif(
    not FASHION_DEBIAN_DIR.is_dir() and not os.environ.get("CI"),
    reason="needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist",
)


def test_the_unet_gives_every_pixel_its_class_scores_at_any_image_size():
    unet = UNet(in_channels=3, num_classes=5, width=4, levels=3).eval()
    for h, w in [(64, 64), (37, 50), (9, 17)]:  # not multiples of 8: padded, then cropped back
        assert unet(torch.rand(2, 3, h, w)).shape == (2, 5, h, w)


def test_the_pretrained_encoders_unet_takes_grey_images_of_any_size():
    unet = PretrainedUNet(in_channels=1, num_classes=3, width=8).eval()  # weights offline
    with torch.no_grad():
        for h, w in [(64, 64), (50, 70)]:
            assert unet(torch.rand(2, 1, h, w)).shape == (2, 3, h, w)
    assert unet.encoder.feature_info.reduction() == [2, 4, 8, 16, 32]


def test_dice_loss_and_the_metrics_score_a_perfect_and_a_wrong_mask():
    masks = torch.randint(0, 3, (4, 16, 16))
    perfect = F.one_hot(masks, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(perfect, masks) < 1e-3
    assert soft_dice_loss(-perfect, masks) > 0.99  # every pixel's true class scored lowest
    task = Segmentation(3)
    metrics = task.metrics()
    task.update(metrics, perfect, (None, masks))
    assert {k: float(m.compute()) for k, m in metrics.items()} == {
        "miou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0}  # fmt: skip


def test_dice_loss_weighs_a_rare_class_as_much_as_the_background():
    """Missing a class that holds 1 % of the pixels moves the cross-entropy by 1 % of what one
    wrong pixel costs, and the Dice loss by half its range (two classes, each counts half)."""
    masks = torch.zeros(1, 10, 10, dtype=torch.long)
    masks[0, 0, 0] = 1
    right = F.one_hot(masks, 2).permute(0, 3, 1, 2).float() * 8
    says_background = F.one_hot(torch.zeros_like(masks), 2).permute(0, 3, 1, 2).float() * 8
    cross_entropy = F.cross_entropy(says_background, masks) - F.cross_entropy(right, masks)
    assert cross_entropy == pytest.approx(0.08, abs=1e-3)  # a wrong pixel: 8 nats more, ÷ 100
    dice = soft_dice_loss(says_background, masks) - soft_dice_loss(right, masks)
    assert dice > 0.45


def test_per_image_iou_matches_torchmetrics_on_each_image():
    truth, predicted = torch.randint(0, 4, (5, 12, 12)), torch.randint(0, 4, (5, 12, 12))
    ours = per_image_iou(predicted, truth, 4)
    for i in range(5):
        theirs = multiclass_jaccard_index(predicted[i], truth[i], 4, average="macro")
        torch.testing.assert_close(ours[i].float(), theirs, atol=1e-5, rtol=0)


def test_a_mask_moves_with_its_image():
    images = torch.rand(32, 2, 20, 20)
    masks = (images[:, 0] * 7).long()  # each pixel's class is written in its image
    for move in (PairedFlips(), PairedCrop(12)):
        moved, moved_masks = move((images, masks))
        assert torch.equal((moved[:, 0] * 7).long(), moved_masks)
        assert not torch.equal(moved[:, :, :12, :12], images[:, :, :12, :12])


def test_built_scenes_are_exact_and_the_same_every_time():
    items = torch.zeros(4, 1, 28, 28)
    items[:, :, 6:22, 8:20] = 0.8  # a bright rectangle: what a pasted item is made of
    labels = torch.tensor([1, 5, 8, 0])  # trouser, sandal (footwear), bag, T-shirt (top)
    pages = [page[:128] for page in texture_pages().values()]
    scenes, masks = build_scenes(items, labels, pages, 40, seed=1)
    again, masks_again = build_scenes(items, labels, pages, 40, seed=1)
    assert np.array_equal(scenes, again) and np.array_equal(masks, masks_again)
    assert scenes.shape == (40, 64, 64) and scenes.min() >= 0 and scenes.max() <= 1
    assert (
        set(np.unique(masks)) <= set(range(len(KINDS) + 1)) and (masks > 0).any(axis=(1, 2)).all()
    )
    inside = scenes[masks > 0]  # where the mask says item: the item's pixels (its edges blurred
    assert (inside > 0.1).all() and (inside < 0.81).all()  # by resizing, its inside exact)
    assert np.isclose(inside, 0.8, atol=0.01).mean() > 0.6


@needs_fashion
def test_a_small_unet_learns_the_built_scenes_and_beats_the_threshold(store):
    run = run_lab(
        SEGMENTATION,
        ["train_images=800", "width=8", "levels=3", "epochs=4", "batch_size=16", "threads=2"],
        store=store,
    )
    metrics = run.summary["metrics"]
    # 200 steps: the items are found (object IoU 0.77 here), their kinds barely begun (mIoU 0.31)
    assert metrics["test_object_iou"] > 0.6
    assert metrics["test_object_iou"] > metrics["baseline_object_iou"] + 0.3
    assert metrics["test_miou"] > 0.25  # calling every pixel background scores 0.17
    assert metrics["test_pixel_accuracy"] > 0.87  # all background: 0.855 of the pixels
    figures = {p.stem for p in (run.dir / "figures").glob("*.png")}
    assert {"worst_first", "iou_per_class", "curves"} <= figures
    respond, classes = masker(run)
    photo = Image.fromarray((np.random.default_rng(0).random((50, 70)) * 255).astype(np.uint8))
    pictures, said = respond(photo)
    assert [p.size for p in pictures] == [(70, 50)] * 3 and classes[0] in said
    with pytest.raises(BadImage, match="at least 16 pixels"):
        respond(photo.resize((10, 10)))
    assert build_app(run.id, store=store) is not None  # serve finds the lab's own page


@pytest.mark.skipif(not ISBI.is_dir(), reason="needs ../shared/data/isbi-membrane")
def test_isbi_holds_out_six_images_and_the_threshold_finds_dark_membranes():
    data = get_dataset("isbi-membrane", ISBI)
    assert data.sizes == {"train": 21, "validation": 3, "test": 6}
    assert data.classes == ["membrane", "cell"]
    assert 0.15 < (data.test.targets == 0).float().mean() < 0.3  # membranes: about a fifth
    baseline = OtsuBaseline(data.train, [0], images=4)
    assert baseline.dark


def write_pair(folder: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{stem}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def test_a_mask_folder_loads_and_black_and_white_masks_make_two_classes(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        write_pair(tmp_path, f"{i:02d}", (rng.random((20, 24)) * 255).astype(np.uint8),
                   np.where(rng.random((20, 24)) > 0.5, 255, 0).astype(np.uint8))  # fmt: skip
    data = get_dataset("mask-folder", tmp_path)
    assert sum(data.sizes.values()) == 8 and data.classes == ["class 0", "class 1"]
    assert set(torch.unique(data.train.targets).tolist()) == {0, 1}


def test_bad_mask_folders_say_what_to_fix(tmp_path):
    grey = np.zeros((20, 24), dtype=np.uint8)
    write_pair(tmp_path / "size", "a", grey, np.zeros((10, 24), dtype=np.uint8))
    with pytest.raises(DataUnavailable, match="a mask must match its image pixel for pixel"):
        get_dataset("mask-folder", tmp_path / "size")

    write_pair(tmp_path / "range", "a", grey, np.full((20, 24), 3, dtype=np.uint8))
    (tmp_path / "range" / "classes.txt").write_text("sky\nsea\n")
    with pytest.raises(DataUnavailable, match=r"outside the 2 classes of classes\.txt"):
        get_dataset("mask-folder", tmp_path / "range")

    write_pair(tmp_path / "missing", "a", grey, grey)
    Image.fromarray(grey).save(tmp_path / "missing" / "images" / "b.png")
    with pytest.raises(DataUnavailable, match=r"b\.png has no mask"):
        get_dataset("mask-folder", tmp_path / "missing")

    with pytest.raises(DataUnavailable, match="needs data_dir=FOLDER holding images/ and masks/"):
        get_dataset("mask-folder", tmp_path)


def test_a_crop_larger_than_the_images_is_refused(tmp_path, store):
    rng = np.random.default_rng(0)
    for i in range(6):
        write_pair(tmp_path, str(i), (rng.random((20, 24)) * 255).astype(np.uint8),
                   (rng.random((20, 24)) > 0.5).astype(np.uint8))  # fmt: skip
    with pytest.raises(ConfigError, match="crop=32 is larger than the 20-pixel images"):
        run_lab(SEGMENTATION, ["dataset=mask-folder", f"data_dir={tmp_path}", "crop=32"],
                store=store)  # fmt: skip


def test_oxford_pets_offline_says_how_to_get_them(tmp_path):
    with pytest.raises(DataUnavailable, match="go online"):
        get_dataset("oxford-iiit-pet", tmp_path)


def test_oxford_pets_are_read_from_torchvisions_layout_trimaps_as_three_classes(tmp_path):
    """The folder as torchvision unpacks it, with photos of several sizes."""
    root = tmp_path / "oxford-iiit-pet"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, names in {
        "trainval": [f"cat_{i}" for i in range(10)],
        "test": ["dog_1", "dog_2"],
    }.items():
        lines = []
        for n, name in enumerate(names):
            h, w = 90 + 10 * n, 120 - 5 * n
            Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(
                root / "images" / f"{name}.jpg"
            )
            Image.fromarray(rng.integers(1, 4, (h, w)).astype(np.uint8)).save(
                root / "annotations" / "trimaps" / f"{name}.png"
            )
            lines.append(f"{name} 1 1 1")
        (root / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    data = get_dataset("oxford-iiit-pet", tmp_path)
    assert data.sizes == {"train": 9, "validation": 1, "test": 2}
    assert data.train.inputs.shape == (9, 3, 128, 128) and data.test.targets.shape == (2, 128, 128)
    assert data.classes == ["pet", "background", "border"]
    assert set(torch.unique(data.train.targets).tolist()) == {0, 1, 2}


def test_the_otsu_baseline_picks_the_side_of_the_threshold_that_is_the_object():
    images = torch.full((6, 1, 32, 32), 0.8)
    masks = torch.zeros(6, 32, 32, dtype=torch.long)
    images[:, :, 8:20, 8:20], masks[:, 8:20, 8:20] = 0.2, 1  # dark squares on a light ground
    images += 0.05 * torch.rand_like(images)
    baseline = OtsuBaseline(TensorSplit(images, masks), [1])
    assert baseline.dark and baseline.train_iou > 0.95
    assert (baseline.predict(images) == masks.bool().numpy()).mean() > 0.98
