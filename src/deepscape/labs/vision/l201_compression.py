"""vision/201/compression — make a trained model smaller and faster, and measure what it costs.

The subject is a trained CNN: objects10's model=cnn, trained here first (a run of its own), or any
finished run of a plain CNN (`from_run=`). Each technique makes a variant of it, and every variant
is weighed the same way in the same run: test accuracy, bytes on disk (the file it would ship as),
CPU latency for one image (medians of calls timed in turns, every variant alike) on
`latency_threads` threads, and again on the run's thread count when that differs. One image is
little work to share: on Fashion-MNIST two threads ran the original 1.25× faster than one
(1.69 ms against 2.12) but the channel-pruned net hardly faster (1.20 against 1.27 ms) — the
threads meet at every layer whatever its width — so cutting the FLOPs to 45 % bought 1.66× on
one thread and 1.40× on two. Timings on a shared machine move from run to run: a net cut to
47 % was 1.48× to 1.84× faster than the original in five timings here, so `flops_share` keeps
45 % for a margin.
1. Unstructured pruning: the smallest weights of all layers, ranked together, set to zero
   (`torch.nn.utils.prune`). One shot without fine-tuning, for a curve of accuracy against
   sparsity; then one shot to `sparsity` and fine-tuned, against the same sparsity reached in
   `prune_rounds` rounds of prune-and-fine-tune with the same fine-tuning budget. Zeros in dense
   tensors save nothing: the variant is stored in CSR form, and runs no faster.
2. Structured pruning: whole filters cut out (smallest L1 norm) until `flops_share` of the FLOPs
   remain — a smaller dense model that is faster everywhere — then fine-tuned.
3. int8: dynamic (linear layers only), static post-training with calibration images, and
   quantisation-aware training when post-training loses more than a point (`qat=auto`).
4. Knowledge distillation (Hinton et al. 2015): a student `student_width` channels wide learns
   from the original's softened outputs at `temperature`, against the same student trained from
   labels alone — both on the same `student_fraction` of the training images, for the steps of
   `epochs` over all of them, unaugmented (`student_augment`), so the teacher is asked once.
   Few labelled images are where soft targets pay (Hinton et al.'s "soft targets as
   regularizers"): each says how much an image looks like every class, which its label does
   not. On Fashion-MNIST, three seeds each (benchmarks/vision_201_compression.py), distillation
   gained a median of 2.1 points on 5 % of the images (2,750), 2.9 on 2 %, and 0.35 on all of
   them (+0.14 to +0.73 by seed). The original learns without label smoothing, which flattens the
   similarities between classes that soft outputs carry (Müller et al. 2019); and T=4 with
   weight 0.9 lost 2–4 points to labels alone (all the images, crop-flip): the soft term, scaled
   by T², pushes too hard at this learning rate.
5. Deployment: the float variants exported to ONNX and run by onnxruntime, which also makes its
   own int8 version of the original — with 7-bit weights: on a CPU without AVX512-VNNI, full
   8-bit ones saturate its int16 sums, which cost 2.7 points here.
6. A real ImageNet model in int8 (imagenet=true): torchvision's quantisable MobileNetV2 with its
   offline ImageNet weights, fused and calibrated in eager mode as torchvision makes its own
   int8 models; its size, latency at 224×224 and how often it keeps the float model's answer
   on photos (`imagenet_photos`, or the seven that scikit-image ships). On 400
   Flickr8k photos it was 3.8× smaller and 2.4× faster, and kept the answer on only 58 %:
   MobileNetV2 loses much more to post-training rounding than the CNN above.
figures/sparsity.png draws the pruning curves and where the zeros fell; figures/frontier.png
every variant's accuracy against its size and its latency.

    deepscape run vision/201/compression                       # Fashion-MNIST, objects10's CNN
    deepscape run vision/201/compression from_run=RUN_ID       # compress a run you trained
    deepscape run vision/201/compression sparsity=0.95 prune_rounds=6 flops_share=0.3
    deepscape run vision/201/compression dataset=cifar10 data_dir=cifar10-images epochs=6
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from deepscape import costs
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.data import Splits, TensorSplit
from deepscape.data.augment import photo_augmentation
from deepscape.frontier import Point, frontier_figure
from deepscape.inside import Trained, load_trained
from deepscape.labs.vision import l101_objects10
from deepscape.labs.vision import l201_compression_int8 as int8
from deepscape.labs.vision import l201_compression_pruning as pruning
from deepscape.labs.vision.l201_compression_figures import draw_sparsity
from deepscape.loop import track
from deepscape.models.vision import build_model
from deepscape.optim import make_optimizer, make_schedule
from deepscape.runs import Run, RunNotFound, RunStore
from deepscape.sweep import stage

ORIGINAL_LAB = "vision/101/objects10"
ONE_SHOT_SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
QAT_WHEN_LOST = 0.01  # qat=auto: train with rounding when post-training int8 loses more
ONE_PROCESS = "its fine-tuning and distillation loops, and latency timed on one machine"


@dataclass
class Config(TrainConfig):
    from_run: str | None = option(None, "a finished run of a plain CNN to compress "
                                  "(default: train objects10's model=cnn here first)")  # fmt: skip
    dataset: Literal["fashion-mnist", "cifar10"] = option("fashion-mnist", "which 10 objects")
    data_dir: str | None = option(None, "local copy: IDX files, or train/<class>/ test/<class>/")
    train_fraction: float = option(1.0, "share of the training split to learn from (0–1]")
    augment: Literal["none", "crop-flip", "strong"] = option(
        "crop-flip", "the training augmentation of every fine-tuning"
    )
    width: int = option(32, "the original CNN's first-stage channels (then 2×, 4×)")
    depth: int = option(3, "the original CNN's stages")
    epochs: int = option(3, "the original's training epochs, and each student's")
    # the techniques
    sparsity: float = option(0.9, "unstructured: the share of weights set to zero, in [0, 1)")
    prune_rounds: int = option(4, "unstructured: rounds of prune-and-fine-tune to reach it")
    finetune_epochs: float = option(1.0, "epochs of fine-tuning each pruned or QAT variant gets")
    finetune_lr: float = option(0.02, "peak LR of fine-tuning (training from scratch: lr)")
    flops_share: float = option(0.45, "structured: the share of FLOPs to keep, in (0, 1)")
    channel_multiple: int = option(8, "structured: keep channel counts a multiple of this")
    backend: str = option("x86", "int8 kernels: x86 (fbgemm + oneDNN), fbgemm, onednn, qnnpack")
    calibration_images: int = option(1024, "int8: training images that set activation ranges")
    qat: Literal["auto", "always", "never"] = option(
        "auto", "quantisation-aware training: auto = when post-training int8 loses > 1 point"
    )
    student_width: int = option(4, "distillation: the student's first-stage channels")
    student_fraction: float = option(
        0.05, "distillation: share of the training images the students learn from (0–1]"
    )
    student_augment: Literal["none", "crop-flip", "strong"] = option(
        "none", "distillation: the students' augmentation (none: the teacher is asked once)"
    )
    temperature: float = option(2.0, "distillation: softmax temperature of the soft targets")
    distill_weight: float = option(0.5, "distillation: weight of the soft targets (rest: labels)")
    latency_runs: int = option(200, "timed calls per variant, in 10 turns, for its latency")
    latency_threads: int = option(1, "threads the batch-1 latencies of the targets are timed on")
    imagenet: bool = option(True, "also make torchvision's ImageNet MobileNetV2 int8, and weigh it")
    imagenet_photos: str | None = option(
        None,
        "photos for that: half calibrate, half judge (default: the 7 that scikit-image ships)",
    )
    # training from scratch (the original, the students): objects10's recipe
    batch_size: int = option(256, "examples per optimisation step")
    optimizer: Literal["sgd", "adamw"] = option("sgd", "sgd (with Nesterov momentum) or adamw")
    lr: float = option(0.2, "peak learning rate of training from scratch")
    weight_decay: float = option(5e-4, "decoupled weight decay")
    label_smoothing: float = option(
        0.0, "label smoothing of every training from labels (a smoothed teacher distils worse)"
    )
    warmup: float = option(0.2, "fraction of steps warming the LR up")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "fp32", "of the original's training (every measurement here is fp32 or int8)"
    )
    figures: bool = option(True, "draw the figures")


def check(config: Config) -> None:
    pruning.check_sparsity(config.sparsity)
    int8.check_backend(config.backend)
    pruning.check_flops_share(config.flops_share)
    if config.prune_rounds < 1:
        raise ConfigError(f"prune_rounds={config.prune_rounds}: prune in 1 round or more")
    if not 0 < config.student_fraction <= 1:
        raise ConfigError(f"student_fraction={config.student_fraction:g}: give a share in (0, 1]")
    if config.latency_threads < 1:
        raise ConfigError(f"latency_threads={config.latency_threads}: time on 1 thread or more")
    if config.imagenet_photos and not Path(config.imagenet_photos).is_dir():
        raise ConfigError(f"imagenet_photos={config.imagenet_photos}: no such folder of photos")


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    trained = the_original(config, run)
    data = trained.data.with_train_fraction(config.train_fraction)
    run.update_summary(original_run=trained.run.id, threads=threads, backend=config.backend,
                       latency_threads=config.latency_threads,
                       data={"name": data.name, "source": data.source, **data.sizes})  # fmt: skip
    bench = Bench(config, run, data)
    original = bench.weigh("original", trained.model, size=pruning.save_dense)

    # 1. unstructured: one shot, then fine-tuned, then in rounds with the same fine-tuning
    curve = {}
    for share in ONE_SHOT_SPARSITIES:
        pruned = copy.deepcopy(trained.model)
        pruning.prune_globally(pruned, share)
        curve[share] = bench.accuracy(pruned)
    one_shot = copy.deepcopy(trained.model)
    pruning.prune_globally(one_shot, config.sparsity)
    bench.fine_tune(one_shot, config.finetune_epochs, "one-shot pruned")
    bench.weigh("one-shot pruned", one_shot, size=pruning.save_sparse)
    iterative, rounds = copy.deepcopy(trained.model), []
    for share in pruning.sparsity_schedule(config.sparsity, config.prune_rounds):
        pruning.prune_globally(iterative, share)
        bench.fine_tune(iterative, config.finetune_epochs / config.prune_rounds,
                        f"pruned to {share:.0%}")  # fmt: skip
        rounds.append((share, bench.accuracy(iterative)))
    sparse = bench.weigh("iteratively pruned", iterative, size=pruning.save_sparse)

    # 2. structured: cut filters out until flops_share of the FLOPs are left, then fine-tune
    example = data.test.inputs[:1]
    slim, kept = pruning.cut_to_flops(
        trained.model, config.flops_share, example, multiple=config.channel_multiple
    )
    bench.fine_tune(slim, config.finetune_epochs, "channel-pruned")
    structured = bench.weigh("channel-pruned", slim, size=pruning.save_dense)

    # 3. int8: dynamic, static with calibration, quantisation-aware training if needed
    drawn = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))
    calibration = data.train.inputs[drawn[: config.calibration_images]]
    bench.weigh(
        "int8 dynamic", int8.dynamic_int8(trained.model), size=int8.save_int8, quantised=True
    )
    static = bench.weigh("int8 static",
                         int8.static_int8(trained.model, calibration, backend=config.backend),
                         size=int8.save_int8, quantised=True)  # fmt: skip
    quantised = static
    ptq_loss = original["test_accuracy"] - static["test_accuracy"]
    if config.qat == "always" or (config.qat == "auto" and ptq_loss > QAT_WHEN_LOST):
        aware = int8.prepare_qat(trained.model, example, backend=config.backend)
        bench.fine_tune(aware, config.finetune_epochs, "quantisation-aware")
        quantised = bench.weigh(
            "int8 QAT", int8.convert_qat(aware), size=int8.save_int8, quantised=True
        )

    # 4. distillation: the same small student on a few of the images, from labels and taught
    run.update_summary(student_images=len(bench.student_images))
    from_labels = bench.weigh("student, from labels", bench.train_student(None),
                              size=pruning.save_dense)  # fmt: skip
    student = bench.train_student(trained.model)
    distilled = bench.weigh("student, distilled", student, size=pruning.save_dense)

    # 5. deployment: ONNX in onnxruntime
    for name, model in (
        ("original", trained.model),
        ("channel-pruned", slim),
        ("student", student),
    ):
        bench.weigh_onnx(name, model)
    bench.weigh_onnx_int8(calibration)
    bench.time_all()

    # 6. a real ImageNet model, float against int8
    imagenet = {}
    if config.imagenet:
        imagenet = int8.weigh_imagenet_mobilenet(
            run, config.imagenet_photos, backend=config.backend, latency_runs=config.latency_runs
        )

    table = bench.table
    onnx, onnx_int8 = table["onnx original"], table["onnx int8"]
    run.update_summary(variants=table, one_shot_curve={f"{s:g}": a for s, a in curve.items()},
                       prune_rounds=[{"sparsity": s, "test_accuracy": a} for s, a in rounds],
                       structured_keep_share=kept)  # fmt: skip
    if config.figures:
        draw_sparsity(
            run,
            original["test_accuracy"],
            curve,
            rounds,
            one_shot=table["one-shot pruned"],
            layers=layer_zeros(iterative),
        )
        points = [Point(name, v["test_accuracy"], v.get("flops") or 0.0, v["latency_b1_ms"],
                        size_bytes=v["size_bytes"]) for name, v in table.items()]  # fmt: skip
        frontier_figure(
            run,
            points,
            costs=("size_bytes", "latency_ms"),
            title=f"Compressing a CNN on {data.name}: every variant, measured",
        )
    base = original["test_accuracy"]
    return {
        "original_test_accuracy": base,
        "sparse_test_accuracy": sparse["test_accuracy"],
        "test_accuracy_drop": base - sparse["test_accuracy"],  # of the pruned model: the target
        "one_shot_accuracy_drop": base - table["one-shot pruned"]["test_accuracy"],
        "sparsity": sparse["zero_share"],
        "sparse_size_ratio": original["size_bytes"] / sparse["size_bytes"],
        "structured_accuracy_drop": base - structured["test_accuracy"],
        "structured_flops_share": structured["flops"] / original["flops"],
        "structured_speedup_b1": original["latency_b1_ms"] / structured["latency_b1_ms"],
        "int8_accuracy_drop": base - quantised["test_accuracy"],
        "int8_size_ratio": original["size_bytes"] / quantised["size_bytes"],
        "int8_speedup_b1": original["latency_b1_ms"] / quantised["latency_b1_ms"],
        "onnx_int8_accuracy_drop": base - onnx_int8["test_accuracy"],
        "onnx_int8_speedup_b1": onnx["latency_b1_ms"] / onnx_int8["latency_b1_ms"],
        "student_test_accuracy": from_labels["test_accuracy"],
        "distilled_test_accuracy": distilled["test_accuracy"],
        "distillation_gain": distilled["test_accuracy"] - from_labels["test_accuracy"],
        **imagenet,
    }


# -- the subject ----------------------------------------------------------------------------------
def the_original(config: Config, run: Run) -> Trained:
    """The trained model to compress: `from_run`'s, or objects10's model=cnn trained now as a run
    of its own, seed 0 (a resumed compression run reuses it)."""
    if config.from_run:
        try:
            source = RunStore(run.dir.parent).get(config.from_run)
        except RunNotFound:
            raise ConfigError(
                f"from_run={config.from_run}: no such run; list trained ones with "
                "`deepscape runs --lab vision/101/objects10`"
            ) from None
        return load_trained(source)
    items = [f"dataset={config.dataset}", "model=cnn", f"width={config.width}",
             f"depth={config.depth}", f"epochs={config.epochs}",
             f"label_smoothing={config.label_smoothing:g}",
             f"train_fraction={config.train_fraction:g}", f"precision={config.precision}",
             f"threads={config.threads}", f"device={config.device}"]  # fmt: skip
    if config.data_dir:
        items.append(f"data_dir={config.data_dir}")
    (trained_run,) = stage(run, "original", ORIGINAL_LAB, l101_objects10.Config, items)
    if trained_run.status != "finished":
        raise RuntimeError(f"training the original failed: see run {trained_run.id}")
    return load_trained(trained_run)


def layer_zeros(model: nn.Module) -> dict[str, float]:
    """The share of zeros in each convolution's and linear layer's weights."""
    return {name: float((m.weight == 0).float().mean()) for name, m in model.named_modules()
            if isinstance(m, pruning.WEIGHTED)}  # fmt: skip


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, *, temperature: float,
    weight: float,
) -> torch.Tensor:  # fmt: skip
    """Hinton et al. (2015): KL divergence from the teacher's softened distribution (scaled by
    T², so that its gradients keep their size as T grows), mixed with cross-entropy on labels."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1),
                    F.log_softmax(teacher / temperature, 1), log_target=True,
                    reduction="batchmean") * temperature**2  # fmt: skip
    return weight * soft + (1 - weight) * F.cross_entropy(student, targets)


# -- weighing and training the variants -----------------------------------------------------------
class Bench:
    """Trains and measures the variants, each the same way; `table` holds what was measured."""

    def __init__(self, config: Config, run: Run, data: Splits):
        self.config, self.run, self.data = config, run, data
        self.folder = run.dir / "variants"
        self.folder.mkdir(exist_ok=True)
        # a resumed run measures every variant again: the interrupted attempt's records go
        run.keep_history(lambda record: record.get("kind") != "variant")
        self.table: dict[str, dict[str, Any]] = {}
        self.timed: dict[str, Callable[[int], object]] = {}  # name → one call at batch 1,
        # made for a thread count (an onnxruntime session fixes its threads when it starts)
        self.example = data.test.inputs[:1]

    @torch.inference_mode()
    def accuracy(self, model: nn.Module | int8.OnnxModel) -> float:
        split = self.data.test
        if isinstance(model, nn.Module):
            model.eval()
        batches = zip(split.inputs.split(500), split.targets.split(500), strict=True)
        right = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
        return right / len(split)

    def weigh(
        self, name: str, model: nn.Module, *, size: Callable[[nn.Module, Path], int],
        quantised: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Accuracy, file size (and FLOPs, for float models) of `model`; its latency at batch 1
        comes with every other variant's in `time_all`."""
        path = self.folder / f"{name.replace(' ', '-').replace(',', '')}.safetensors"
        model = model if quantised else pruning.made_permanent(model)  # masks folded, as shipped
        row = {"test_accuracy": self.accuracy(model), "size_bytes": size(model, path),
               "runtime": "pytorch"}  # fmt: skip
        if not quantised:
            row["flops"] = costs.forward_flops(model, self.example)
            row["zero_share"] = pruning.zero_share(model)
        self.table[name] = row
        model.eval()  # PyTorch's threads are set for all models at once: `threads` is unused
        self.timed[name] = lambda threads: functools.partial(model, self.example)
        return row

    def weigh_onnx(self, name: str, model: nn.Module) -> dict[str, Any]:
        path = self.folder / f"{name.replace(' ', '-')}.onnx"
        size = int8.export_onnx(model, self.example, path)
        return self._onnx_row(f"onnx {name}", path, size)

    def weigh_onnx_int8(self, calibration: torch.Tensor) -> dict[str, Any]:
        """onnxruntime's own int8 of the original's ONNX file (`weigh_onnx("original", …)`)."""
        path = self.folder / "original-int8.onnx"
        size = int8.onnx_int8(self.folder / "original.onnx", calibration, path)
        return self._onnx_row("onnx int8", path, size)

    def _onnx_row(self, name: str, path: Path, size: int) -> dict[str, Any]:
        session = int8.OnnxModel(path, threads=torch.get_num_threads())
        row = {"test_accuracy": self.accuracy(session), "size_bytes": size,
               "runtime": "onnxruntime"}  # fmt: skip
        self.table[name] = row
        self.timed[name] = lambda threads: functools.partial(
            int8.OnnxModel(path, threads=threads), self.example
        )
        return row

    def time_all(self) -> None:
        """Every variant's latency at batch 1, timed in turns with the others of its runtime
        (`costs.interleaved_latency_ms`), so that the ratios between them hold whatever the
        machine did meanwhile: on `latency_threads` threads (`latency_b1_ms`), and on the run's
        own count too when it differs (`latency_b1_ms_by_threads`); then each variant is
        recorded in the run's history. PyTorch's variants and onnxruntime's are timed apart:
        onnxruntime's threads keep spinning for a while after a call (its default, good for its
        own latency), and a PyTorch model timed right after one measured 15 % slower."""
        run_threads = torch.get_num_threads()
        by_threads: dict[str, dict[str, float]] = {name: {} for name in self.table}
        try:
            for threads in dict.fromkeys([self.config.latency_threads, run_threads]):
                torch.set_num_threads(threads)
                for runtime in ("pytorch", "onnxruntime"):
                    calls = {n: make(threads) for n, make in self.timed.items()
                             if self.table[n]["runtime"] == runtime}  # fmt: skip
                    measured = costs.interleaved_latency_ms(calls, runs=self.config.latency_runs)
                    for name, ms in measured.items():
                        by_threads[name][str(threads)] = ms
        finally:
            torch.set_num_threads(run_threads)
        for name, row in self.table.items():
            row["latency_b1_ms"] = by_threads[name][str(self.config.latency_threads)]
            row["latency_b1_ms_by_threads"] = by_threads[name]
            self.run.log({"kind": "variant", "name": name, **row})
        self.run.commit_history()

    def fine_tune(self, model: nn.Module, epochs: float, what: str) -> None:
        self.train(model, epochs=epochs, lr=self.config.finetune_lr, what=f"fine-tuning {what}")

    @functools.cached_property
    def student_images(self) -> TensorSplit:
        """The students' `student_fraction` of the training split (stratified, the same for
        both): a teacher's soft targets carry most where labelled images are few."""
        return self.data.with_train_fraction(self.config.student_fraction).train

    def train_student(self, teacher: nn.Module | None) -> nn.Module:
        """A fresh narrow CNN, the original's depth, trained from labels or taught on the
        student images for the steps of `epochs` over the whole training split."""
        torch.manual_seed(self.config.seed)
        student = build_model("cnn", images=self.student_images.inputs,
                              num_classes=len(self.data.classes), width=self.config.student_width,
                              depth=self.config.depth)  # fmt: skip
        name = "student, from labels" if teacher is None else "student, distilled"
        self.train(student, epochs=self.config.epochs / self.config.student_fraction,
                   lr=self.config.lr, what=name, teacher=teacher, split=self.student_images,
                   augment=self.config.student_augment)  # fmt: skip
        return student

    def train(
        self, model: nn.Module, *, epochs: float, lr: float, what: str,
        teacher: nn.Module | None = None, split: TensorSplit | None = None,
        augment: str | None = None,
    ) -> None:  # fmt: skip
        """`epochs` of SGD with the config's schedule on `split` (the training split), augmented
        by `augment` (the config's); a teacher turns the loss into distillation. Pruning masks
        stay applied throughout."""
        cfg = dataclasses.replace(self.config, lr=lr)
        train = split if split is not None else self.data.train
        batch = self.config.batch_size
        steps = max(1, round(epochs * len(train) / batch))
        optimizer = make_optimizer(model, cfg)
        schedule = make_schedule(optimizer, cfg, total_steps=steps)
        augmentation = photo_augmentation(augment or cfg.augment, padding=2)
        generator = torch.Generator().manual_seed(cfg.seed)
        passes = -(-steps * batch // len(train))  # a fresh order of the images every pass
        order = torch.cat([torch.randperm(len(train), generator=generator) for _ in range(passes)])
        answers = None  # the teacher's outputs for unaugmented images, which every pass repeats
        if teacher is not None:
            teacher.eval()
            if augmentation is None:
                with torch.inference_mode():
                    answers = torch.cat([teacher(x) for x in train.inputs.split(1024)])
        model.train()
        for step in track(range(steps), description=what, disable=not self.run.show_progress):
            rows = order[step * batch : (step + 1) * batch]
            images, targets = train.inputs[rows], train.targets[rows]
            if augmentation is not None:
                images = augmentation(images)
            logits = model(images)
            if teacher is None:
                loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
            else:
                with torch.no_grad():
                    taught = answers[rows] if answers is not None else teacher(images)
                loss = distillation_loss(logits, taught, targets, temperature=cfg.temperature,
                                         weight=cfg.distill_weight)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
