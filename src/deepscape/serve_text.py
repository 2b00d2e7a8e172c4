"""`deepscape serve RUN` for a language model: a page to write a prompt and read what it adds.

The sliders are the sampling lesson (deepscape.generate): temperature sharpens (< 1) or
flattens (> 1) the next-token distribution, 0 takes the likeliest token every time; top-k keeps
the k likeliest tokens, top-p the fewest whose probabilities sum to p. A fixed seed draws the
same text again. A prompt the model cannot read (empty, too long, a character it never saw) is
answered with a message in the page, never a stack trace.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from deepscape.config import ConfigError
from deepscape.runs import Run


def build_text_app(run: Run, language_model: Any) -> gr.Blocks:
    """The page for a finished run whose lab trains a language model (`language_model` has
    `complete(prompt, …)`, as language/201/transformers' TrainedLM)."""
    summary = run.summary
    loss = summary.get("metrics", {}).get("val_loss")

    def complete(
        prompt: str, tokens: float, temperature: float, top_k: float, top_p: float, seed: float
    ) -> str:
        try:
            return language_model.complete(
                prompt,
                max_new_tokens=int(tokens),
                temperature=temperature,
                top_k=int(top_k) or None,
                top_p=top_p if top_p < 1 else None,
                seed=int(seed) if seed >= 0 else None,
            )
        except ConfigError as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title=f"deepscape · {run.id}") as app:
        gr.Markdown(
            f"## {summary['lab']} · run `{run.id}`\n"
            + (f"Validation loss {loss:.3f} nats per token. " if loss is not None else "")
            + "Write the start of a text; the model continues it, one sampled token at a time."
        )
        prompt = gr.Textbox(label="prompt", value="ROMEO:", lines=3)
        with gr.Row():
            tokens = gr.Slider(1, 500, value=200, step=1, label="new tokens")
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="temperature (0: greedy)")
            top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0: off)")
            top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="top-p (1: off)")
            seed = gr.Number(value=-1, precision=0, label="seed (-1: a new draw each time)")
        button = gr.Button("Continue", variant="primary")
        text = gr.Textbox(label="the prompt and its continuation", lines=14)
        inputs = [prompt, tokens, temperature, top_k, top_p, seed]
        button.click(complete, inputs, text, api_name="complete")
        prompt.submit(complete, inputs, text)
    return app
