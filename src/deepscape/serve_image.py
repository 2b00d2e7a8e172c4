"""`deepscape serve RUN` for a model whose answer is an image: a mask over a photo, a sharper
photo. Upload an image, see what the model made of it beside the pictures that explain it.

A lab opts in with `page_for(run) -> gr.Blocks`, built with `image_page`: the lab says what its
model does to one picture (`respond`), the page does the uploading, the errors and the API.
Bad input (not an image, too small, too large) is answered in the page with the lab's one-line
message (`BadImage`), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr
import numpy as np
from PIL import Image

from deepscape.runs import Run
from deepscape.serve import DISPLAY, BadImage, read_image

Respond = Callable[[Image.Image], tuple[list[Image.Image], str]]


def image_page(run: Run, *, intro: str, shown: list[str], respond: Respond) -> gr.Blocks:
    """A page with one upload and one image per name in `shown`; `respond(image)` returns the
    pictures in that order and a line of Markdown (the numbers that go with them). It may raise
    BadImage for an input the model cannot take."""

    def answer(path: str | None) -> tuple:
        if not path:
            raise gr.Error("Choose an image file to upload first.")
        try:
            pictures, text = respond(read_image(path))
        except BadImage as error:
            raise gr.Error(str(error)) from None
        return (*pictures, text)

    title = f"deepscape · {run.summary['lab']}"
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"# {title}\nRun `{run.id}`. {intro}")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                upload = gr.File(label="Upload an image file", type="filepath", elem_id="upload")
                button = gr.Button("Run the model", variant="primary")
                said = gr.Markdown(elem_id="answer")
            outputs = [
                gr.Image(label=name, type="pil", height=DISPLAY * 2, format="png") for name in shown
            ]
        button.click(answer, upload, [*outputs, said], api_name="predict")
    return app


def pil_to_array(image: Image.Image, *, mode: str) -> np.ndarray:
    """An uploaded picture as floats in [0, 1], "h w" for mode "L", "h w 3" for "RGB"."""
    return np.asarray(image.convert(mode), dtype=np.float32) / 255


def array_to_pil(pixels: np.ndarray) -> Image.Image:
    """Floats in [0, 1] ("h w" or "h w 3") as a picture."""
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8))
