"""The Gradio app: preprocessing like training, bad input answered in words, the API, flagging."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from deepscape import serve
from deepscape.inside import InspectError, load_trained


@pytest.fixture(scope="module")
def predictor(digits_run):
    return serve.Predictor(load_trained(digits_run))


@pytest.fixture(scope="module")
def served(digits_run):
    """The app of the digits run, listening on a free local port."""
    app = serve.build_app(digits_run)
    url = serve.launch(app)
    yield url
    app.close()


def png_of(predictor, index: int) -> bytes:
    return serve.as_png(predictor.trained.data.test.inputs[index])


def label_of(predictor, index: int) -> str:
    return predictor.trained.classes[int(predictor.trained.data.test.targets[index])]


def test_test_images_sent_as_drawings_are_read_like_the_training_images(predictor):
    """Dark ink on white, enlarged 35×: inverted, cropped, shrunk back to 8×8 and classified."""
    hits = 0
    for index in range(60):
        probabilities = predictor.classify(Image.open(io.BytesIO(png_of(predictor, index))))
        hits += max(probabilities, key=probabilities.get) == label_of(predictor, index)
    assert hits >= 57


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "I;16", "P", "RGB"])
def test_every_pixel_format_gives_the_same_answer(predictor, mode):
    drawing = Image.open(io.BytesIO(png_of(predictor, 3))).convert("L")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(drawing, dtype=np.uint16) * 257)
    elif mode in ("RGBA", "LA"):  # ink only, on a transparent ground
        alpha = Image.fromarray(255 - np.asarray(drawing))
        converted = Image.merge(mode, [*drawing.convert(mode[:-1]).split(), alpha])
    else:
        converted = drawing.convert(mode)
    probabilities = predictor.classify(converted)
    assert max(probabilities, key=probabilities.get) == label_of(predictor, 3)


def test_bad_images_are_refused_with_a_message(tmp_path, predictor):
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    with pytest.raises(serve.BadImage, match=r"notes\.txt is not an image"):
        serve.read_image(not_an_image)
    huge = tmp_path / "huge.png"
    Image.new("1", (7000, 7000)).save(huge)
    with pytest.raises(serve.BadImage, match="7000×7000 pixels, over the 40 megapixel limit"):
        serve.read_image(huge)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_of(predictor, 0)[:200])
    with pytest.raises(serve.BadImage, match=r"cut\.png is not an image"):
        serve.read_image(truncated)
    with pytest.raises(serve.BadImage, match="blank"):
        predictor.classify(Image.new("L", (100, 100), 255))
    with pytest.raises(serve.BadImage, match="canvas is empty"):
        serve.sketch_to_image({"composite": np.zeros((50, 50, 4), dtype=np.uint8)})


def test_the_failure_gallery_starts_with_the_most_confident_mistake(predictor):
    gallery = predictor.failures(count=6)
    assert len(gallery) == 6
    confidences = [float(caption.split("(")[1].split("%")[0]) for _, caption in gallery]
    mistakes = [
        c for (_, caption), c in zip(gallery, confidences, strict=True) if "MISTAKE" in caption
    ]
    assert mistakes == sorted(mistakes, reverse=True)
    assert all(image.width > image.height for image, _ in gallery)  # image | its gradient map


def test_the_api_predicts_and_answers_bad_files_in_words(served, predictor, tmp_path):
    from gradio_client import Client, handle_file

    image = tmp_path / "seven.png"
    image.write_bytes(png_of(predictor, 0))
    client = Client(served, verbose=False)
    seen, top, heat = client.predict(handle_file(str(image)), api_name="/predict")
    assert top["label"] == label_of(predictor, 0)
    assert Image.open(seen).size == (serve.DISPLAY, serve.DISPLAY)
    assert Image.open(heat).mode == "RGB"
    answer = client.predict(handle_file(str(image)), api_name="/classify")
    assert answer["label"] == label_of(predictor, 0)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(Exception, match=r"notes\.txt is not an image"):
        client.predict(handle_file(str(text)), api_name="/predict")


def test_flagging_keeps_the_image_with_its_right_label(served, predictor, digits_run, tmp_path):
    from gradio_client import Client, handle_file

    image = tmp_path / "digit.png"
    image.write_bytes(png_of(predictor, 1))
    client = Client(served, verbose=False)
    with pytest.raises(Exception, match="Nothing to flag yet"):
        client.predict("3", api_name="/flag")
    client.predict(handle_file(str(image)), api_name="/predict")
    before = predictor.flagged_count()
    message = client.predict("3", api_name="/flag")
    assert f"Flagged so far: **{before + 1}**" in message
    newest = max((digits_run.dir / "flagged").glob("*.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(newest.read_text())
    assert record["label"] == "3" and record["predicted"] == label_of(predictor, 1)
    assert 0 < record["probability"] <= 1 and record["time"]
    assert Image.open(newest.with_suffix(".png")).size == (280, 280)


def test_a_run_without_weights_gets_a_clear_error(digits_run, tmp_path):
    import shutil

    from deepscape.runs import Run

    copy = tmp_path / digits_run.id
    shutil.copytree(digits_run.dir, copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(InspectError, match="has no weights"):
        serve.build_app(Run(copy))


def test_the_host_lab_serves_a_finished_run_and_measures_it(digits_run, looked_inside):
    from deepscape.lab import run_lab

    store = looked_inside[1]
    overrides = [f"reuse={digits_run.id}", "requests=20", "round_trip_images=100"]
    lab_run = run_lab("vision/101/host", overrides, store=store, show_progress=False)
    metrics = lab_run.summary["metrics"]
    # The page's preprocessing feeds the model digits like its training images: drawn as PNGs,
    # they are classified about as well as the test tensors themselves.
    assert metrics["app_test_accuracy"] >= metrics["model_test_accuracy"] - 0.03
    assert 0 < metrics["api_latency_p50_ms"] <= metrics["api_latency_p95_ms"]
    assert [p.name for p in lab_run.figures()] == ["api_latency.png"]
    assert lab_run.summary["served_run"] == digits_run.id
