"""vision/201/compression: 8-bit integers — quantisation in PyTorch, and the model as a deployment
runs it (ONNX in onnxruntime).

A float weight w becomes round(w / scale) + zero_point in 8 bits, one scale per output channel;
activations get one scale each, measured on calibration images (static) or on every input as it
comes (dynamic). PyTorch's FX-mode quantisation (`torch.ao.quantization`) does the rewriting:
`prepare_fx` puts observers on the graph, calibration images run through it, `convert_fx` swaps
every convolution for an int8 kernel. Quantisation-aware training keeps float weights but rounds
them in the forward pass (fake quantisation), so fine-tuning learns weights that survive rounding.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from deepscape.config import ConfigError, closest


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
