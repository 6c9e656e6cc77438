"""Deployment: export a depth model to the runtimes the studies used, lower its precision, time it correctly.

- :mod:`depthlib.deploy.harness`   the one latency harness (warm-up, fixed threads, median + IQR, CUDA events,
  process isolation, machine record, GEMM peak); :func:`depthlib.profiler.measure_latency` uses it.
- :mod:`depthlib.deploy.export`    ONNX (dynamo exporter), ExecuTorch + XNNPACK, LiteRT, TVM; the model is
  shipped with the input normalisation the model records (:class:`DeployModule`): input RGB ``(B, 3, H, W)`` in [0, 1].
- :mod:`depthlib.deploy.quantize`  dynamic and static int8 (QDQ, per-channel) for ONNX Runtime (fp16: an export option).
- :mod:`depthlib.deploy.runtimes`  one runner interface over PyTorch eager/compile, ONNX Runtime, ExecuTorch,
  TVM and LiteRT (``runner(images) -> depth``), with input-shape and file checks.
- :mod:`depthlib.deploy.accuracy`  each form against eager fp32: output difference, change of RMSE and delta1.
- :mod:`depthlib.deploy.forms`     build every form of a model, check and time them side by side.

The runtimes beyond ONNX Runtime come with the ``[deploy]`` extra (``pip install -e '.[deploy]'``); a missing
one raises :class:`RuntimeNotAvailable` naming the extra (or, for litert-torch, pip's resolver error against
the pinned torch).

Example:
    >>> from depthlib.models import create_model
    >>> from depthlib.deploy import export_onnx, OrtRunner, time_fn
    >>> path = export_onnx(create_model("fastdepth"), "fastdepth.onnx", (1, 3, 224, 224))  # doctest: +SKIP
    >>> runner = OrtRunner(path, threads=2)                                                # doctest: +SKIP
    >>> time_fn(runner.bind(images[:1]), threads=2).median_ms                              # doctest: +SKIP
"""

from ._common import ArtifactError, RuntimeNotAvailable, UnsupportedOperatorError
from .accuracy import accuracy_change, predict, stack_samples
from .export import DeployModule, build_tvm, calibration_batches, export_executorch, export_litert, export_onnx
from .forms import FORMS, Form, briefly_trained, build_forms, file_size_mb, measure_forms
from .harness import (Timing, cpu_flags, gemm_peak, latency_record, machine_info, time_fn, time_interleaved,
                      time_isolated)
from .quantize import onnx_input_size, onnx_int8_dynamic, onnx_int8_static
from .runtimes import (ExecuTorchRunner, LiteRTRunner, OrtRunner, Runner, TorchRunner, TvmRunner, bound_runner,
                       load_runner)

__all__ = [
    "ArtifactError", "DeployModule", "ExecuTorchRunner", "FORMS", "Form", "LiteRTRunner", "OrtRunner", "Runner",
    "bound_runner", "briefly_trained",
    "RuntimeNotAvailable", "Timing", "TorchRunner", "TvmRunner", "UnsupportedOperatorError", "accuracy_change",
    "build_forms", "build_tvm", "calibration_batches", "cpu_flags", "export_executorch", "export_litert",
    "export_onnx", "file_size_mb", "gemm_peak", "latency_record", "load_runner", "machine_info", "measure_forms",
    "onnx_input_size", "onnx_int8_dynamic", "onnx_int8_static", "predict", "stack_samples", "time_fn",
    "time_interleaved", "time_isolated",
]
