"""Do runtimes timed side by side disturb each other? (issue 10: the harness behind every latency table).

Two ways one runtime skewed the next one's timing in chapter 06 and the benchmarks, each measured here with and
without the fix, FastDepth at ``--size``, batch 1, ``--threads`` threads:

1. ONNX Runtime's intra-op workers spin after a run and hold a core: PyTorch eager timed right after an ORT run,
   against PyTorch alone, with ORT's spinning on (ORT's default) and off (``OrtRunner``'s default); and ORT's own
   latency both ways, the price of turning spinning off.
2. TVM's ``runtime.config_threadpool`` pins the calling thread to core 0: ORT's latency after a bare call (as
   ``TvmRunner`` made it before) and after the affinity is restored, then the affinity around building a
   ``TvmRunner`` (which keeps it).

Run: ``.venv/bin/python benchmarks/bench_interference.py`` (``--size 96x128`` for the small input of bench_prune).
Medians of ``--repeats`` calls; each "after" call is preceded by one untimed call of the other runtime.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import torch

from depthlib.deploy import (OrtRunner, RuntimeNotAvailable, TorchRunner, build_tvm, export_onnx, load_runner,
                             machine_info)
from depthlib.models import create_model


def median_ms(fn, before=None, repeats: int = 30) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, each right after an untimed ``before()`` if given."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="224x224", help="HxW of the input")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    size = (1, 3, h, w)
    info = machine_info()
    print(f"CPU: {info['cpu']}; {info['flags']}; torch {info['torch']}; {args.threads} threads; input {h}x{w}; "
          f"median of {args.repeats} calls")
    torch.manual_seed(0)
    model = create_model("fastdepth").eval()
    x = torch.rand(size)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_interference_"))
    onnx = export_onnx(model, work / "m.onnx", size)
    torch_fn = TorchRunner(model, threads=args.threads).bind(x)
    torch.set_num_threads(args.threads)
    rows = [("pytorch eager alone", median_ms(torch_fn, repeats=args.repeats))]
    for spinning in (True, False):
        ort_fn = OrtRunner(onnx, threads=args.threads, spinning=spinning).bind(x)
        label = "on (ORT's default)" if spinning else "off (OrtRunner's default)"
        rows.append((f"pytorch eager right after ORT, spinning {label}", median_ms(torch_fn, ort_fn, args.repeats)))
        rows.append((f"ORT alone, spinning {label}", median_ms(ort_fn, repeats=args.repeats)))
    try:
        import tvm

        before = sorted(os.sched_getaffinity(0))
        tvm.get_global_func("runtime.config_threadpool")(0, args.threads)  # what TvmRunner used to call, bare
        pinned = sorted(os.sched_getaffinity(0))
        ort_fn = OrtRunner(onnx, threads=args.threads).bind(x)
        rows.append((f"ORT after a bare TVM config_threadpool (affinity {pinned})", median_ms(ort_fn, repeats=args.repeats)))
        os.sched_setaffinity(0, before)
        rows.append((f"ORT with the affinity restored ({before})", median_ms(ort_fn, repeats=args.repeats)))
        load_runner(build_tvm(model, work / "m.so", size), threads=args.threads)
        print(f"CPU affinity before / after building a TvmRunner: {before} / {sorted(os.sched_getaffinity(0))}")
    except (ImportError, RuntimeNotAvailable) as err:
        print(f"TVM part skipped: {err}")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measurement':<{width}} | median ms |\n|{'-' * (width + 2)}|-----------|")
    for label, ms in rows:
        print(f"| {label:<{width}} | {ms:9.2f} |")
    print("re-measure: .venv/bin/python benchmarks/bench_interference.py " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
