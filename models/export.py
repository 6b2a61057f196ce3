"""A model's generator (GAN) or decoder (VAE) for running outside genserve: TorchScript, or ONNX.

The exported function takes `z` (batch, latent_dim) float32, and `labels` (batch,) int64 for conditional models,
with a dynamic batch size, and returns the samples in data space, the values the `npy` format gives (images in
[0, 1]). It is built from a fresh copy of the model on the CPU, so exporting never touches a model being served.
ONNX export needs the `export` extra (onnx, onnxscript); TorchScript only torch.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from models.errors import Unavailable
from models.nets import GenerativeModel, ModelSpec, build_model

FORMATS = ("onnx", "torchscript")
TRACE_BATCH = 3  # the example batch traced; the batch dimension is exported as dynamic
ONNX_OPSET = 18

log = logging.getLogger("genserve.export")


class Sampler(nn.Module):
    """z (and labels) -> samples in data space: the served model's `generate`, as one traceable module."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.model.generate(z, labels)


def _sampler(spec: ModelSpec, tensors: dict[str, Tensor]) -> tuple[Sampler, tuple[Tensor, ...]]:
    model = build_model(spec)
    model.load_state_dict(tensors)
    model.eval()
    z = torch.randn(TRACE_BATCH, spec.latent_dim, generator=torch.Generator().manual_seed(0))
    args: tuple[Tensor, ...] = (z,)
    if spec.num_classes:
        args = (z, torch.arange(TRACE_BATCH, dtype=torch.int64) % spec.num_classes)
    return Sampler(model).eval(), args


def to_torchscript(spec: ModelSpec, tensors: dict[str, Tensor]) -> bytes:
    sampler, args = _sampler(spec, tensors)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice: it still runs everywhere torch does
        traced = torch.jit.trace(sampler, args)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def to_onnx(spec: ModelSpec, tensors: dict[str, Tensor]) -> bytes:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise Unavailable(
            "ONNX export needs the onnx and onnxscript packages on this server (pip install 'genserve[export]')",
            retry_after_s=3600,
        ) from None
    sampler, args = _sampler(spec, tensors)
    names = ["z", "labels"][: len(args)]
    batch = torch.export.Dim("batch")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        path = Path(tmp) / "model.onnx"
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            sampler,
            args,
            path,
            input_names=names,
            output_names=["samples"],
            dynamic_shapes={name: {0: batch} for name in names},
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
            external_data=False,
        )
        return path.read_bytes()


def export(spec: ModelSpec, tensors: dict[str, Tensor], fmt: str) -> bytes:
    return to_onnx(spec, tensors) if fmt == "onnx" else to_torchscript(spec, tensors)
