"""vision/201/super-resolution: the Y channel and PSNR as the published tables compute them, pixel
shuffle's layout, a short training run that beats bicubic on held-out photos, the serve page, and
bad input answered in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.lab import run_lab
from deepscape.labs.vision.l201_super_resolution import page_for
from deepscape.labs.vision.l201_super_resolution_data import as_tensor, degrade, measured, y_channel
from deepscape.labs.vision.l201_super_resolution_figures import psnr
from deepscape.labs.vision.l201_super_resolution_models import EDSR, ESPCN, SRCNN, bicubic
from deepscape.runs import RunStore

SR = "vision/201/super-resolution"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr"
# ~300 steps of a 2-block EDSR: ~15 s on one core
SHORT = ["epochs=2", "patches=2400", "blocks=2", "threads=1", "val_patches=16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    store = RunStore(tmp_path_factory.mktemp("sr"))
    return run_lab(SR, SHORT, store=store, show_progress=False)


def test_a_short_run_beats_bicubic_on_held_out_photos(trained):
    metrics = trained.summary["metrics"]
    assert trained.summary["data"] == {"name": "photos", "train": 3, "validation": 1, "photos": 2}
    assert metrics["bicubic_psnr_db"] == pytest.approx(metrics["photos_bicubic_psnr_db"])
    assert metrics["test_psnr_db"] > metrics["bicubic_psnr_db"] + 0.2  # this one: +0.33 dB
    assert metrics["psnr_gain_db"] == pytest.approx(
        metrics["test_psnr_db"] - metrics["bicubic_psnr_db"]
    )
    assert metrics["val_psnr_db"] > metrics["bicubic_val_psnr_db"]
    for name in ("crops", "psnr_curve", "curves"):
        assert trained.figure_path(name).is_file()


def test_the_y_channel_is_matlabs_rgb2ycbcr_and_psnr_is_skimages():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    noisy = np.clip(truth.astype(int) + rng.integers(-20, 21, truth.shape), 0, 255).astype(np.uint8)
    luma = y_channel(as_tensor(truth)[None])[0, 0].numpy()
    np.testing.assert_allclose(luma * 255, rgb2ycbcr(truth)[..., 0], atol=1e-3)
    assert luma.min() >= 16 / 255 and luma.max() <= 235 / 255
    # PSNR of the Y channel, 3 pixels of border cut, as SR papers' code computes it
    y_true, y_noisy = (rgb2ycbcr(x)[3:-3, 3:-3, 0] for x in (truth, noisy))
    expected = peak_signal_noise_ratio(y_true, y_noisy, data_range=255)
    by_hand = 10 * np.log10(255**2 / np.mean((y_true - y_noisy) ** 2))
    assert psnr(as_tensor(noisy), as_tensor(truth), 3) == pytest.approx(expected, abs=1e-3)
    assert expected == pytest.approx(by_hand)
    assert measured(3)(as_tensor(truth)[None]).shape == (1, 1, 34, 46)


def test_the_degradation_crops_to_the_scale_and_shrinks_like_pil():
    photo = np.asarray(Image.open(SHARED / "Set5" / "bird.png"))[:100, :101] if SHARED.is_dir() \
        else np.random.default_rng(1).integers(0, 256, (100, 101, 3), dtype=np.uint8)  # fmt: skip
    pair = degrade("bird", as_tensor(photo), 3)
    assert pair.high.shape == (3, 99, 99) and pair.low.shape == (3, 33, 33)
    assert torch.equal(pair.low, (pair.low * 255).round() / 255)  # 8 bits, as saved
    pil = np.asarray(Image.fromarray(photo[:99, :99]).resize((33, 33), Image.Resampling.BICUBIC))
    ours = (pair.low.permute(1, 2, 0).numpy() * 255).astype(int)
    assert np.abs(ours - pil).mean() < 0.5


def test_pixel_shuffle_lays_the_s_squared_maps_out_as_an_s_times_larger_image():
    low = torch.rand(2, 3, 10, 12)
    for scale in (2, 3, 4):
        for model in (SRCNN(scale), ESPCN(scale), EDSR(scale, width=8, blocks=1)):
            assert model(low).shape == (2, 3, 10 * scale, 12 * scale)
    shuffle = torch.nn.PixelShuffle(3)
    maps = torch.arange(2 * 9 * 4 * 5, dtype=torch.float32).view(1, 2 * 9, 4, 5)
    image = shuffle(maps)
    # channel (c, i, j) of low-resolution pixel (y, x) is pixel (3y + i, 3x + j) of colour c
    c, i, j, y, x = 1, 2, 0, 3, 4
    assert image[0, c, 3 * y + i, 3 * x + j] == maps[0, c * 9 + i * 3 + j, y, x]
    # untrained, with the global skip at zero output the models are bicubic
    espcn = ESPCN(3)
    torch.nn.init.zeros_(espcn.body[4].weight)
    torch.nn.init.zeros_(espcn.body[4].bias)
    torch.testing.assert_close(espcn(low), bicubic(low, 3))


def test_bad_input_is_one_line_that_names_the_fix(tmp_path, store):
    for items, fix in [
        (["scale=1"], "integer ≥ 2"),
        (["patch_size=50"], "try patch_size=51"),
        (["patch_size=600"], "lower patch_size"),
        (["dataset=set5"], "data_dir=../shared/data/sr"),
    ]:
        with pytest.raises(ConfigError) as error:
            run_lab(SR, items, store=store, show_progress=False)
        assert fix in str(error.value) and "\n" not in str(error.value), items
    with pytest.raises(ConfigError, match="is not an int"):
        run_lab(SR, ["scale=2.5"], store=store, show_progress=False)
    (tmp_path / "Sun_Hays80").mkdir()
    (tmp_path / "Sun_Hays80" / "notes.txt").write_text("no photos here")
    with pytest.raises(DataUnavailable, match="no images") as error:
        run_lab(SR, [f"data_dir={tmp_path}"], store=store, show_progress=False)
    assert "\n" not in str(error.value)
    assert store.list() == []  # nothing trained, nothing kept


def test_the_page_enlarges_an_upload_beside_bicubic(trained, tmp_path):
    app = page_for(trained)
    (predict,) = [f.fn for f in app.fns.values() if f.api_name == "predict"]
    upload = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 30, 3), np.uint8)).save(upload)
    plain, model, said = predict(str(upload))
    assert plain.size == model.size == (90, 60)
    assert "30×20 → 90×60" in said and "dB" in said
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(Exception, match="at least 8 pixels"):
        predict(str(tmp_path / "tiny.png"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/sr (Sun_Hays80, Set5, Set14)")
def test_the_benchmark_folders_are_read_and_bicubic_matches_the_published_table(store):
    run = run_lab(
        SR,
        [f"data_dir={SHARED}", "dataset=set5", "method=bicubic", "threads=1"],
        store=store,
        show_progress=False,
    )
    metrics = run.summary["metrics"]
    assert run.summary["data"]["train"] == 78 and run.summary["data"]["set14"] == 14
    assert metrics["test_psnr_db"] == metrics["bicubic_psnr_db"]
    # published with MATLAB's imresize: 30.39 dB on Set5 and 27.54 dB on Set14 at ×3
    assert metrics["bicubic_psnr_db"] == pytest.approx(30.39, abs=0.15)
    assert metrics["set14_bicubic_psnr_db"] == pytest.approx(27.54, abs=0.15)
