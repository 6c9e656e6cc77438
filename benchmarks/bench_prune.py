"""Pruning FastDepth: does it get faster, and what does it cost? (issue 11, "Speed and accuracy").

For every seed: train FastDepth on procedural indoor scenes, prune copies of it with NetAdapt (MACs as the
resource, short fine-tunes, the best proposal kept per iteration, a long fine-tune at the end) to each
``--budgets`` fraction of its MACs, and, for contrast, with haly2021's unstructured L1 pruning at the same
fraction (zeros in dense tensors). Then one table, all models measured side by side in this run:

    model, params, MACs, latency (ms, median, batch 1, ``--threads`` threads) per runtime, delta1 and RMSE on the
    evaluation set (the 40 real NYU test pairs when ../shared has them, else held-out procedural scenes),
    mean over seeds, and the ratios to the unpruned model.

Runtimes: ``torch-eager`` and, when installed, ``onnxruntime`` (a plain ``depthlib.deploy.export_onnx`` export run by
``OrtRunner`` with ``--threads`` intra-op threads); every model of a seed is timed side by side in interleaved rounds
with :func:`depthlib.deploy.time_interleaved`.

Usage::

    .venv/bin/python benchmarks/bench_prune.py                      # quick: 2 seeds, 96x128, a few minutes
    .venv/bin/python benchmarks/bench_prune.py --seeds 0 --n-train 32 --epochs 1   # a smoke run
    .venv/bin/python benchmarks/bench_prune.py --json prune.json    # also the records as JSON

Latencies on a shared machine are noisy: medians of ``--repeats`` passes, every model measured in the same
run, and the CPU's vector extensions printed with the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import sys
import tempfile
import time

import pandas as pd
import torch

from depthlib.data import open_dataset
from depthlib.data.transforms import fastdepth_val_transform
from depthlib.models import create_model
from depthlib.deploy import OrtRunner, RuntimeNotAvailable, TorchRunner, export_onnx, machine_info, time_interleaved
from depthlib.profiler import count_macs, count_params
from depthlib.prune import load_iteration, netadapt_fit, prune_unstructured, sparsity_report
from depthlib.train import TrainConfig, evaluate, fit


def latencies(models: dict[str, torch.nn.Module], size: tuple[int, ...], threads: int, repeats: int,
              work: pathlib.Path) -> dict[tuple[str, str], float]:
    """``{(model, runtime): median ms}``: every model in PyTorch eager and (when installed) as a plain ONNX Runtime
    export, all timed side by side in interleaved rounds (:func:`depthlib.deploy.time_interleaved`), so that a
    busy phase of a shared CPU slows every model alike."""
    x = torch.rand(size)
    fns = {(name, "torch-eager"): TorchRunner(m, threads=threads).bind(x) for name, m in models.items()}
    for i, (name, m) in enumerate(models.items()):
        try:
            path = export_onnx(m, work / f"latency-{i}.onnx", size, overwrite=True)
            fns[(name, "onnxruntime")] = OrtRunner(path, threads=threads).bind(x)
        except RuntimeNotAvailable:
            pass
    timings = time_interleaved(fns, warmup=5, repeats=repeats, rounds=5, threads=threads)
    return {key: t.median_ms for key, t in timings.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    p.add_argument("--budgets", default="0.5", help="NetAdapt MACs budgets, fractions of the unpruned MACs")
    p.add_argument("--size", default="96x128", help="HxW of training, evaluation and latency")
    p.add_argument("--n-train", type=int, default=128)
    p.add_argument("--n-score", type=int, default=16, help="held-out procedural scenes scoring NetAdapt's proposals")
    p.add_argument("--epochs", type=int, default=4, help="training epochs of the unpruned model")
    p.add_argument("--short-epochs", type=int, default=1, help="fine-tune epochs per NetAdapt proposal")
    p.add_argument("--long-epochs", type=int, default=2, help="fine-tune epochs of the final pruned model")
    p.add_argument("--step", type=float, default=0.125, help="NetAdapt's MACs reduction per iteration (fraction)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the records here")
    p.add_argument("--work", type=pathlib.Path, default=None, help="NetAdapt checkpoints (default: a temp dir)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    h, w = (int(v) for v in args.size.lower().split("x"))
    size = (1, 3, h, w)
    torch.set_num_threads(args.threads)

    train = list(open_dataset("synth", split="train", n=args.n_train, size=(h, w), seed=0, scene="indoor"))
    held = list(open_dataset("synth", split="val", n=args.n_score, size=(h, w), seed=0, scene="indoor"))
    from depthlib.book import find_nyu_data

    nyu = find_nyu_data()
    if nyu is not None:
        evaluation = list(open_dataset("nyu_png", nyu, split="test", transform=fastdepth_val_transform((h, w))))
        eval_name = f"NYU test, {len(evaluation)} real pairs"
    else:
        evaluation = list(open_dataset("synth", split="test", n=32, size=(h, w), seed=0, scene="indoor"))
        eval_name = "procedural test scenes (no ../shared NYU pairs)"
    recipe = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="step", step_size=10,
                  batch_size=8, loss="l1", max_depth=10.0, progress=False)
    work = args.work or pathlib.Path(tempfile.mkdtemp(prefix="bench_prune_"))
    rows = []
    t_start = time.time()
    for seed in seeds:
        torch.manual_seed(seed)
        base = create_model("fastdepth")
        fit(base, train, None, TrainConfig(epochs=args.epochs, seed=seed, **recipe))
        base.eval()
        models = {"fastdepth (unpruned)": base}
        res = netadapt_fit(base, train, held, torch.rand(size), budget=min(budgets),
                           short_config=TrainConfig(epochs=args.short_epochs, seed=seed, **recipe),
                           step=args.step, out_dir=work / f"seed{seed}", progress=False)
        base_macs = count_macs(base, size)
        for b in budgets:
            first = res.history.index[res.history["macs"] <= b * base_macs][0]
            pruned = load_iteration(work / f"seed{seed}", int(res.history.loc[first, "iteration"]), create_model("fastdepth"))
            fit(pruned, train, None, TrainConfig(epochs=args.long_epochs, seed=seed, **recipe))
            models[f"NetAdapt {b:.2f} MACs"] = pruned.eval()
            models[f"unstructured L1 {1 - b:.2f}"] = prune_unstructured(base, 1 - b)
        lat = latencies(models, size, args.threads, args.repeats, work / f"seed{seed}")
        for name, m in models.items():
            m.eval()
            metrics = evaluate(m, evaluation, TrainConfig(**recipe))
            nonzero = sparsity_report(m)["nonzero_params"]
            for runtime in ("torch-eager", "onnxruntime"):
                if (name, runtime) in lat:
                    rows.append({"model": name, "seed": seed, "params": count_params(m), "nonzero_params": nonzero,
                                 "macs": count_macs(m, size), "latency_ms": lat[name, runtime], "runtime": runtime,
                                 "delta1": metrics["delta1"], "rmse": metrics["rmse"]})
    df = pd.DataFrame(rows)
    table = df.groupby(["model", "runtime"], sort=False).agg(
        params=("params", "mean"), nonzero_params=("nonzero_params", "mean"), macs=("macs", "mean"),
        latency_ms=("latency_ms", "mean"), delta1=("delta1", "mean"), delta1_std=("delta1", "std"),
        rmse=("rmse", "mean")).reset_index()
    ref = table[table["model"] == "fastdepth (unpruned)"].set_index("runtime")
    for col in ("params", "macs", "latency_ms"):
        table[f"{col} ratio"] = table[col] / table["runtime"].map(ref[col])
    table["delta1 - unpruned"] = table["delta1"] - table["runtime"].map(ref["delta1"])
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    info = machine_info()
    print(f"CPU: {info['cpu']}; {info['flags']}; torch {info['torch']} (CPU capability {info['torch_cpu_capability']}), "
          f"{args.threads} threads; input {h}x{w}, batch 1; median of {args.repeats} passes in 5 interleaved rounds")
    print(f"seeds {seeds}; trained {args.epochs} epochs on {len(train)} procedural scenes; evaluated on {eval_name}; "
          f"{time.time() - t_start:.0f} s")
    shown = table.assign(params=(table["params"] / 1e6).round(3), nonzero_params=(table["nonzero_params"] / 1e6).round(3),
                         macs=(table["macs"] / 1e9).round(4))
    print(shown.rename(columns={"params": "params (M)", "nonzero_params": "non-zero (M)", "macs": "GMACs",
                                "latency_ms": "latency (ms)"}).round(3).to_string(index=False))
    print("command: .venv/bin/python benchmarks/bench_prune.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    if args.json:
        records = [{"model": r.model, "params": int(r.params), "macs": int(r.macs), "latency_ms": float(r.latency_ms),
                    "runtime": r.runtime, "delta1": float(r.delta1), "rmse": float(r.rmse), "seeds": seeds}
                   for r in table.itertuples(index=False)]
        args.json.write_text(json.dumps(records, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
