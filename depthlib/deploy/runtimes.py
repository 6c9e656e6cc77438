"""Run an exported model: one interface over PyTorch eager/compile, ONNX Runtime, ExecuTorch, TVM and LiteRT.

A runner is called on an image batch ``(B, 3, H, W)`` float32 RGB in [0, 1] (numpy array or tensor) and
returns depth ``(B, 1, H, W)`` as a float32 numpy array. It knows its ``runtime``, ``precision``, ``threads``
and, for a static export, its ``input_shape``: an input of another shape raises a ValueError giving the
expected shape, before the runtime sees it. Loading a missing, truncated or corrupt file raises
:class:`~depthlib.deploy.ArtifactError` naming the file. The thread count is fixed when the runner is built,
in the runtime's own pool (ONNX Runtime's ``intra_op_num_threads``, ExecuTorch's and TVM's thread pools,
LiteRT's ``num_threads``) and in PyTorch's (``torch.set_num_threads`` while it runs).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import ArtifactError, check_artifact, require
from .export import DeployModule

__all__ = ["Runner", "TorchRunner", "OrtRunner", "ExecuTorchRunner", "TvmRunner", "LiteRTRunner", "load_runner",
           "bound_runner"]


class Runner:
    """Base class: input checks, conversion, thread bookkeeping."""

    runtime = "?"

    def __init__(self, *, precision: str, threads: int, input_shape: Sequence[int] | None,
                 path: pathlib.Path | None = None) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.precision, self.threads, self.path = precision, threads, path
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None

    def _array(self, x) -> np.ndarray:
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1] != 3:
            raise ValueError(f"{self.runtime}: input must be (B, 3, H, W), got shape {arr.shape}")
        if self.input_shape is not None and tuple(arr.shape) != self.input_shape:
            where = f" ({self.path})" if self.path else ""
            raise ValueError(f"{self.runtime}{where}: this static export takes input shape {self.input_shape}, "
                             f"got {tuple(arr.shape)}")
        return arr

    def __call__(self, x) -> np.ndarray:
        return self.run(self._array(x))

    def run(self, arr: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, x) -> Callable[[], Any]:
        """A zero-argument callable running one inference on ``x`` (converted once), for the harness."""
        arr = self._array(x)
        return lambda: self.run(arr)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(runtime={self.runtime!r}, precision={self.precision!r}, "
                f"threads={self.threads}, input_shape={self.input_shape})")


class TorchRunner(Runner):
    """PyTorch eager, ``torch.compile`` (inductor) or, on CUDA, CUDA graphs / TensorRT.

    Args:
        model: the depth model (wrapped in :class:`DeployModule`; it applies its own recorded input normalisation).
        mode: ``"eager"``, ``"compile"`` (inductor, static shapes), ``"cudagraphs"`` (CUDA only:
            ``torch.compile(mode="reduce-overhead")``) or ``"tensorrt"`` (CUDA, torch-tensorrt).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the module and input cast).
        input_shape: the shape compiled for (``None``: any, eager only).
    """

    runtime = "pytorch"

    def __init__(self, model: nn.Module, *, mode: str = "eager", precision: str = "fp32", threads: int = 1,
                 device: str = "cpu", input_shape: Sequence[int] | None = None) -> None:
        modes = ("eager", "compile", "cudagraphs", "tensorrt")
        if mode not in modes:
            raise ValueError(f"mode must be one of {modes}, got {mode!r}")
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {sorted(dtypes)}, got {precision!r}")
        self.device = torch.device(device)
        if mode in ("cudagraphs", "tensorrt") and self.device.type != "cuda":
            raise ValueError(f"mode={mode!r} needs a CUDA device, got device={device!r}")
        if mode != "eager" and input_shape is None:
            raise ValueError(f"mode={mode!r} compiles for one shape: pass input_shape")
        super().__init__(precision=precision, threads=threads, input_shape=input_shape)
        self.runtime = "pytorch" if mode == "eager" else f"pytorch-{mode}"
        self.dtype = dtypes[precision]
        module = model if isinstance(model, DeployModule) else DeployModule(model)
        module = module.eval().to(self.device, self.dtype)
        if mode == "compile":
            module = torch.compile(module, dynamic=False)
        elif mode == "cudagraphs":
            module = torch.compile(module, mode="reduce-overhead", dynamic=False)
        elif mode == "tensorrt":
            trt = require("torch_tensorrt", "TensorRT (torch-tensorrt)")
            module = trt.compile(module, inputs=[torch.rand(self.input_shape, device=self.device, dtype=self.dtype)],
                                 enabled_precisions={self.dtype})
        self.module = module

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(arr).to(self.device, self.dtype)

    def run(self, arr: np.ndarray) -> np.ndarray:
        return self._forward(self._tensor(arr)).float().cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                out = self.module(x)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                return out
        finally:
            torch.set_num_threads(old)

    def bind(self, x) -> Callable[[], Any]:
        t = self._tensor(self._array(x))  # the input stays on the device: time the model, not the copy
        return lambda: self._forward(t)


class OrtRunner(Runner):
    """ONNX Runtime ``InferenceSession`` with ``intra_op_num_threads=threads`` (one inter-op thread).

    Args:
        path: the ``.onnx`` file.
        precision: a label for tables (``"fp32"``, ``"fp16"``, ``"int8-dynamic"``, ``"int8-static"``).
        optimization: ``"all"`` (ORT's default, ``ORT_ENABLE_ALL``), ``"extended"``, ``"basic"`` or ``"disable"``.
        providers: ONNX Runtime execution providers (default CPU).
        spinning: let the intra-op workers spin after a run (ORT's default). Off by default here: on a 2-core
            machine a spinning worker holds the second core after the run, so whatever is timed next beside it
            (PyTorch eager, here about 3x slower) is skewed; ORT itself loses a little at small inputs.
            ``benchmarks/bench_interference.py`` measures both; ``spinning=True`` times ORT as it ships.
    """

    runtime = "onnxruntime"

    def __init__(self, path, *, precision: str = "fp32", threads: int = 1, optimization: str = "all",
                 providers: Sequence[str] = ("CPUExecutionProvider",), spinning: bool = False) -> None:
        ort = require("onnxruntime", "ONNX Runtime")
        if not isinstance(spinning, bool):
            raise ValueError(f"spinning must be True or False, got {spinning!r}")
        path = check_artifact(path, (".onnx",), "ONNX")
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.graph_optimization_level = levels[optimization]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        except Exception as err:
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:300]})") from err
        inp = self.session.get_inputs()[0]
        shape = inp.shape if all(isinstance(d, int) for d in inp.shape) else None
        super().__init__(precision=precision, threads=threads, input_shape=shape, path=path)
        self.input_name = inp.name

    def run(self, arr: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: arr})[0], dtype=np.float32)


class ExecuTorchRunner(Runner):
    """An ExecuTorch ``.pte`` program (XNNPACK-delegated) through ``executorch.runtime``.

    ExecuTorch's thread pool is process-wide: building a runner resets it to ``threads``.
    """

    runtime = "executorch"

    def __init__(self, path, *, precision: str = "fp32", threads: int = 1) -> None:
        runtime_mod = require("executorch.runtime", "ExecuTorch")
        path = check_artifact(path, (".pte",), "ExecuTorch")
        pybind = require("executorch.extension.pybindings.portable_lib", "ExecuTorch")
        try:
            program = runtime_mod.Runtime.get().load_program(str(path))
            self.method = program.load_method("forward")
        except Exception as err:
            raise ArtifactError(f"{path}: ExecuTorch cannot load it ({err}); a truncated or corrupt .pte file?") \
                from err
        self._program = program
        shape = tuple(self.method.metadata.input_tensor_meta(0).sizes())
        super().__init__(precision=precision, threads=threads, input_shape=shape, path=path)
        self._pool = pybind
        self._reset(threads)

    def _reset(self, threads: int) -> None:
        # the reset is "unsafe" (it rebuilds the process-wide pool under running threads): only when needed
        if self._pool._threadpool_get_thread_count() != threads:
            self._pool._unsafe_reset_threadpool(threads)

    def run(self, arr: np.ndarray) -> np.ndarray:
        return self.method.execute([torch.from_numpy(arr)])[0].numpy()

    def bind(self, x) -> Callable[[], Any]:
        self._reset(self.threads)  # the pool is process-wide: another runner may have changed it
        t = torch.from_numpy(self._array(x))
        return lambda: self.method.execute([t])


def _config_tvm_threads(tvm, threads: int) -> None:
    """TVM's CPU thread pool with ``threads`` threads, leaving the process's CPU affinity as it was.

    TVM binds its workers to cores by default, and configuring the pool pins the *calling* thread to core 0: every
    runtime timed afterwards in the same process (and every child process it starts) then runs on one core
    (``benchmarks/bench_interference.py`` shows it). ``TVM_BIND_THREADS=0`` (unless the user set it) keeps TVM's
    workers unpinned like the other runtimes' threads, and the caller's affinity is restored in any case.
    """
    os.environ.setdefault("TVM_BIND_THREADS", "0")
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        tvm.get_global_func("runtime.config_threadpool")(0, threads)  # (affinity mode 0 = big cores, count)
    finally:
        if before is not None and os.sched_getaffinity(0) != before:
            os.sched_setaffinity(0, before)


class TvmRunner(Runner):
    """A TVM Relax library built by :func:`depthlib.deploy.build_tvm` (``.so`` plus its ``.json`` sidecar)."""

    runtime = "tvm"

    def __init__(self, path, *, precision: str = "fp32", threads: int = 1) -> None:
        tvm = require("tvm", "TVM")
        from tvm import relax

        path = check_artifact(path, (".so",), "TVM library")
        sidecar = pathlib.Path(str(path) + ".json")
        if not sidecar.is_file():
            raise FileNotFoundError(f"{sidecar} is missing: build_tvm writes it beside {path.name} (input shape)")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            shape = tuple(meta["input_shape"])
        except (ValueError, KeyError) as err:
            raise ArtifactError(f"{sidecar}: not the JSON sidecar build_tvm writes ({err})") from err
        try:
            lib = tvm.runtime.load_module(str(path))
        except Exception as err:
            raise ArtifactError(f"{path}: TVM cannot load it ({str(err).splitlines()[-1][:300]})") from err
        _config_tvm_threads(tvm, threads)
        self.tuned_trials = int(meta.get("tune_trials", 0))
        self.dev = tvm.cpu()
        self.vm = relax.VirtualMachine(lib, self.dev)
        self._tvm = tvm
        super().__init__(precision=precision, threads=threads, input_shape=shape, path=path)
        self.runtime = "tvm-tuned" if self.tuned_trials else "tvm"

    def _input(self, arr: np.ndarray):
        return self._tvm.runtime.tensor(arr, self.dev)

    def run(self, arr: np.ndarray) -> np.ndarray:
        out = self.vm["main"](self._input(arr))
        out = out[0] if not hasattr(out, "numpy") else out
        return out.numpy()

    def bind(self, x) -> Callable[[], Any]:
        _config_tvm_threads(self._tvm, self.threads)
        t = self._input(self._array(x))
        main = self.vm["main"]
        return lambda: main(t)


class LiteRTRunner(Runner):
    """A LiteRT (TFLite) flatbuffer run by the LiteRT interpreter (XNNPACK delegate by default)."""

    runtime = "litert"

    def __init__(self, path, *, precision: str = "fp32", threads: int = 1) -> None:
        interp_mod = require("ai_edge_litert.interpreter", "LiteRT (ai-edge-litert)")
        path = check_artifact(path, (".tflite",), "LiteRT")
        try:
            self.interpreter = interp_mod.Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as err:
            raise ArtifactError(f"{path}: LiteRT cannot load it ({err})") from err
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        super().__init__(precision=precision, threads=threads, input_shape=tuple(self.inp["shape"]), path=path)

    def run(self, arr: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.inp["index"], arr)
        self.interpreter.invoke()
        return np.asarray(self.interpreter.get_tensor(self.out["index"]), dtype=np.float32)


_BY_SUFFIX = {".onnx": OrtRunner, ".pte": ExecuTorchRunner, ".so": TvmRunner, ".tflite": LiteRTRunner}


def load_runner(path, *, threads: int = 1, precision: str = "fp32", **kwargs: Any) -> Runner:
    """The runner for an exported file, chosen by its suffix (``.onnx .pte .so .tflite``)."""
    path = pathlib.Path(path)
    if path.suffix not in _BY_SUFFIX:
        raise ValueError(f"{path}: unknown artifact suffix {path.suffix!r}; expected one of {sorted(_BY_SUFFIX)}")
    return _BY_SUFFIX[path.suffix](path, threads=threads, precision=precision, **kwargs)


def bound_runner(path, images, *, threads: int = 1, precision: str = "fp32") -> Callable[[], Any]:
    """``load_runner(path).bind(images)``: a picklable factory for :func:`depthlib.deploy.time_isolated`, which
    builds the runner inside a fresh process (``time_isolated(bound_runner, path, images, threads=2)``)."""
    return load_runner(path, threads=threads, precision=precision).bind(images)
