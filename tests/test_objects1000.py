"""vision/101/objects1000 offline: the imagenet-folder reader, bad files, and the lab end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.data import DataUnavailable
from deepscape.data.imagenet import (
    SKIMAGE_PHOTOS,
    ImageFiles,
    UnreadableImage,
    batches,
    decode,
    fit_square,
    imagenet_folder,
    read_images,
)
from deepscape.inside import load_trained
from deepscape.lab import run_lab
from deepscape.models.pretrained import (
    PretrainedClassifier,
    imagenet_classes,
    imagenet_wnids,
    load_backbone,
)
from deepscape.runs import RunStore

LAB = "vision/101/objects1000"
QUICK = ["threads=1", "latency_runs=2"]  # inference on one core: another job may need the other
WNID = dict(zip(imagenet_classes(), imagenet_wnids(), strict=True))


@pytest.fixture(autouse=True)
def cached_here(tmp_path_factory, monkeypatch) -> None:
    """Converted weights in one folder for the whole session, never in ~/.cache."""
    monkeypatch.setenv("DEEPSCAPE_CACHE", str(tmp_path_factory.getbasetemp() / "weights-cache"))


def save(pixels, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory) -> Path:
    """Real photos in both layouts (5 labelled, all of known classes), and 6 files to skip."""
    root = tmp_path_factory.mktemp("imagenet")
    save(skimage.data.chelsea(), root / WNID["tabby"] / "chelsea.JPEG")
    save(skimage.data.coffee(), root / WNID["espresso"] / "coffee.jpg")
    save(skimage.data.rocket(), root / WNID["missile"] / "rocket.png")
    save(skimage.data.camera(), root / f"{WNID['tripod']}_camera.png")
    save(skimage.data.astronaut(), root / f"{WNID['space shuttle']}_astronaut.JPEG")
    save(skimage.data.coffee(), root / "n99999999" / "not-a-class.jpg")
    save(skimage.data.coffee(), root / "coffee-without-id.jpg")
    whole = (root / WNID["tabby"] / "chelsea.JPEG").read_bytes()
    (root / f"{WNID['tabby']}_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / f"{WNID['tabby']}_text.jpg").write_text("this is not a JPEG")
    (root / f"{WNID['tabby']}_empty.jpg").write_bytes(b"")
    (root / f"{WNID['tabby']}_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (root / "LOC_synset_mapping.txt").write_text("ignored: not an image by its suffix")
    return root


# -- the reader -----------------------------------------------------------------------------------
def test_both_layouts_are_read_and_bad_names_reported(imagenet_dir):
    images, skipped = imagenet_folder(imagenet_dir, size=64)
    labelled = {path.name: imagenet_classes()[label] for path, label in images.samples}
    assert labelled == {
        "chelsea.JPEG": "tabby",
        "coffee.jpg": "espresso",
        "rocket.png": "missile",
        f"{WNID['tripod']}_camera.png": "tripod",
        f"{WNID['space shuttle']}_astronaut.JPEG": "space shuttle",
        f"{WNID['tabby']}_truncated.jpg": "tabby",  # bad inside: found when decoded
        f"{WNID['tabby']}_text.jpg": "tabby",
        f"{WNID['tabby']}_empty.jpg": "tabby",
        f"{WNID['tabby']}_bad.png": "tabby",
    }
    reasons = {path.name: why for path, why in skipped}
    assert reasons == {
        "n99999999": "1 image in a folder not named by an ImageNet-1k class",
        "coffee-without-id.jpg": "the name does not start with a WordNet id (n01440764_…)",
    }


def test_bad_images_are_reported_and_skipped_never_fatal(imagenet_dir):
    images, _ = imagenet_folder(imagenet_dir, size=64)
    seen, skipped = 0, []
    for batch in batches(images, batch_size=4, show_progress=False):
        assert batch.images.shape == (len(batch.labels), 3, 64, 64)
        assert batch.images.min() >= 0 and batch.images.max() <= 1
        seen += len(batch.labels)
        skipped += batch.skipped
    assert seen == 5
    reasons = {path.name: why for path, why in skipped}
    assert reasons[f"{WNID['tabby']}_truncated.jpg"].startswith("OSError: image file is truncated")
    assert reasons[f"{WNID['tabby']}_text.jpg"] == "not an image PIL can read"
    assert reasons[f"{WNID['tabby']}_empty.jpg"] == "an empty file"
    assert f"{WNID['tabby']}_bad.png" in reasons
    assert len(reasons) == 4


def test_read_any_image_file_or_folder(imagenet_dir):
    read, skipped = read_images(imagenet_dir)
    assert len(read) == 7 and len(skipped) == 4  # every readable image, named or not
    (path, chelsea), *_ = [(p, i) for p, i in read if p.name == "chelsea.JPEG"]
    assert chelsea.shape == (3, 300, 451)  # whole, "c h w"
    one, none = read_images(path, size=100)
    assert one[0][1].shape == (3, 100, 100) and none == []
    grey = decode(imagenet_dir / f"{WNID['tripod']}_camera.png")
    assert grey.shape == (3, 512, 512) and torch.equal(grey[0], grey[2])


def test_no_images_is_one_clear_error(tmp_path):
    with pytest.raises(DataUnavailable, match="is not a folder"):
        imagenet_folder(tmp_path / "nowhere", size=64)
    save(skimage.data.coffee(), tmp_path / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataUnavailable, match=r"no images named by .* \(1 skipped\)"):
        imagenet_folder(tmp_path, size=64)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailable, match="no image files in"):
        read_images(tmp_path / "empty")


def test_blank_stand_ins_for_bad_files_keep_a_batch_whole(tmp_path):
    bad = tmp_path / "n01440764_bad.jpg"
    bad.write_text("text")
    image, label, problem = ImageFiles([(bad, 0)], size=32)[0]
    assert image.shape == (3, 32, 32) and label == -1 and problem


# -- the lab --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos_run(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("photos"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPSCAPE_CACHE", str(tmp_path_factory.getbasetemp() / "weights-cache"))
        return run_lab(LAB, QUICK, store=store, show_progress=False)


def test_the_lab_names_scikit_images_photos(photos_run):
    summary = photos_run.summary
    assert summary["status"] == "finished"
    predictions = json.loads((photos_run.dir / "predictions.json").read_text())
    assert [p["photo"] for p in predictions] == [name for name, _ in SKIMAGE_PHOTOS]
    by_name = {p["photo"]: p for p in predictions}
    assert next(iter(by_name["chelsea"]["top"])) in {"tabby", "tiger cat", "Egyptian cat"}
    assert next(iter(by_name["coffee"]["top"])) in {"espresso", "cup", "coffee mug"}
    for photo in predictions:
        assert len(photo["top"]) == 5
        assert list(photo["top"].values()) == sorted(photo["top"].values(), reverse=True)
    scored = [p for p in predictions if p["expected"]]
    assert len(scored) == 6  # the astronaut is of none of the 1000 classes
    metrics = summary["metrics"]
    right = sum(next(iter(p["top"])) in p["expected"] for p in scored)
    assert metrics["photos_named_right"] == pytest.approx(right / 6)
    assert metrics["photos_named_right"] >= 4 / 6
    in_top5 = sum(any(name in p["expected"] for name in p["top"]) for p in scored)
    assert metrics["photos_top5_right"] == pytest.approx(in_top5 / 6)
    assert metrics["parameters"] == 4_652_008 and metrics["latency_ms"] > 0
    assert "top1_accuracy" not in metrics and summary["target"]["reached"] is None
    assert summary["model"]["weights_from"].split(":")[0] in ("package", "cache")
    assert summary["photos"][0]["photo"] == "chelsea"


def test_the_photo_gallery_is_drawn(photos_run):
    assert [p.name for p in photos_run.figures()] == ["photos.png"]
    assert photos_run.figures()[0].stat().st_size > 100_000


def test_the_lab_on_an_imagenet_folder(imagenet_dir, store):
    run = run_lab(LAB, [*QUICK, f"imagenet_dir={imagenet_dir}"], store=store, show_progress=False)
    metrics = run.summary["metrics"]
    assert metrics["images_evaluated"] == 5 and metrics["images_skipped"] == 6
    # the same count, one photo at a time, without the lab's batches
    model = PretrainedClassifier(backbone=load_backbone()).eval()
    images, _ = imagenet_folder(imagenet_dir, size=model.scale_size)
    ranks = {}
    with torch.inference_mode():
        for path, label in images.samples:
            try:
                image = fit_square(decode(path), model.scale_size)
            except UnreadableImage:
                continue
            probabilities = model(image[None])[0]
            ranks[path.name] = int((probabilities > probabilities[label]).sum()) + 1
    assert len(ranks) == 5
    assert metrics["top1_accuracy"] == pytest.approx(sum(r == 1 for r in ranks.values()) / 5)
    assert metrics["top5_accuracy"] == pytest.approx(sum(r <= 5 for r in ranks.values()) / 5)
    assert ranks["coffee.jpg"] == ranks["rocket.png"] == 1
    assert ranks[f"{WNID['space shuttle']}_astronaut.JPEG"] > 5  # a shuttle in the background
    assert run.summary["target"]["reached"] is False
    skipped = json.loads((run.dir / "skipped.json").read_text())
    assert len(skipped) == 6 and len(run.summary["skipped"]) == 6
    assert {p.name for p in run.figures()} == {"photos.png", "failures.png"}


def test_serve_shows_the_photos_and_names_an_upload(photos_run):
    from deepscape.serve import Predictor

    predictor = Predictor(load_trained(photos_run))
    assert predictor.trained.input_shape == (3, 256, 256) and len(predictor.trained.classes) == 1000
    coffee = Image.fromarray(skimage.data.coffee())
    probabilities = predictor.classify(coffee)
    assert max(probabilities, key=probabilities.get) in {"espresso", "cup", "coffee mug"}
    gallery = predictor.failures(count=3)  # the clock first: the one photo named wrong
    assert len(gallery) == 3 and gallery[0][1].startswith("MISTAKE: true wall clock")


def test_serve_shows_the_recorded_imagenet_mistakes(imagenet_dir, store):
    run = run_lab(LAB, [*QUICK, f"imagenet_dir={imagenet_dir}"], store=store, show_progress=False)
    trained = load_trained(run)
    recorded = run.summary["failures"]
    assert len(trained.data.test) == len(recorded) >= 1
    assert trained.data.test.targets.tolist() == [f["true"] for f in recorded]
    assert "most confident mistakes" in trained.data.source


def test_your_own_photos_have_top5_but_no_score(imagenet_dir, store):
    folder = imagenet_dir / WNID["tabby"]
    run = run_lab(LAB, [*QUICK, f"images={folder}", "top_k=3"], store=store, show_progress=False)
    (photo,) = json.loads((run.dir / "predictions.json").read_text())
    assert photo["photo"].endswith("chelsea.JPEG") and len(photo["top"]) == 3
    assert photo["expected"] is None and "photos_named_right" not in run.summary["metrics"]


def test_models_without_weights_here_are_noted_in_the_comparison(store):
    run = run_lab(LAB, [*QUICK, "compare=convnext_tiny"], store=store, show_progress=False)
    ours, theirs = run.summary["compare"]
    assert ours["model"] == "tf_efficientnet_lite0" and ours["parameters"] == 4_652_008
    assert ours["accuracy"] == run.summary["metrics"]["photos_named_right"]
    assert theirs["model"] == "convnext_tiny" and "HF_HUB_OFFLINE" in theirs["unavailable"]
    assert "compare.png" in {p.name for p in run.figures()}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["model=resnet5O"], "timm has no model 'resnet5O' — did you mean"),
        (["model=convnext_tiny"], "unset HF_HUB_OFFLINE"),
        (["imagenet_dir=/nowhere/at/all"], "imagenet_dir=/nowhere/at/all is not a folder"),
        (["images=/nowhere/at/all"], "/nowhere/at/all is neither an image file nor a folder"),
        (["top_k=0"], "must be at least 1"),
    ],
    ids=["unknown-model", "offline-model", "no-imagenet-dir", "no-images", "bad-top-k"],
)
def test_bad_input_is_one_line_and_leaves_no_run(home, args, fragment):
    result = CliRunner().invoke(app, ["run", LAB, *QUICK, *args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    *_, last = result.stderr.splitlines()  # after the note on the missing prerequisite
    assert last.startswith("error: ") and result.stderr.count("error") == 1
    assert "Traceback" not in result.output
    assert fragment in result.stderr
    assert RunStore(home).list() == []
