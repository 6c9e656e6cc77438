"""Export a depth model, with its preprocessing, to the runtimes the studies shipped to.

Every exporter takes the eval-mode model and a static ``input_size`` ``(B, 3, H, W)`` and writes one file,
atomically (a temporary file in the same folder, then ``os.replace``), refusing to overwrite an existing file
unless ``overwrite=True``. The exported graph is :class:`DeployModule`: the model with the input normalisation it
records (``model.normalization``), so that every runtime takes the same input, an RGB image ``(B, 3, H, W)`` float32 in [0, 1], and returns depth
``(B, 1, H, W)``. The MAI-2021 presets carry their resize layers (480x640 -> 128x160 -> 480x640) inside the
model, so they are exported too.

- :func:`export_onnx`: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export`` based exporter), run by
  ONNX Runtime (:class:`depthlib.deploy.runtimes.OrtRunner`).
- :func:`export_executorch`: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner,
  fp32 or int8 (PT2E with the XNNPACK quantizer, calibrated on images), a ``.pte`` program.
- :func:`export_litert`: ``litert_torch.convert`` to a ``.tflite`` flatbuffer (LiteRT with XNNPACK).
- :func:`build_tvm`: ``torch.export`` -> TVM Relax, compiled for this CPU (``llvm`` with its ``mcpu``) with the
  default schedules, or tuned by MetaSchedule within ``tune_trials``; a shared library plus a JSON sidecar.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn


from ._common import RuntimeNotAvailable, UnsupportedOperatorError, check_input_size, require

__all__ = ["DeployModule", "export_onnx", "export_executorch", "export_litert", "build_tvm", "calibration_batches",
           "tvm_target"]


class DeployModule(nn.Module):
    """The shipped graph: the model in eval mode, with the input normalisation it records (``model.normalization``,
    applied first in its ``forward``: see :func:`depthlib.models.create_model`), so nothing normalises twice.

    ``forward(image: (B, 3, H, W) float32 RGB in [0, 1]) -> depth (B, 1, H, W)``.

    With ``half=True`` the model runs in float16 inside (weights and activations) while the input and output
    stay float32: the graph an fp16 export ships (half the file size).
    """

    def __init__(self, model: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.half_precision = bool(half)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        if self.half_precision:
            return self.model(x.half()).float()
        return self.model(x)


def _deploy_module(model: nn.Module, half: bool = False) -> DeployModule:
    if isinstance(model, DeployModule):
        return model.eval()
    if half:
        model = copy.deepcopy(model).half()
    return DeployModule(model, half).eval()


@contextlib.contextmanager
def _atomic_path(path, overwrite: bool) -> Iterator[pathlib.Path]:
    """A temporary path beside ``path``; moved onto ``path`` when the block succeeds, removed otherwise."""
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_OP_PATTERN = re.compile(r"(aten[.:]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def _unsupported(runtime: str, err: Exception) -> Exception:
    """An UnsupportedOperatorError when the converter's message names an operator, else the error itself."""
    text = str(err)
    match = _OP_PATTERN.search(text)
    lowered = text.lower()
    if match and any(w in lowered for w in ("unsupported", "not supported", "no decomposition", "cannot",
                                             "not implemented", "no symbolic", "failed to")):
        return UnsupportedOperatorError(runtime, match.group(1), text.splitlines()[0][:300])
    return err


def export_onnx(model: nn.Module, path, input_size: Sequence[int] = (1, 3, 224, 224), *, precision: str = "fp32",
                opset: int | None = None, overwrite: bool = False) -> pathlib.Path:
    """Export to ONNX with the dynamo exporter, static shape ``input_size`` ``(B, 3, H, W)``.

    ``precision="fp16"`` exports the model in float16 with float32 input and output (a copy is cast; the
    model is not changed). ONNX Runtime's CPU provider lacks float16 kernels for some operators: such a file
    is a size result on a CPU, and loading it says which operator is missing.

    Returns:
        the written path (one self-contained ``.onnx`` file, weights inside).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        UnsupportedOperatorError: the exporter cannot translate an operator (named).
    """
    size = check_input_size(input_size)
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    require("onnxscript", "torch.onnx (dynamo exporter)")
    module = _deploy_module(model, half=precision == "fp16")
    x = torch.rand(size)
    kwargs = {} if opset is None else {"opset_version": int(opset)}
    with _atomic_path(path, overwrite) as tmp, torch.no_grad():
        try:
            torch.onnx.export(module, (x,), str(tmp), dynamo=True, external_data=False, verbose=False,
                              input_names=["image"], output_names=["depth"], **kwargs)
        except Exception as err:  # the exporter wraps converter errors in several types
            raise _unsupported("onnx", err) from err
    return pathlib.Path(path)


def calibration_batches(images, input_size: Sequence[int]) -> list[torch.Tensor]:
    """Check a calibration set and split it into batches of ``input_size``'s batch size.

    Args:
        images: a tensor ``(N, 3, H, W)``, a sequence of ``(3, H, W)`` / ``(1, 3, H, W)`` tensors or arrays,
            or a dataset of sample dicts with ``"image"``.
        input_size: the export's ``(B, 3, H, W)``.

    Raises:
        ValueError: an empty set, or images of another size than the export's (both named).
    """
    size = check_input_size(input_size)
    if isinstance(images, torch.Tensor):
        items = list(images.unbind(0)) if images.dim() == 4 else [images]
    else:
        items = []
        for item in images:
            if isinstance(item, dict):
                item = item["image"]
            item = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
            items.extend(item.unbind(0) if item.dim() == 4 else [item])
    if not items:
        raise ValueError("the calibration set is empty: static int8 quantization needs images to measure the "
                         "activation ranges (pass some training images)")
    for i, img in enumerate(items):
        if tuple(img.shape) != size[1:]:
            raise ValueError(f"calibration image {i} has shape {tuple(img.shape)}; the export takes {size[1:]} "
                             f"(input_size {size}): resize the calibration images to {size[2]}x{size[3]}")
    b = size[0]
    stacked = torch.stack([img.float() for img in items])
    n = (len(items) // b) * b
    if n == 0:
        raise ValueError(f"the calibration set has {len(items)} image(s), fewer than the export's batch size {b}")
    return [stacked[i:i + b] for i in range(0, n, b)]


def export_executorch(model: nn.Module, path, input_size: Sequence[int] = (1, 3, 224, 224), *,
                      quantize: str | None = None, calibration=None,
                      overwrite: bool = False) -> pathlib.Path:
    """Export to an ExecuTorch program (``.pte``) delegated to XNNPACK.

    Args:
        quantize: ``None`` (fp32) or ``"int8"``: PT2E static quantization with ExecuTorch's
            ``XNNPACKQuantizer`` (symmetric, per-channel weights), calibrated on ``calibration`` images.
        calibration: images for ``"int8"`` (see :func:`calibration_batches`).

    Raises:
        RuntimeNotAvailable: executorch is not installed (the ``[deploy]`` extra).
        UnsupportedOperatorError: an operator the exporter or the lowering cannot take (named).
    """
    size = check_input_size(input_size)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    exir = require("executorch.exir", "ExecuTorch")
    xnn = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "ExecuTorch XNNPACK")
    module = _deploy_module(model)
    x = torch.rand(size)
    batches = calibration_batches(calibration, size) if quantize == "int8" else None
    with torch.no_grad():
        try:
            if quantize == "int8":
                pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "ExecuTorch int8 (torchao PT2E)")
                xq = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "ExecuTorch int8")
                quantizer = xq.XNNPACKQuantizer().set_global(xq.get_symmetric_quantization_config(is_per_channel=True))
                graph = torch.export.export(module, (x,)).module()
                prepared = pt2e.prepare_pt2e(graph, quantizer)
                for batch in batches:
                    prepared(batch)
                module_to_export = pt2e.convert_pt2e(prepared)
            else:
                module_to_export = module
            ep = torch.export.export(module_to_export, (x,))
            program = exir.to_edge_transform_and_lower(ep, partitioner=[xnn.XnnpackPartitioner()]).to_executorch()
        except RuntimeNotAvailable:
            raise
        except Exception as err:
            raise _unsupported("executorch", err) from err
    with _atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(program.buffer)
    return pathlib.Path(path)


def export_litert(model: nn.Module, path, input_size: Sequence[int] = (1, 3, 224, 224), *,
                  overwrite: bool = False) -> pathlib.Path:
    """Convert to a LiteRT (TFLite) flatbuffer with ``litert_torch.convert``.

    Raises:
        RuntimeNotAvailable: litert-torch is missing; with the project's torch it cannot be installed (the
            message quotes pip's resolver).
    """
    size = check_input_size(input_size)
    litert_torch = require("litert_torch", "LiteRT (litert-torch converter)")
    module = _deploy_module(model)
    try:
        edge = litert_torch.convert(module, (torch.rand(size),))
    except Exception as err:
        raise _unsupported("litert", err) from err
    with _atomic_path(path, overwrite) as tmp:
        edge.export(str(tmp))
    return pathlib.Path(path)


def tvm_target() -> dict:
    """TVM's LLVM target for this CPU: ``{"kind": "llvm", "mcpu": <host cpu>, "num-cores": <cores>}``."""
    require("tvm", "TVM")
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": os.cpu_count() or 1}


def build_tvm(model: nn.Module, path, input_size: Sequence[int] = (1, 3, 224, 224), *, tune_trials: int = 0,
              work_dir=None, overwrite: bool = False) -> pathlib.Path:
    """Compile with TVM Relax for this CPU and write a shared library ``path`` (``.so``) plus ``path.json``.

    Args:
        tune_trials: 0: TVM's default schedules (the poster's "unopt"); > 0: MetaSchedule tuning of the
            operators within this many trials in total (the poster's "opt"), logged in ``work_dir``.

    Raises:
        RuntimeNotAvailable: apache-tvm is not installed (the ``[deploy]`` extra).
        UnsupportedOperatorError: the Relax importer cannot take an operator (named).
    """
    size = check_input_size(input_size)
    if isinstance(tune_trials, bool) or not isinstance(tune_trials, int) or tune_trials < 0:
        raise ValueError(f"tune_trials must be an int >= 0, got {tune_trials!r}")
    tvm = require("tvm", "TVM")
    frontend = require("tvm.relax.frontend.torch", "TVM (Relax PyTorch frontend)")
    from tvm import relax

    module = _deploy_module(model)
    target = tvm.target.Target(tvm_target())
    with torch.no_grad():
        try:
            ep = torch.export.export(module, (torch.rand(size),))
            mod = frontend.from_exported_program(ep, keep_params_as_input=False)
        except Exception as err:
            raise _unsupported("tvm", err) from err
    if tune_trials:
        work_dir = pathlib.Path(work_dir or pathlib.Path(path).with_suffix(".tuning"))
        pipeline = relax.get_pipeline("static_shape_tuning", target=target, work_dir=str(work_dir),
                                      total_trials=tune_trials)
        with target:
            mod = pipeline(mod)
    executable = tvm.compile(mod, target=target)
    with _atomic_path(path, overwrite) as tmp:
        executable.export_library(str(tmp))
    sidecar = pathlib.Path(str(path) + ".json")
    sidecar.write_text(json.dumps({"input_shape": list(size), "tune_trials": tune_trials,
                                   "target": str(target)}), encoding="utf-8")
    return pathlib.Path(path)
