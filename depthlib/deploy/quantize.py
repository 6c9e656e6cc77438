"""Integer precision for ONNX models: dynamic int8 and static int8 (QDQ, per-channel weights).

Both use ONNX Runtime's own quantization tool (``onnxruntime.quantization``), so the files they write are what
ONNX Runtime users ship (float16 is an export option: ``export_onnx(..., precision="fp16")``):

- :func:`onnx_int8_dynamic`: int8 weights, activations quantized on the fly per inference (``ConvInteger``).
- :func:`onnx_int8_static`: weights (per output channel) and activations in int8, the activation ranges
  calibrated on training images, in the QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime
  fuses into integer kernels). On an x86 CPU without VNNI, ``reduce_range`` (7-bit weights) avoids the
  saturation of the u8 x s8 instructions (ORT's documentation); it is chosen from the CPU flags by default.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Sequence

from ._common import check_artifact, require
from .export import _atomic_path, calibration_batches
from .harness import cpu_flags

__all__ = ["onnx_int8_dynamic", "onnx_int8_static", "onnx_input_size", "cpu_has_vnni"]


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (``avx512_vnni`` or ``avx_vnni``) for u8 x s8 dot products."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def onnx_input_size(path) -> tuple[int, ...]:
    """The static input shape of an ONNX model's first input; a ValueError names a dynamic dimension."""
    onnx = require("onnx", "ONNX")
    from ._common import ArtifactError

    path = check_artifact(path, (".onnx",), "ONNX")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable ONNX model ({err})") from err
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    if -1 in shape:
        raise ValueError(f"{path}: input shape {shape} has a dynamic dimension; export with a static input_size")
    return shape


def onnx_int8_dynamic(src, dst, *, per_channel: bool = True, overwrite: bool = False) -> pathlib.Path:
    """Dynamic int8 quantization (weights int8 ahead of time, activations per inference)."""
    q = require("onnxruntime.quantization", "ONNX Runtime quantization")
    src = check_artifact(src, (".onnx",), "ONNX")
    with _atomic_path(dst, overwrite) as tmp:
        q.quantize_dynamic(str(src), str(tmp), weight_type=q.QuantType.QInt8, per_channel=per_channel)
    return pathlib.Path(dst)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, name: str, batches: Sequence) -> None:
        self.name, self.batches, self.i = name, [b.numpy() for b in batches], 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def onnx_int8_static(src, dst, calibration, *, per_channel: bool = True, reduce_range: bool | None = None,
                     calibrate_method: str = "minmax", overwrite: bool = False) -> pathlib.Path:
    """Static int8 quantization in the QDQ format, calibrated on ``calibration`` images.

    Args:
        src: an fp32 ONNX model with a static input (see :func:`depthlib.deploy.export_onnx`).
        calibration: training images, ``(N, 3, H, W)`` in [0, 1] of the export's size (see
            :func:`depthlib.deploy.export.calibration_batches`); an empty set or another size is a ValueError.
        per_channel: one scale per output channel of each weight (the usual choice for depthwise convolutions,
            whose channels have very different ranges).
        reduce_range: 7-bit weights; ``None``: True on a CPU without VNNI.
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
    """
    q = require("onnxruntime.quantization", "ONNX Runtime quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = check_artifact(src, (".onnx",), "ONNX")
    size = onnx_input_size(src)
    batches = calibration_batches(calibration, size)
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise ValueError(f"calibrate_method must be one of {sorted(methods)}, got {calibrate_method!r}")
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    onnx = require("onnx", "ONNX")
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmpdir, _atomic_path(dst, overwrite) as tmp:
        pre = pathlib.Path(tmpdir) / "preprocessed.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        q.quantize_static(str(pre), str(tmp), _Reader(name, batches), quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          per_channel=per_channel, reduce_range=reduce_range,
                          calibrate_method=methods[calibrate_method])
    return pathlib.Path(dst)
