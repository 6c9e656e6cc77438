"""One latency harness for every chapter: warm-up, fixed threads, median and IQR, CUDA events, isolation.

A measurement times a zero-argument callable (one inference) ``repeats`` times after ``warmup`` untimed calls:

- CPU: ``time.perf_counter`` around each call, with ``torch.set_num_threads(threads)`` for the duration of the
  measurement (restored afterwards). Runtimes that own their thread pool (ONNX Runtime, ExecuTorch, TVM) are
  given the same count when their session is created (see :mod:`depthlib.deploy.runtimes`).
- CUDA: a pair of CUDA events around each call, after a ``torch.cuda.synchronize``; the elapsed time is read after
  synchronising, so asynchronous kernel launches are not mistaken for finished work.
- ``isolate=True`` runs the whole measurement in a fresh ``spawn`` process (:func:`time_isolated`), so that one
  runtime's thread pools, allocator state or JIT caches cannot slow down or speed up the next one.

It reports the median and the interquartile range (robust to a shared, noisy machine) and, with
:func:`latency_record`, the machine (CPU model and the instruction-set flags that decide which kernels run), the
achieved GMAC/s of the model and the machine's measured GEMM peak (:func:`gemm_peak`), so a reader sees how far
each runtime is from what the hardware does on a dense matrix product in the same run.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["Timing", "time_fn", "time_interleaved", "time_isolated", "gemm_peak", "machine_info", "cpu_flags",
           "latency_record", "KEY_CPU_FLAGS"]

#: The instruction-set flags that decide which inference kernels a CPU gets (printed with every benchmark).
KEY_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                 "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16")


@dataclasses.dataclass(frozen=True)
class Timing:
    """The result of one latency measurement (all times in ms)."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    repeats: int
    warmup: int
    threads: int | None
    device: str
    timer: str          # "perf_counter" or "cuda_events"
    isolated: bool

    @property
    def iqr_ms(self) -> float:
        """Interquartile range ``q3 - q1``."""
        return self.q3_ms - self.q1_ms

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["iqr_ms"] = self.iqr_ms
        return out


def _quartiles(times: Sequence[float]) -> tuple[float, float]:
    if len(times) < 2:
        return float(times[0]), float(times[0])
    q = statistics.quantiles(times, n=4, method="inclusive")
    return float(q[0]), float(q[2])


def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")


def time_fn(fn: Callable[[], Any], *, warmup: int = 5, repeats: int = 20, threads: int | None = 1,
            device: str | torch.device = "cpu", _times: list[float] | None = None) -> Timing:
    """Time ``fn()`` (one inference): ``warmup`` untimed calls, then ``repeats`` timed ones.

    Args:
        fn: a callable without arguments; its inputs are bound beforehand (``functools.partial``).
        warmup: untimed calls first (allocator, kernel selection, caches, lazy initialisation).
        repeats: timed calls; median and quartiles are reported.
        threads: ``torch.set_num_threads`` for the measurement (restored afterwards); ``None`` leaves it.
            It only governs PyTorch's own pool: other runtimes take their count when they are built.
        device: ``"cpu"`` (wall clock) or a CUDA device (CUDA events with synchronisation).

    Returns:
        :class:`Timing`.
    """
    _check_counts(warmup, repeats)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or a CUDA device, got {str(device)!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[float] = []
    try:
        for _ in range(warmup):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(dev)
                times.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
    if _times is not None:  # time_interleaved collects one callable's times over several rounds
        _times.extend(times)
    q1, q3 = _quartiles(times)
    return Timing(median_ms=float(statistics.median(times)), q1_ms=q1, q3_ms=q3, min_ms=float(min(times)),
                  repeats=repeats, warmup=warmup, threads=threads, device=str(dev),
                  timer="cuda_events" if dev.type == "cuda" else "perf_counter", isolated=False)


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int = 5, repeats: int = 20, rounds: int = 5,
                     threads: int | None = 1, device: str | torch.device = "cpu") -> dict[str, Timing]:
    """Time several callables side by side: ``rounds`` rounds, each timing every callable ``repeats / rounds``
    times in turn, so that a slow phase of a shared machine hits all of them alike rather than the one that
    happened to run then. Each callable gets ``warmup`` untimed calls first.

    Returns:
        ``{name: Timing}`` over all of that callable's ``repeats`` timed calls.
    """
    _check_counts(warmup, repeats)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= repeats:
        raise ValueError(f"rounds must be an int in [1, repeats={repeats}], got {rounds!r}")
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    times: dict[str, list[float]] = {name: [] for name in fns}
    first = {name: True for name in fns}
    for count in per_round:
        for name, fn in fns.items():
            t = time_fn(fn, warmup=warmup if first[name] else 0, repeats=count, threads=threads, device=device,
                        _times=times[name])
            first[name] = False
    out = {}
    for name, values in times.items():
        q1, q3 = _quartiles(values)
        out[name] = dataclasses.replace(t, median_ms=float(statistics.median(values)), q1_ms=q1, q3_ms=q3,
                                        min_ms=float(min(values)), repeats=repeats, warmup=warmup)
    return out


def _isolated_worker(factory: Callable[..., Callable[[], Any]], args: tuple, kwargs: dict,
                     timing_kwargs: dict) -> dict:
    threads = timing_kwargs.get("threads")
    if threads is not None:
        torch.set_num_threads(threads)
    fn = factory(*args, **kwargs)
    return time_fn(fn, **timing_kwargs).as_dict()


def time_isolated(factory: Callable[..., Callable[[], Any]], *args: Any, warmup: int = 5, repeats: int = 20,
                  threads: int | None = 1, device: str = "cpu", timeout_s: float = 600.0, **kwargs: Any) -> Timing:
    """Like :func:`time_fn`, in a fresh ``spawn`` process: ``factory(*args, **kwargs)`` builds the callable there.

    ``factory`` and its arguments must be picklable (a module-level function and plain values or paths), so the
    model or session is built inside the child and nothing of the parent's runtime state leaks in.
    """
    _check_counts(warmup, repeats)
    timing_kwargs = dict(warmup=warmup, repeats=repeats, threads=threads, device=device)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        res = pool.apply_async(_isolated_worker, (factory, args, kwargs, timing_kwargs))
        out = res.get(timeout=timeout_s)
    out.pop("iqr_ms")
    out["isolated"] = True
    return Timing(**out)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (``/proc/cpuinfo`` on Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What decides the speed of a CPU measurement: CPU model, logical cores, key ISA flags, versions.

    Returns:
        ``{"cpu", "machine", "logical_cpus", "flags" (the :data:`KEY_CPU_FLAGS` present, space-separated),
        "torch_cpu_capability", "torch", "gpu"}`` (``gpu`` is the CUDA device name or ``""``).
    """
    flags = cpu_flags()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older builds lack it
        capability = ""
    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "flags": " ".join(f for f in KEY_CPU_FLAGS if f in flags),
        "torch_cpu_capability": capability,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
    }


def gemm_peak(threads: int | None = 1, *, n: int = 1024, dtype: torch.dtype = torch.float32,
              device: str = "cpu", warmup: int = 2, repeats: int = 10) -> dict[str, float]:
    """The machine's achievable dense throughput: an ``n x n @ n x n`` matrix product, timed by :func:`time_fn`.

    Returns:
        ``{"gmac_per_s", "median_ms", "n", "threads"}``: ``n**3`` multiply-accumulates over the median time.
    """
    if n < 16:
        raise ValueError(f"n must be >= 16 for a meaningful GEMM, got {n}")
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    with torch.inference_mode():
        t = time_fn(functools.partial(torch.mm, a, b, out=out), warmup=warmup, repeats=repeats, threads=threads,
                    device=device)
    return {"gmac_per_s": n ** 3 / (t.median_ms * 1e-3) / 1e9, "median_ms": t.median_ms, "n": n,
            "threads": threads}


def latency_record(timing: Timing, *, runtime: str, precision: str, input_size: Sequence[int],
                   macs: int | None = None, peak_gmac_per_s: float | None = None,
                   machine: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One row of a latency table: what ran, how, where, how fast, and how close to the machine's peak.

    Args:
        timing: from :func:`time_fn` / :func:`time_isolated`.
        runtime, precision: e.g. ``"onnxruntime"``, ``"int8-static"``.
        input_size: ``(B, C, H, W)``.
        macs: multiply-accumulates of one inference (``depthlib.profiler.count_macs``), for ``gmac_per_s``.
        peak_gmac_per_s: :func:`gemm_peak`'s value from the same run, for ``fraction_of_peak``.
        machine: :func:`machine_info` (default: measured now).
        extra: more columns (model name, artifact size...).
    """
    machine = machine_info() if machine is None else machine
    row: dict[str, Any] = {"runtime": runtime, "precision": precision, "threads": timing.threads,
                           "input_size": "x".join(str(int(s)) for s in input_size)}
    row.update({k: v for k, v in timing.as_dict().items() if k not in ("threads",)})
    gmacs = macs / 1e9 if macs is not None else float("nan")
    row["gmacs"] = gmacs
    row["gmac_per_s"] = gmacs / (timing.median_ms * 1e-3) if macs is not None else float("nan")
    row["peak_gmac_per_s"] = float("nan") if peak_gmac_per_s is None else float(peak_gmac_per_s)
    row["fraction_of_peak"] = row["gmac_per_s"] / row["peak_gmac_per_s"] if peak_gmac_per_s else float("nan")
    row["cpu"] = machine["cpu"]
    row["cpu_flags"] = machine["flags"]
    row["gpu"] = machine["gpu"]
    row.update(extra)
    return row
