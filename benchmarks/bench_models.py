"""Complexity and speed of every model preset at its paper resolution (issue 3, "Speed").

Prints two tables:

1. per preset: parameters (M), convolution weights (M), GMACs, fp32/fp16 size (MB) and the median forward
   latency (ms, batch 1) on this CPU with 1 and 2 threads; ``fastdepth`` also with channels_last.
2. training throughput of ``fastdepth`` at 224x224, batch 8 (one SGD step = forward, L1 loss, backward, update;
   images/s from the median step time), channels_last off and on.

Usage::

    .venv/bin/python benchmarks/bench_models.py            # full: 5 warm-up + 20 timed passes
    .venv/bin/python benchmarks/bench_models.py --quick    # 2 + 5 passes, a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_models.py --models 'mbv2-*' --device cuda

Latencies on a machine shared with other jobs are noisy: the median of N is reported and the number of
passes is printed with the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import pandas as pd
import torch

from depthlib.models import create_model, list_models
from depthlib.profiler import measure_latency, profile_model


def train_throughput(name: str, *, batch: int = 8, size: tuple[int, int] = (224, 224), threads: int = 2,
                     channels_last: bool = False, warmup: int = 2, repeats: int = 10, device: str = "cpu") -> float:
    """Images per second of SGD training steps (FastDepth's optimiser: lr 0.01, momentum 0.9, wd 1e-4)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(name).train().to(device=device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.rand(batch, 3, *size, device=device).contiguous(memory_format=fmt)
    y = torch.rand(batch, 1, *size, device=device) * 10
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        for i in range(warmup + repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = model(x)
            depth = out["depth"] if isinstance(out, dict) else out
            (depth - y).abs().mean().backward()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer passes (2 warm-up, 5 timed)")
    parser.add_argument("--models", default="*", help="shell pattern over preset names (default: all)")
    parser.add_argument("--threads", default="1,2", help="comma-separated CPU thread counts")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (CUDA adds a GPU latency column)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-throughput table")
    args = parser.parse_args(argv)
    warmup, repeats = (2, 5) if args.quick else (5, 20)
    threads = [int(t) for t in args.threads.split(",")]
    names = list_models(args.models)
    if not names:
        parser.error(f"--models {args.models!r} matches no preset; valid: {', '.join(list_models())}")

    rows = []
    for name in names:
        model = create_model(name).eval()
        h, w = model.default_input_size
        size = (1, 3, h, w)
        res = profile_model(model, size)
        row = {"model": name, "input": f"{h}x{w}", "params_M": res["params"] / 1e6,
               "conv_weights_M": res["conv_weights"] / 1e6, "GMACs": res["macs"] / 1e9,
               "fp32_MB": res["size_mb_fp32"], "fp16_MB": res["size_mb_fp16"]}
        for t in threads:
            row[f"cpu_{t}t_ms"] = measure_latency(model, size, threads=t, warmup=warmup, repeats=repeats)
        if args.device.startswith("cuda"):
            row["cuda_ms"] = measure_latency(model, size, device=args.device, warmup=warmup, repeats=repeats)
            row["cuda_fp16_ms"] = measure_latency(model, size, device=args.device, warmup=warmup, repeats=repeats,
                                                  dtype=torch.float16)
            model.float().cpu()
        rows.append(row)
        print(f"  done {name}", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).set_index("model")
    print(f"\nPresets at their paper resolution; CPU latency = median of {repeats} after {warmup} warm-up passes, "
          f"batch 1, torch {torch.__version__}, {torch.get_num_threads()} threads available\n")
    print(table.to_markdown(floatfmt=".3g"))

    if "fastdepth" in names:
        model = create_model("fastdepth")
        layout_rows = [{"threads": t, "channels_last": cl,
                        "cpu_ms": measure_latency(model, (1, 3, 224, 224), threads=t, warmup=warmup,
                                                  repeats=repeats, channels_last=cl)}
                       for t in threads for cl in (False, True)]
        print("\nfastdepth inference, 224x224, batch 1: memory format (median ms)\n")
        print(pd.DataFrame(layout_rows).to_markdown(index=False, floatfmt=".3g"))

    if not args.no_train:
        train_rows = []
        runs = [("cpu", t) for t in threads] + ([(args.device, None)] if args.device.startswith("cuda") else [])
        for dev, t in runs:
            for cl in (False, True):
                ips = train_throughput("fastdepth", channels_last=cl, threads=t or 1, device=dev,
                                       warmup=2 if dev == "cpu" else 5, repeats=max(3, repeats // 2))
                train_rows.append({"device": dev, "threads": t, "channels_last": cl, "images_per_s": ips})
        print("\nfastdepth training throughput, 224x224, batch 8, SGD step (median step time)\n")
        print(pd.DataFrame(train_rows).to_markdown(index=False, floatfmt=".3g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
