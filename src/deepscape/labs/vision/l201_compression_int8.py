"""vision/201/compression: 8-bit integers — quantisation in PyTorch, and the model as a deployment
runs it (ONNX in onnxruntime).

A float weight w becomes round(w / scale) + zero_point in 8 bits, one scale per output channel;
activations get one scale each, measured on calibration images (static) or on every input as it
comes (dynamic). PyTorch's FX-mode quantisation (`torch.ao.quantization`) does the rewriting:
`prepare_fx` puts observers on the graph, calibration images run through it, `convert_fx` swaps
every convolution for an int8 kernel. Quantisation-aware training keeps float weights but rounds
them in the forward pass (fake quantisation), so fine-tuning learns weights that survive rounding.
torchvision's quantisable models are made the older way, in eager mode: the network itself marks
where int8 starts and ends, and `fuse_model` merges each convolution with its norm and ReLU.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from deepscape.config import ConfigError, closest
from deepscape.runs import Run


def check_backend(backend: str) -> None:
    """A one-line error when this PyTorch build has no int8 kernels for `backend`."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend not in engines:
        raise ConfigError(
            f"backend={backend!r}: this CPU and PyTorch build have int8 kernels for "
            f"{', '.join(engines) or 'no backend'}{closest(backend, engines)}"
        )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    # torch.ao's FX quantisation warns that it is deprecated in favour of torchao's PT2E flow;
    # it is the API this PyTorch ships with kernels for plain CPUs, and what the lesson shows
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic quantisation: int8 weights for the linear layers, activations scaled per input at
    run time. Made for models whose work is in linear layers (LSTMs, transformers); a CNN's
    convolutions stay float."""
    with quiet():
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8
        )


@torch.no_grad()
def static_int8(model: nn.Module, calibration: torch.Tensor, *, backend: str) -> nn.Module:
    """Post-training static quantisation: observers record the range of every activation on
    `calibration` images, then every layer becomes an int8 kernel of `backend`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    check_backend(backend)
    torch.backends.quantized.engine = backend
    with quiet():
        observed = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(backend),
                              (calibration[:1],))  # fmt: skip
        for batch in calibration.split(256):
            observed(batch)
        return convert_fx(observed)


def prepare_qat(model: nn.Module, example: torch.Tensor, *, backend: str) -> nn.Module:
    """A copy with fake quantisation in its forward pass, to fine-tune; `convert_qat` then makes
    it int8."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    check_backend(backend)
    torch.backends.quantized.engine = backend
    with quiet():
        return prepare_qat_fx(copy.deepcopy(model).train(),
                              get_default_qat_qconfig_mapping(backend), (example,))  # fmt: skip


def convert_qat(model: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with quiet():
        return convert_fx(model.eval())


def save_int8(model: nn.Module, path: Path) -> int:
    """Write a quantised model's state as safetensors — each int8 tensor as its integers, scales
    and zero points — and return the file's bytes: what storing it in 8 bits costs."""
    tensors: dict[str, torch.Tensor] = {}
    for name, value in _quantised_state(model):
        if value.is_quantized:
            tensors[f"{name}.int8"] = value.int_repr().contiguous()
            if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                tensors[f"{name}.scales"] = value.q_per_channel_scales().float()
                tensors[f"{name}.zero_points"] = value.q_per_channel_zero_points().int()
            else:
                tensors[f"{name}.scale"] = torch.tensor([value.q_scale()], dtype=torch.float32)
                tensors[f"{name}.zero_point"] = torch.tensor([value.q_zero_point()])
        else:
            tensors[name] = value.contiguous()
    save_file(tensors, path)
    return path.stat().st_size


def _quantised_state(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a quantised model's state: its int8 layers keep weight and bias packed
    for their kernel, so they are unpacked here."""
    for name, value in model.state_dict().items():
        if name.endswith("_packed_params._packed_params"):  # a dynamic or int8 linear layer
            weight, bias = value
            base = name.removesuffix("._packed_params._packed_params")
            yield f"{base}.weight", weight
            if bias is not None:
                yield f"{base}.bias", bias
        elif isinstance(value, torch.Tensor):
            yield name, value
        elif hasattr(value, "unpack"):  # a packed int8 convolution
            weight, bias = value.unpack()
            yield f"{name}.weight", weight
            if bias is not None:
                yield f"{name}.bias", bias


# -- deployment: ONNX in onnxruntime ---------------------------------------------------------------
def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> int:
    """`model` as an ONNX file (any batch size); returns its bytes."""
    with quiet():
        torch.onnx.export(
            copy.deepcopy(model).eval(), (example,), str(path), input_names=["images"],
            output_names=["logits"], dynamic_axes={"images": {0: "batch"}}, dynamo=False,
        )  # fmt: skip
    return path.stat().st_size


def onnx_int8(float_path: Path, calibration: torch.Tensor, path: Path) -> int:
    """onnxruntime's own static int8 quantisation of an ONNX file, calibrated on `calibration`
    images; returns the int8 file's bytes."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(64))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    from onnxruntime.quantization.shape_inference import quant_pre_process

    # its recommended first step: fold constants and infer every tensor's shape
    prepared = path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared))
    # reduce_range: 7-bit weights. Without AVX512-VNNI, x86 multiplies u8 by s8 with an
    # instruction that saturates pairs of products at 16 bits; on this model it cost 2.7 points
    # at full range and 0.0 at reduced range (onnxruntime's documented advice)
    quantize_static(str(prepared), str(path), Images(), quant_format=QuantFormat.QOperator,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)  # fmt: skip
    prepared.unlink()
    return path.stat().st_size


class OnnxModel:
    """An ONNX file in an onnxruntime session on the CPU, with `threads` threads."""

    def __init__(self, path: Path, *, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])  # fmt: skip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"images": images.numpy()})
        return torch.from_numpy(logits)


# -- a real ImageNet model in int8: torchvision's quantisable MobileNetV2 -------------------------
def quantisable_mobilenet_v2() -> tuple[nn.Module, nn.Module]:
    """torchvision's MobileNetV2 with its float ImageNet weights, offline (`load_mobilenet_v2`),
    and its QuantizableMobileNetV2 with the same weights: the network between a QuantStub and a
    DeQuantStub, its residual additions through FloatFunctional so they can become int8 too, and
    ReLU6 swapped for ReLU so that each convolution, batch norm and ReLU fuse into one int8
    layer. Both in eval mode. Raises PretrainedUnavailable naming the install."""
    from torchvision.models.quantization import mobilenet_v2

    from deepscape.models.pretrained import load_mobilenet_v2

    original = load_mobilenet_v2()
    twin = mobilenet_v2(quantize=False)
    twin.load_state_dict(original.state_dict())  # the same names, every tensor
    return original, twin.eval()


@torch.no_grad()
def eager_int8(model: nn.Module, calibration: torch.Tensor, *, backend: str) -> nn.Module:
    """Eager-mode static quantisation, the way torchvision makes its int8 models: convolution,
    batch norm and ReLU fused into one layer (`fuse_model`), observers, calibration, int8
    kernels."""
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    check_backend(backend)
    torch.backends.quantized.engine = backend
    model = copy.deepcopy(model).eval()
    with quiet():
        model.fuse_model(is_qat=False)
        model.qconfig = get_default_qconfig(backend)
        prepare(model, inplace=True)
        for batch in calibration.split(32):
            model(batch)
        return convert(model, inplace=True)


def offline_photos() -> list[torch.Tensor]:
    """The seven photos scikit-image ships (`skimage_photos`), as torchvision's 256-pixel
    squares: "3 256 256" in [0, 1]."""
    from deepscape.data.imagenet import skimage_photos

    return [pixels for _, pixels, _ in skimage_photos(256)]


def folder_photos(folder: str) -> list[torch.Tensor]:
    """Every photo in `folder` (recursively), "3 h w" in [0, 1]."""
    from deepscape.data import DataUnavailable
    from deepscape.data.imagenet import decode, image_paths

    try:
        files = image_paths(folder)
    except DataUnavailable:
        files = []
    if len(files) < 2:
        raise ConfigError(f"imagenet_photos={folder}: {len(files)} photo(s) there, give 2 or more")
    return [decode(f) for f in files]


def imagenet_int8(photos: list[torch.Tensor], *, backend: str, folder: Path,
                  latency_runs: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """MobileNetV2 on ImageNet, torchvision's float model against its quantisable twin (float,
    then int8): bytes on disk, latency for one 224×224 image, and how often each keeps the float
    model's answer. There are no labelled ImageNet images offline, so agreement stands in for
    accuracy. Half the photos calibrate, the other half judge."""
    from deepscape import costs
    from deepscape.models.pretrained import PretrainedClassifier

    original, twin = quantisable_mobilenet_v2()
    view = PretrainedClassifier(backbone=original)  # torchvision's resize, crop, normalisation
    with torch.no_grad():
        pixels = torch.cat([view.normalize(view.seen(photo[None])) for photo in photos])
    half = len(pixels) // 2
    calibration, judged = pixels[:half], pixels[half:]
    models = {"float": original, "float, ReLU": twin,
              "int8": eager_int8(twin, calibration, backend=backend)}  # fmt: skip
    with torch.inference_mode():
        logits = {name: model(judged) for name, model in models.items()}
    answer = logits["float"].argmax(1)
    latency = costs.interleaved_latency_ms(
        {name: functools.partial(model, judged[:1]) for name, model in models.items()},
        runs=latency_runs,
    )
    found: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        path = folder / f"mobilenet_v2-{name.replace(', ', '-')}.safetensors"
        if name == "int8":
            size = save_int8(model, path)
        else:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
            size = path.stat().st_size
        top5 = logits[name].topk(5, dim=1).indices
        found[name] = {
            "size_bytes": size, "latency_b1_ms": latency[name],
            "top1_agreement": float((logits[name].argmax(1) == answer).float().mean()),
            "float_top1_in_top5": float((top5 == answer[:, None]).any(1).float().mean()),
        }  # fmt: skip
    return {**found, "photos": {"calibration": half, "judged": len(judged)}}


def weigh_imagenet_mobilenet(run: Run, photos: str | None, *, backend: str,
                             latency_runs: int) -> dict[str, float]:  # fmt: skip
    """`imagenet_int8` on the photos in the folder `photos` (or `offline_photos()`), into the
    run's summary; its ratios as metrics. Skipped, with the install that would bring them, when
    the weights are not here."""
    from deepscape.models.pretrained import PretrainedUnavailable

    pictures = folder_photos(photos) if photos else offline_photos()
    try:
        found = imagenet_int8(pictures, backend=backend, folder=run.dir / "variants",
                              latency_runs=latency_runs)  # fmt: skip
    except PretrainedUnavailable as error:
        run.update_summary(imagenet_int8={"skipped": str(error)})
        print(f"imagenet int8 skipped: {error}")
        return {}
    run.update_summary(imagenet_int8=found)
    weights, quantised = found["float"], found["int8"]
    return {
        "imagenet_int8_size_ratio": weights["size_bytes"] / quantised["size_bytes"],
        "imagenet_int8_speedup_b1": weights["latency_b1_ms"] / quantised["latency_b1_ms"],
        "imagenet_int8_top1_agreement": quantised["top1_agreement"],
    }
