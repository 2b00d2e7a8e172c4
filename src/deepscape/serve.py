"""`deepscape serve RUN`: a trained vision model behind a Gradio page, with its failure cases.

    Try it         draw (sketchpad) or upload an image; see it as the model sees it, the top-k
                   classes, and a gradient map of the prediction over the input
    Failure cases  the test split's mistakes, most confident first, with their gradient maps;
                   the confusion matrix
    Flag           a wrong prediction with its right label goes to RUN/flagged/ (PNG + JSON)

The page binds to 127.0.0.1 unless told otherwise, and shares a public link only with --share.
Bad input (not an image, a blank canvas, a huge file, odd pixel formats) is answered with a
message in the page (`gr.Error`), never a stack trace. `build_app(run)` makes the same page in
Python, for notebooks and tests.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageOps, UnidentifiedImageError

from deepscape import landscape
from deepscape.inside import Trained, conv_layers, gradient_maps, language_model_of, load_trained
from deepscape.inside_figures import hardest
from deepscape.runs import Run, RunStore

MAX_PIXELS = 40_000_000  # an image above this is refused before it is decoded (about 6300²)
TOP_K = 5
DISPLAY = 224  # side of the images the page shows


class BadImage(ValueError):
    """An input the model cannot take; the message says what to send instead."""


# -- reading and preprocessing ------------------------------------------------------------------
def read_image(path: str | Path) -> Image.Image:
    """An uploaded file as a PIL image, or BadImage saying why not."""
    try:
        image = Image.open(path)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise BadImage(
                f"the image is {width}×{height} pixels, over the {MAX_PIXELS // 1_000_000} "
                "megapixel limit: send a smaller copy"
            )
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        name = Path(path).name
        raise BadImage(
            f"{name} is not an image this page can read (PNG, JPEG, GIF, BMP, WebP…): "
            f"{type(error).__name__}"
        ) from None
    return image


def to_grey_or_rgb(image: Image.Image, channels: int) -> np.ndarray:
    """Any PIL mode (16-bit, float, palette, with or without alpha) as floats in [0, 1], "h w c";
    transparent pixels become white paper."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float greyscale
        pixels = np.asarray(image, dtype=np.float32)
        span = float(pixels.max() - pixels.min()) or 1.0
        image = Image.fromarray(((pixels - pixels.min()) / span * 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255
    return pixels[..., None] if channels == 1 else pixels


def preprocess(image: Image.Image, shape: tuple[int, int, int]) -> torch.Tensor:
    """An image as the model's training images look: "c h w" in [0, 1] at the model's size.
    Greyscale models learnt light strokes on a dark ground, centred and filling the frame: a dark
    drawing on light paper is inverted, cropped to its ink and padded square first."""
    channels, height, width = shape
    pixels = to_grey_or_rgb(image, channels)
    if channels == 1:
        grey = pixels[..., 0]
        if edges(grey).mean() > 0.5:  # light paper: make it ink-on-dark like the training images
            grey = 1 - grey
        grey = (grey - np.median(edges(grey))).clip(0, None)  # the ground at 0
        if grey.max() < 0.1:
            raise BadImage("the image is blank: draw or upload something to classify")
        grey = centre_on_ink(grey / grey.max(), margin=0.15 if height >= 16 else 0.0)
        pixels = grey[..., None]
    as_bytes = (pixels * 255).astype(np.uint8)
    resized = Image.fromarray(as_bytes[..., 0] if channels == 1 else as_bytes)
    resized = ImageOps.fit(resized, (width, height), Image.Resampling.LANCZOS)
    array = np.asarray(resized, dtype=np.float32) / 255
    tensor = torch.from_numpy(array[..., None] if channels == 1 else array).permute(2, 0, 1)
    return tensor / tensor.max().clamp_min(1e-6) if channels == 1 else tensor


def edges(grey: np.ndarray) -> np.ndarray:
    """The pixels along an image's border: the paper, in any drawing or scan."""
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def centre_on_ink(grey: np.ndarray, *, margin: float) -> np.ndarray:
    """Crop to the ink's bounding box, then pad to a square with `margin` of the side around."""
    rows, cols = np.nonzero(grey > 0.2)
    ink = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    side = int(max(ink.shape) / (1 - 2 * margin))
    square = np.zeros((side, side), dtype=grey.dtype)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return square


# -- pictures for the page ------------------------------------------------------------------------
def as_picture(image: torch.Tensor) -> Image.Image:
    """A "c h w" model input, enlarged (pixels kept square) for people to see; ink dark."""
    pixels = image.permute(1, 2, 0).numpy()
    pixels = 1 - pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    picture = Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8))
    return picture.resize((DISPLAY, DISPLAY), Image.Resampling.NEAREST)


def overlay(image: torch.Tensor, heat: torch.Tensor, *, side: int = DISPLAY) -> Image.Image:
    """A gradient map ("h w", ≥ 0) over its image: bright = matters most."""
    base = as_picture(image).convert("RGB").resize((side, side), Image.Resampling.NEAREST)
    base = np.asarray(base, dtype=np.float32) / 255
    scaled = (heat / heat.max().clamp_min(1e-12)).numpy()
    heat_image = Image.fromarray((scaled * 255).astype(np.uint8))
    scaled = np.asarray(heat_image.resize((side, side), Image.Resampling.BILINEAR)) / 255
    coloured = colormaps["inferno"](scaled)[..., :3]
    blend = 0.45 * base + 0.55 * coloured
    return Image.fromarray((blend * 255).astype(np.uint8))


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    both = Image.new("RGB", (left.width + right.width + 8, left.height), "white")
    both.paste(left.convert("RGB"), (0, 0))
    both.paste(right.convert("RGB"), (left.width + 8, 0))
    return both


# -- the model behind the page ------------------------------------------------------------------
class Predictor:
    """Preprocess, predict, explain, flag: everything the page does, without the page."""

    def __init__(self, trained: Trained):
        self.trained = trained
        self.method = "gradcam" if conv_layers(trained.model) else "saliency"
        self.flag_dir = trained.run.dir / "flagged"

    def predict(self, image: Image.Image) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """The model's view of `image`, its class probabilities, and the gradient map."""
        seen = preprocess(image, self.trained.input_shape)
        probabilities = self.trained.probabilities(seen[None])[0]
        predicted = probabilities.argmax()[None]
        heat = gradient_maps(self.trained.model, seen[None], predicted, self.method)[0]
        named = {c: float(p) for c, p in zip(self.trained.classes, probabilities, strict=True)}
        return seen, named, heat

    def classify(self, image: Image.Image) -> dict[str, float]:
        """Class probabilities only: what a program asking the API needs."""
        seen = preprocess(image, self.trained.input_shape)
        probabilities = self.trained.probabilities(seen[None])[0].tolist()
        return dict(zip(self.trained.classes, probabilities, strict=True))

    def failures(self, count: int = 24) -> list[tuple[Image.Image, str]]:
        """The test split's mistakes, most confident first (then its closest calls), each as
        image | gradient map, captioned."""
        test = self.trained.data.test
        probabilities = self.trained.probabilities(test.inputs)
        chosen = hardest(probabilities, test.targets, count)
        predicted = probabilities[chosen].argmax(1)
        maps = gradient_maps(self.trained.model, test.inputs[chosen], predicted, self.method)
        classes, gallery = self.trained.classes, []
        for i, heat, guess in zip(chosen.tolist(), maps, predicted.tolist(), strict=True):
            truth = int(test.targets[i])
            verdict = "MISTAKE" if guess != truth else "unsure"
            caption = (
                f"{verdict}: true {classes[truth]} → {classes[guess]} "
                f"({probabilities[i, guess]:.0%}) · test image {i}"
            )
            gallery.append(
                (side_by_side(as_picture(test.inputs[i]), overlay(test.inputs[i], heat)), caption)
            )
        return gallery

    def flag(self, image: Image.Image, label: str, predicted: dict[str, float]) -> Path:
        """Keep a wrongly predicted input with its right label, for retraining later."""
        self.flag_dir.mkdir(exist_ok=True)
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        image.save(self.flag_dir / f"{stem}.png")
        best = max(predicted, key=predicted.__getitem__)
        record = {
            "image": f"{stem}.png",
            "label": label,
            "predicted": best,
            "probability": round(predicted[best], 4),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run": self.trained.run.id,
        }
        path = self.flag_dir / f"{stem}.json"
        path.write_text(json.dumps(record, indent=2))
        return path

    def flagged_count(self) -> int:
        return len(list(self.flag_dir.glob("*.json"))) if self.flag_dir.is_dir() else 0


def sketch_to_image(sketch: dict[str, Any] | None) -> Image.Image:
    """The sketchpad's composite (RGBA numpy) as an image; BadImage when nothing was drawn."""
    composite = (sketch or {}).get("composite")
    if composite is None or (composite.shape[-1] == 4 and composite[..., 3].max() == 0):
        raise BadImage("the canvas is empty: draw a digit first")
    return Image.fromarray(composite)


# -- the page -------------------------------------------------------------------------------------
INTRO = """# {title}
A model trained by deepscape run `{run}` ({model} on {dataset}, test accuracy {accuracy}).
**Try it** with your own drawing or image · see its **failure cases** · **flag** a wrong answer with
the right label: flagged images are kept in `{flag_dir}` for retraining."""


def build_app(
    run: Run | str, *, store: RunStore | None = None, trained: Trained | None = None
) -> gr.Blocks:
    """The page for a finished vision run (an id, or a Run; `trained`: its model, if loaded
    already), the page its lab makes (`page_for`: a mask, an enlarged photo), or the text page
    of a language model's run. Raises RunNotFound, InspectError."""
    if isinstance(run, str):
        run = (store or RunStore()).get(run)
    if trained is None and (page := lab_page(run)) is not None:
        return page
    if trained is None and (language_model := language_model_of(run)) is not None:
        from deepscape.serve_text import build_text_app

        return build_text_app(run, language_model)
    predictor = Predictor(trained or load_trained(run))
    classes = predictor.trained.classes
    summary = run.summary
    accuracy = summary.get("metrics", {}).get("test_accuracy")

    def answer(image: Image.Image) -> tuple[Image.Image, dict[str, float], Image.Image, dict]:
        seen, probabilities, heat = predictor.predict(image)
        return (
            as_picture(seen),
            probabilities,
            overlay(seen, heat),
            {"image": image, **probabilities},
        )

    def from_upload(path: str | None):
        if not path:
            raise gr.Error("Choose an image file to upload first.")
        try:
            return answer(read_image(path))
        except BadImage as error:
            raise gr.Error(str(error)) from None

    def classify(path: str | None) -> dict[str, float]:
        if not path:
            raise gr.Error("Send an image file.")
        try:
            return predictor.classify(read_image(path))
        except BadImage as error:
            raise gr.Error(str(error)) from None

    def from_sketch(sketch: dict[str, Any] | None):
        try:
            return answer(sketch_to_image(sketch))
        except BadImage as error:
            raise gr.Error(str(error)) from None

    def flag(last: dict | None, label: str | None) -> str:
        if not last:
            raise gr.Error("Nothing to flag yet: classify a drawing or an image first.")
        if label not in classes:
            raise gr.Error("Choose the right label before flagging.")
        probabilities = {c: last[c] for c in classes}
        path = predictor.flag(last["image"], label, probabilities)
        return flagged_text(f"Saved as `{path.name}`. ")

    def flagged_text(prefix: str = "") -> str:
        return f"{prefix}Flagged so far: **{predictor.flagged_count()}**"

    title = f"deepscape · {summary['lab']}"
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(
            INTRO.format(
                title=title,
                run=run.id,
                model=run.config.get("model", "a model"),
                dataset=predictor.trained.data.name,
                accuracy=f"{accuracy:.2%}" if accuracy is not None else "not recorded",
                flag_dir=predictor.flag_dir,
            )
        )
        last = gr.State(None)
        with gr.Tab("Try it"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    sketch = gr.Sketchpad(
                        label="Draw here",
                        type="numpy",
                        image_mode="RGBA",
                        canvas_size=(280, 280),
                        brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"),
                        layers=False,
                        transforms=(),
                    )
                    classify_sketch = gr.Button("Classify the drawing", variant="primary")
                    upload = gr.File(
                        label="…or upload an image file", type="filepath", elem_id="upload"
                    )
                    classify_upload = gr.Button("Classify the upload", variant="primary")
                with gr.Column():
                    seen = gr.Image(
                        label="What the model sees", type="pil", height=DISPLAY, format="png"
                    )
                    top = gr.Label(label="Top classes", num_top_classes=TOP_K)
                with gr.Column():
                    heat = gr.Image(
                        label=f"Gradient map ({predictor.method}): bright = drove the answer",
                        type="pil",
                        height=DISPLAY,
                    )
                    right = gr.Dropdown(classes, label="The right label, if the model was wrong")
                    flag_button = gr.Button("Flag this prediction")
                    flagged = gr.Markdown(flagged_text(), elem_id="flagged-count")
            outputs = [seen, top, heat, last]
            classify_sketch.click(from_sketch, sketch, outputs, api_name="classify_sketch")
            classify_upload.click(from_upload, upload, outputs, api_name="predict")
            flag_button.click(flag, [last, right], flagged, api_name="flag")
            with gr.Row(visible=False):  # for programs: probabilities only, no pictures
                api_file, api_answer = gr.File(type="filepath"), gr.Label()
                api_button = gr.Button()
            api_button.click(classify, api_file, api_answer, api_name="classify")
        with gr.Tab("Failure cases"):
            gr.Markdown(
                "The test split's mistakes, the most confident first — then, when there are few, "
                "its closest calls. Left: the image; right: the gradient map of the prediction."
            )
            gr.Gallery(
                value=predictor.failures(),
                label="Mistakes, most confident first",
                columns=4,
                height="auto",
                object_fit="contain",
                elem_id="failures",
            )
            confusion = run.dir / "figures" / "confusion_matrix.png"
            if confusion.is_file():
                gr.Image(str(confusion), label="Confusion matrix (test split)", type="filepath")
    return app


def lab_page(run: Run) -> gr.Blocks | None:
    """The page a lab makes for its own runs (its `page_for(run)`: a model whose answer is not a
    class, such as a mask or an image), or None when it has none."""
    try:
        module = landscape.load().lab(run.summary["lab"]).module()
    except LookupError:
        return None
    return module.page_for(run) if hasattr(module, "page_for") else None


def launch(
    app: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False
) -> str:
    """Start serving `app` in the background; returns its URL (`app.block_thread()` waits)."""
    _, local_url, share_url = app.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=True,
        quiet=True,
        footer_links=["api"],
    )
    return share_url or local_url


def as_png(image: torch.Tensor, *, side: int = 280) -> bytes:
    """A "c h w" dataset image as a person would send it: a PNG, dark ink on white, enlarged."""
    import io

    buffer = io.BytesIO()
    as_picture(image).resize((side, side), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()
