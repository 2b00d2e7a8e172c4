"""Datasets: fixed, seeded splits of real data; IDX files read or refused with a clear message."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from deepscape.data import (
    SPLIT_SEED,
    DataUnavailable,
    Splits,
    TensorSplit,
    available,
    get_dataset,
    holdout,
    whole_batch,
)
from deepscape.data.augment import RandomAffine
from deepscape.data.vision import MNIST_FILES, find_file, read_idx

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def digits() -> Splits:
    return get_dataset("digits")


# -- the embedded digits ---------------------------------------------------------------------------
def test_digits_splits_cover_all_1797_images(digits):
    assert digits.sizes == {"train": 1293, "validation": 144, "test": 360}
    assert sum(digits.sizes.values()) == 1797
    assert digits.classes == [str(d) for d in range(10)]
    assert digits.modality == "image"
    assert "load_digits" in digits.source


def test_digits_are_float_images_in_unit_range(digits):
    for split in (digits.train, digits.validation, digits.test):
        assert split.inputs.dtype == torch.float32
        assert split.inputs.shape[1:] == (1, 8, 8)
        assert split.inputs.min() >= 0 and split.inputs.max() <= 1
        assert split.targets.dtype == torch.long
        assert set(split.targets.tolist()) == set(range(10))  # stratified: every class in each
    assert digits.train.inputs.max() == 1  # 16 grey levels scaled, not left as 0..16


def test_digits_splits_do_not_overlap(digits):
    def rows(split: TensorSplit) -> set[bytes]:
        return {x.numpy().tobytes() for x in split.inputs}

    train, validation, test = rows(digits.train), rows(digits.validation), rows(digits.test)
    assert len(train) == 1293  # the 1,797 images are all distinct...
    assert not test & train  # ...so no image may sit in two splits
    assert not validation & train
    assert not test & validation


def test_digits_split_is_the_same_every_time(digits):
    again = get_dataset("digits")
    assert SPLIT_SEED == 0
    for name in ("train", "validation", "test"):
        assert torch.equal(getattr(digits, name).inputs, getattr(again, name).inputs)
        assert torch.equal(getattr(digits, name).targets, getattr(again, name).targets)


def test_a_split_yields_whole_batches(digits):
    inputs, targets = digits.test.__getitems__([3, 1, 2])
    assert inputs.shape == (3, 1, 8, 8)
    assert torch.equal(targets, digits.test.targets[[3, 1, 2]])
    single_input, single_target = digits.test[5]
    assert torch.equal(single_input, digits.test.inputs[5])
    assert single_target == digits.test.targets[5]
    assert whole_batch((inputs, targets)) == (inputs, targets)
    loader = torch.utils.data.DataLoader(digits.test, batch_size=64, collate_fn=whole_batch)
    batches = list(loader)
    assert [len(t) for _, t in batches] == [64] * 5 + [40]
    assert torch.equal(torch.cat([t for _, t in batches]), digits.test.targets)


def test_a_split_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        TensorSplit(torch.zeros(3, 1, 2, 2), torch.zeros(2))


def test_mnist_5k_is_embedded():
    data = get_dataset("mnist-5k")
    assert sum(data.sizes.values()) == 5000
    assert data.sizes["test"] == 1000
    assert data.train.inputs.shape[1:] == (1, 28, 28)
    assert data.train.inputs.min() >= 0 and data.train.inputs.max() <= 1
    assert set(data.test.targets.tolist()) == set(range(10))


# -- the registry ----------------------------------------------------------------------------------
def test_available_names_and_describes_each_dataset():
    names = available()
    assert {"digits", "mnist-5k", "mnist"} <= set(names)
    assert all(description.strip() for description in names.values())


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(DataUnavailable) as error:
        get_dataset("mnits")
    assert str(error.value).startswith("unknown dataset 'mnits' — did you mean 'mnist'?")
    assert "digits, mnist-5k, mnist" in str(error.value)


def test_data_dir_must_be_a_folder(tmp_path):
    with pytest.raises(DataUnavailable, match=f"data_dir={tmp_path / 'nowhere'} is not a folder"):
        get_dataset("mnist", tmp_path / "nowhere")


def test_mnist_offline_without_data_dir_says_what_to_do():
    with pytest.raises(DataUnavailable) as error:
        get_dataset("mnist")
    message = str(error.value)
    assert "data_dir=" in message
    assert "mnist-5k" in message
    assert "HF_HUB_OFFLINE=1" in message


# -- IDX files -------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, *, type_code: int = 0x08) -> Path:
    """An IDX file as the format says: 0, 0, type code, ndim, big-endian sizes, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_images(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    result = read_idx(write_idx(tmp_path / name, images))
    assert result.dtype == np.uint8
    assert result.shape == (5, 28, 28)
    assert np.array_equal(result, images)


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_read_idx_labels(tmp_path, name):
    labels = np.array([5, 0, 4, 1, 9, 2], dtype=np.uint8)
    result = read_idx(write_idx(tmp_path / name, labels))
    assert result.shape == (6,)
    assert result.tolist() == [5, 0, 4, 1, 9, 2]


def test_read_idx_big_endian_types(tmp_path):
    values = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    result = read_idx(write_idx(tmp_path / "ints", values, type_code=0x0C))
    assert result.tolist() == [[1, -2], [300000, 4]]
    floats = np.array([0.5, -1.25], dtype=np.float64)
    assert read_idx(write_idx(tmp_path / "floats", floats, type_code=0x0E)).tolist() == [0.5, -1.25]


@pytest.mark.parametrize(
    "content",
    [b"\x1f\x8b\x08\x03whatever", b"\x00\x00\x07\x01\x00\x00\x00\x01x", b"PK\x03\x04", b"\x00"],
    ids=["gzip-magic-unzipped", "unknown-type", "zip", "too-short"],
)
def test_read_idx_refuses_a_bad_magic_number(tmp_path, content):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataUnavailable, match=f"{path} is not an IDX file \\(bad magic number\\)"):
        read_idx(path)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_refuses_a_truncated_file(tmp_path, suffix):
    path = write_idx(tmp_path / f"images{suffix}", np.zeros((4, 3, 3), dtype=np.uint8))
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    cut = raw[:-5]
    path.write_bytes(gzip.compress(cut) if suffix else cut)
    with pytest.raises(DataUnavailable) as error:
        read_idx(path)
    message = str(error.value)
    assert message.startswith(f"{path} is truncated") and "(4, 3, 3)" in message


def _tiny_mnist(folder: Path, *, train: int, test: int, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for split, count in (("train", train), ("test", test)):
        images_name, labels_name = MNIST_FILES[split]
        write_idx(
            folder / (images_name + suffix),
            rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        )
        write_idx(folder / (labels_name + suffix), (np.arange(count) % 10).astype(np.uint8))
    return folder


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_from_a_data_dir_of_idx_files(tmp_path, gz):
    # 120 train images: the smallest count whose 1/12 validation share holds each class once
    folder = _tiny_mnist(tmp_path / "mnist", train=120, test=20, gz=gz)
    data = get_dataset("mnist", folder)
    assert data.sizes == {"train": 110, "validation": 10, "test": 20}
    assert data.train.inputs.shape == (110, 1, 28, 28)
    assert data.test.inputs.shape == (20, 1, 28, 28)
    assert data.train.inputs.min() >= 0 and data.train.inputs.max() <= 1
    assert data.test.targets.tolist() == [i % 10 for i in range(20)]  # test keeps file order
    assert str(folder) in data.source
    assert get_dataset("mnist", str(folder)).sizes == data.sizes  # a str works too


def test_mnist_data_dir_accepts_the_dotted_spelling(tmp_path):
    folder = _tiny_mnist(tmp_path / "mnist", train=120, test=20)
    for path in folder.iterdir():
        path.rename(folder / path.name.replace("-idx", ".idx"))
    assert find_file(folder, "t10k-images-idx3-ubyte") == folder / "t10k-images.idx3-ubyte"
    assert get_dataset("mnist", folder).sizes["test"] == 20


def test_mnist_data_dir_without_the_files_names_the_missing_one(tmp_path):
    with pytest.raises(DataUnavailable) as error:
        get_dataset("mnist", tmp_path)
    assert str(error.value) == (
        f"{tmp_path} has no train-images-idx3-ubyte[.gz]: it should hold the four MNIST IDX files"
    )


# -- augmentation ----------------------------------------------------------------------------------
def test_random_affine_moves_each_image_differently_and_keeps_shape(digits):
    images = digits.train.inputs[:1].repeat(8, 1, 1, 1)
    torch.manual_seed(0)
    moved = RandomAffine(degrees=10, shift=0.1, scale=0.1)(images)
    assert moved.shape == images.shape
    assert not torch.equal(moved, images)
    assert len({m.numpy().tobytes() for m in moved}) == 8  # a fresh draw per image
    still = RandomAffine(degrees=0, shift=0, scale=0)(images)
    assert torch.allclose(still, images, atol=1e-5)  # the identity transform


@pytest.mark.slow
def test_full_mnist_from_the_shared_folder():
    if not MNIST_DIR.is_dir():
        pytest.skip(f"{MNIST_DIR} is absent (it is optional benchmark data)")
    data = get_dataset("mnist", MNIST_DIR)
    assert data.sizes == {"train": 55000, "validation": 5000, "test": 10000}
    assert data.train.inputs.shape[1:] == (1, 28, 28)
    assert data.test.targets[:5].tolist() == [7, 2, 1, 0, 4]  # the published first test labels


@pytest.mark.parametrize(
    "content",
    [b"\x00\x00\x08\x03\x00\x00", b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\x00"],
    ids=["cut-in-header", "cut-mid-value"],
)
def test_read_idx_reports_any_malformed_file_as_unavailable(tmp_path, content):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataUnavailable, match="truncated or corrupt"):
        read_idx(path)


def test_read_idx_reports_a_broken_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataUnavailable, match="cannot be read"):
        read_idx(path)


def test_holdout_of_a_tiny_set_still_splits():
    inputs, targets = np.arange(40), np.arange(40) % 10
    kept, held, _, _ = holdout(inputs, targets, 0.1)
    assert len(held) == 4 and len(kept) == 36 and not set(kept) & set(held)
