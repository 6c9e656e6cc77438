"""Every form a model can be shipped in, built, checked against eager fp32 and timed side by side.

:func:`build_forms` exports one model to each requested runtime and precision and returns :class:`Form` s;
a form that cannot be built (runtime not installed, converter refusing an operator) is kept with
``available=False`` and the reason, so that a table or a chapter shows the cell as "not available" instead of
dropping it. :func:`measure_forms` checks each available form's outputs against eager fp32 on real images
(:func:`depthlib.deploy.accuracy.accuracy_change`), then times it with the harness at each thread count and
returns one row per form and thread count, with the ratios to eager fp32 and to plain ONNX Runtime fp32.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from ._common import RuntimeNotAvailable, UnsupportedOperatorError, check_input_size
from .accuracy import accuracy_change, predict
from .export import build_tvm, export_executorch, export_litert, export_onnx
from .harness import gemm_peak, latency_record, machine_info, time_interleaved
from .quantize import onnx_int8_dynamic, onnx_int8_static
from .runtimes import ExecuTorchRunner, LiteRTRunner, OrtRunner, Runner, TorchRunner, TvmRunner

__all__ = ["Form", "FORMS", "build_forms", "measure_forms", "file_size_mb", "briefly_trained"]

#: (runtime, precision) pairs :func:`build_forms` knows, in table order. ``onnxruntime`` fp32 is the "plain"
#: ONNX Runtime export (default session options but the thread count and no spinning: see OrtRunner), the reference
#: of the speed targets.
FORMS = (
    ("pytorch", "fp32"), ("pytorch-compile", "fp32"),
    ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8-dynamic"), ("onnxruntime", "int8-static"),
    ("executorch", "fp32"), ("executorch", "int8-static"),
    ("tvm", "fp32"), ("tvm-tuned", "fp32"),
    ("litert", "fp32"),
)


@dataclasses.dataclass
class Form:
    """One shipped form of a model: how to build its runner for a thread count, or why it is not available."""

    runtime: str
    precision: str
    make: Callable[[int], Runner] | None = None
    artifact: pathlib.Path | None = None
    size_mb: float = float("nan")
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.make is not None

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"


def file_size_mb(path) -> float:
    """Size of a file (a TVM library: with nothing else) in MB of 10^6 bytes."""
    return pathlib.Path(path).stat().st_size / 1e6


def _state_size_mb(model: nn.Module, bytes_per_value: int) -> float:
    from depthlib.profiler import model_size_mb

    return model_size_mb(model, bytes_per_value)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{type(err).__name__}: {text[:400]}"


def build_forms(model: nn.Module, work_dir, input_size: Sequence[int] = (1, 3, 224, 224), *,
                forms: Sequence[tuple[str, str]] = FORMS, calibration=None, tune_trials: int = 0,
                device: str = "cpu", overwrite: bool = True) -> list[Form]:
    """Export ``model`` to each ``(runtime, precision)`` of ``forms`` under ``work_dir``.

    Args:
        model: the fp32 model (eval mode is set; its weights are not changed).
        work_dir: folder of the exported files (``<runtime>-<precision>.<suffix>``).
        input_size: the static ``(B, 3, H, W)`` of every export.
        forms: pairs from :data:`FORMS`.
        calibration: training images for the static int8 forms (``(N, 3, H, W)`` in [0, 1] of the input size).
        tune_trials: MetaSchedule trials of ``("tvm-tuned", "fp32")`` (0: that form is skipped as not requested).
        device: ``"cpu"``; on ``"cuda"`` the PyTorch forms run there.
        overwrite: replace files of an earlier run in ``work_dir``.

    Returns:
        one :class:`Form` per requested pair, in order; unavailable ones carry the reason.
    """
    size = check_input_size(input_size)
    unknown = [f for f in forms if tuple(f) not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown}; known: {list(FORMS)}")
    work = pathlib.Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    out: list[Form] = []
    onnx_fp32: pathlib.Path | None = None

    def path(runtime: str, precision: str, suffix: str) -> pathlib.Path:
        return work / f"{runtime}-{precision}{suffix}"

    for runtime, precision in forms:
        form = Form(runtime, precision)
        try:
            if runtime in ("pytorch", "pytorch-compile"):
                mode = "eager" if runtime == "pytorch" else "compile"
                form.make = functools.partial(_torch_runner, model, mode, size, device)
                form.size_mb = _state_size_mb(model, 4)
            elif runtime == "onnxruntime":
                if onnx_fp32 is None:
                    onnx_fp32 = export_onnx(model, path("onnxruntime", "fp32", ".onnx"), size, overwrite=overwrite)
                target = {"fp32": lambda p: onnx_fp32,
                          "fp16": lambda p: export_onnx(model, p, size, precision="fp16", overwrite=overwrite),
                          "int8-dynamic": lambda p: onnx_int8_dynamic(onnx_fp32, p, overwrite=overwrite),
                          "int8-static": lambda p: onnx_int8_static(onnx_fp32, p, calibration, overwrite=overwrite),
                          }[precision](path(runtime, precision, ".onnx"))
                form.artifact = target
                form.make = functools.partial(_file_runner, OrtRunner, target, precision)
            elif runtime == "executorch":
                quant = "int8" if precision.startswith("int8") else None
                target = export_executorch(model, path(runtime, precision, ".pte"), size, quantize=quant,
                                           calibration=calibration, overwrite=overwrite)
                form.artifact = target
                form.make = functools.partial(_file_runner, ExecuTorchRunner, target, precision)
            elif runtime in ("tvm", "tvm-tuned"):
                trials = tune_trials if runtime == "tvm-tuned" else 0
                if runtime == "tvm-tuned" and trials == 0:
                    form.reason = "not requested: tune_trials is 0 (tuning is in the paper profile)"
                    out.append(form)
                    continue
                target = build_tvm(model, path(runtime, precision, ".so"), size, tune_trials=trials,
                                   overwrite=overwrite)
                form.artifact = target
                form.make = functools.partial(_file_runner, TvmRunner, target, precision)
            elif runtime == "litert":
                target = export_litert(model, path(runtime, precision, ".tflite"), size, overwrite=overwrite)
                form.artifact = target
                form.make = functools.partial(_file_runner, LiteRTRunner, target, precision)
            if form.artifact is not None:
                form.size_mb = file_size_mb(form.artifact)
        except (RuntimeNotAvailable, UnsupportedOperatorError) as err:
            form.make, form.reason = None, _reason(err)
        except Exception as err:  # a converter failing on this model: keep the other forms
            form.make, form.reason = None, f"export failed: {_reason(err)}"
        out.append(form)
    return out


def _torch_runner(model: nn.Module, mode: str, size: tuple, device: str, threads: int) -> Runner:
    return TorchRunner(model, mode=mode, threads=threads, device=device, input_shape=size)


def _file_runner(cls, target: pathlib.Path, precision: str, threads: int) -> Runner:
    return cls(target, precision=precision, threads=threads)


def measure_forms(forms: Sequence[Form], *, threads: Sequence[int] = (1, 2), images: torch.Tensor,
                  depths: torch.Tensor, masks: torch.Tensor | None = None, inverse_relative: bool = False,
                  macs: int | None = None, warmup: int = 5, repeats: int = 20, rounds: int = 5, peak: bool = True,
                  device: str = "cpu", max_depth: float | None = 10.0, extra: dict[str, Any] | None = None
                  ) -> pd.DataFrame:
    """Check, then time, every form at every thread count; one row per (form, threads).

    Args:
        forms: from :func:`build_forms`; the first ``("pytorch", "fp32")`` form is the accuracy reference and the
            ``ratio_eager`` denominator, ``("onnxruntime", "fp32")`` the ``ratio_ort`` one.
        threads: thread counts.
        images: real evaluation images ``(N, 3, H, W)`` in [0, 1] at the export size; ``depths`` (and ``masks``)
            ``(N, 1, H, W)``: the ground truth in metres.
        inverse_relative: MiDaS-style output, aligned per image before scoring.
        macs: MACs of one inference (``depthlib.profiler.count_macs``) for the GMAC/s column.
        warmup, repeats, rounds: per form and thread count; the repeats are split into ``rounds`` rounds that
            visit every form in turn (:func:`depthlib.deploy.harness.time_interleaved`).
        peak: also measure the GEMM peak at each thread count in this run (:func:`gemm_peak`).

    Returns:
        DataFrame with columns ``runtime precision threads median_ms q1_ms q3_ms iqr_ms ratio_eager ratio_ort
        gmac_per_s peak_gmac_per_s fraction_of_peak size_mb max_abs_diff rmse rmse_change_pct delta1
        delta1_change available reason cpu cpu_flags ...``; unavailable forms have one row with the reason.
    """
    forms = list(forms)
    ref_form = next((f for f in forms if (f.runtime, f.precision) == ("pytorch", "fp32") and f.available), None)
    if ref_form is None:
        raise ValueError("measure_forms needs an available ('pytorch', 'fp32') form: the accuracy reference")
    machine = machine_info()
    ref_pred = predict(ref_form.make(1), images)
    accuracy: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    for form in forms:
        if not form.available:
            continue
        try:
            pred = ref_pred if form is ref_form else predict(form.make(1), images)
            accuracy[form.label] = accuracy_change(pred, ref_pred, depths, masks, inverse_relative=inverse_relative,
                                                   max_depth=max_depth)
        except Exception as err:  # a form that builds but cannot run is reported, not timed
            form.make, form.reason = None, f"run failed: {_reason(err)}"
    x = images[:1]
    for n in threads:
        peak_value = gemm_peak(n)["gmac_per_s"] if peak else None
        runners = {form.label: form.make(n) for form in forms if form.available}
        # every form is timed in each of `rounds` rounds in turn: drift of a shared machine hits all alike
        timings = time_interleaved({label: r.bind(x) for label, r in runners.items()}, warmup=warmup,
                                   repeats=repeats, rounds=min(rounds, repeats), threads=n, device=device)
        for form in forms:
            if not form.available:
                continue
            rows.append(latency_record(timings[form.label], runtime=form.runtime, precision=form.precision,
                                       input_size=tuple(x.shape), macs=macs, peak_gmac_per_s=peak_value,
                                       machine=machine, size_mb=form.size_mb, available=True, reason="",
                                       **accuracy[form.label], **(extra or {})))
        del runners
    for form in forms:
        if not form.available:
            rows.append({"runtime": form.runtime, "precision": form.precision, "available": False,
                         "reason": form.reason, "cpu": machine["cpu"], "cpu_flags": machine["flags"],
                         **(extra or {})})
    table = pd.DataFrame(rows)
    for col, (rt, prec) in (("ratio_eager", ("pytorch", "fp32")), ("ratio_ort", ("onnxruntime", "fp32"))):
        ref = table[(table["runtime"] == rt) & (table["precision"] == prec)].set_index("threads")["median_ms"]
        table[col] = [m / ref[t] if t in ref.index else float("nan")
                      for m, t in zip(table.get("median_ms", pd.Series(dtype=float)), table.get("threads"))]
    return table


def briefly_trained(name: str, train_data, *, epochs: int, weights=None, batch_size: int = 4,
                    lr: float = 1e-3, seed: int = 0, threads: int | None = None) -> nn.Module:
    """A preset fitted for a few epochs, so that its predictions have a metric scale and the change a deployed
    form makes to RMSE and delta1 means something. Adam and L1, with the head's bias started at the training
    data's mean depth (:meth:`depthlib.models.DepthNet.init_output_bias`): without it FastDepth's ReLU head
    stays near 0 m for the few dozen steps a deployment check affords (``tests/test_deploy.py`` checks the
    scale). Not a reproduction of any paper's accuracy.

    Args:
        name: a preset of :func:`depthlib.models.create_model`.
        train_data: a depthlib dataset (images in [0, 1] at the export size).
        epochs: 0 returns the initialised model (ImageNet encoder if given, random decoder).
        weights: the encoder's initialisation, passed to ``create_model(weights=...)`` (``None``, ``"auto"``, a path).
        threads: ``torch.set_num_threads`` during training (restored).
    """
    from depthlib.models import create_model
    from depthlib.train import TrainConfig, fit, mean_valid_depth

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    torch.manual_seed(seed)
    model = create_model(name, weights=weights)
    if epochs:
        if getattr(model, "output_kind", None) == "metric" and hasattr(model, "init_output_bias"):
            # a few dozen steps cannot move FastDepth's head from ~0 m to the room's scale: start it there
            model.init_output_bias(mean_valid_depth(train_data))
        old = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            fit(model, train_data, config=TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr,
                                                      weight_decay=0.0, schedule="none", loss="l1", seed=seed,
                                                      deterministic=False, progress=False))
        finally:
            torch.set_num_threads(old)
    return model.eval()
