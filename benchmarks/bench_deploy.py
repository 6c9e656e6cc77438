"""Every runtime and precision of a model on this CPU, side by side (issue 10, "Speed").

For FastDepth at 224x224, batch 1 (by default), prints the machine (CPU model and ISA flags), the GEMM peak
measured in the same run, then one row per runtime x precision x thread count: median ms and IQR, the ratio to
PyTorch eager fp32 and to a plain ONNX Runtime export (default session options but a fixed thread count and no
spinning, see ``OrtRunner``) of the same weights, achieved GMAC/s and fraction of the GEMM peak, file size, and
the accuracy change against eager
fp32 on the real NYU pairs (max |difference|, RMSE change in %, delta1 change). Forms that cannot be built here
are listed with the reason. It ends with the two targets checked at 2 threads:

- the fastest fp32 deploy path (any form but eager and plain ORT) at most 0.8x plain ONNX Runtime fp32;
- the fastest int8 path at most 0.6x plain ONNX Runtime fp32, with delta1 within 0.01 and RMSE within 2 %.

The weights: the preset with its ImageNet encoder (``../shared/weights`` or ``data/weights``) fitted for
``--train-epochs`` epochs on the first half of the real NYU pairs (also the int8 calibration images); the second
half is the evaluation set. Without the NYU pairs, procedural scenes stand in (said in the output). The fitted
weights are cached in ``--work-dir``.

Usage::

    .venv/bin/python benchmarks/bench_deploy.py                       # FastDepth, 1 and 2 threads
    .venv/bin/python benchmarks/bench_deploy.py --json deploy.json    # also the rows as JSON records
    .venv/bin/python benchmarks/bench_deploy.py --model mai2021-1 --size 480x640 --threads 2
    .venv/bin/python benchmarks/bench_deploy.py --quick                # fewer passes, no TVM, a smoke check

Timing: the forms are timed in interleaved rounds (each round visits every form in turn) so that a shared,
drifting machine slows them alike; medians over ``--repeats`` passes after ``--warmup``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import pandas as pd
import torch

from depthlib.book import find_nyu_data, find_weights, project_root
from depthlib.data import open_dataset
from depthlib.data.transforms import fastdepth_val_transform
from depthlib.deploy import FORMS, briefly_trained, build_forms, gemm_peak, machine_info, measure_forms, stack_samples
from depthlib.profiler import count_macs

JSON_FIELDS = ("runtime", "precision", "threads", "median_ms", "ratio_eager", "ratio_ort", "delta1_change",
               "rmse_change_pct")
ENCODER_WEIGHTS = {"mobilenet": "mobilenet_v1_imagenet_from_tflite.pth",
                   "mobilenetv2": "mobilenet_v2_imagenet_from_tflite.pth"}


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 224x224, got {text!r}") from None
    return h, w


def _encoder_weights(name: str):
    # FastDepth's presets use MobileNet v1; the MobileNetV2 re-creation v2; other presets train from scratch here
    key = "mobilenetv2" if "mobilenetv2" in name or name.startswith("mbv2") else "mobilenet"
    return find_weights(ENCODER_WEIGHTS[key]) if name.startswith(("fastdepth", "mobilenet", "mbv2")) else None


def load_pairs(size: tuple[int, int], n_synth: int = 16):
    """(train, eval) datasets at ``size``: the real NYU pairs split in halves, or procedural scenes."""
    root = find_nyu_data()
    if root is not None:
        data = open_dataset("nyu_png", root, split="test", transform=fastdepth_val_transform(size))
        half = len(data) // 2
        return (torch.utils.data.Subset(data, range(half)), torch.utils.data.Subset(data, range(half, len(data))),
                f"real NYU Depth v2 pairs ({root}): {half} to fit and calibrate, {len(data) - half} to evaluate")
    train = open_dataset("synth", n=n_synth, size=size, seed=0, scene="indoor")
    evaluation = open_dataset("synth", n=n_synth, size=size, seed=1, scene="indoor")
    return train, evaluation, "procedural indoor scenes (the NYU pairs are absent): not real images"


def reference_model(name: str, train, epochs: int, work_dir: pathlib.Path, size, threads: int):
    weights = _encoder_weights(name)
    # r2: briefly_trained's second recipe (the head starts at the data's mean depth); r1 weights are not reused
    tag = f"{name}-{size[0]}x{size[1]}-e{epochs}-{'imagenet' if weights else 'scratch'}-n{len(train)}-r2"
    path = work_dir / f"{tag}.pt"
    model = briefly_trained(name, train, epochs=0, weights=weights)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), f"{tag} (cached in {path})"
    t0 = time.perf_counter()
    model = briefly_trained(name, train, epochs=epochs, weights=weights, threads=threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model.eval(), f"{tag} (fitted in {time.perf_counter() - t0:.0f} s)"


def targets(table: pd.DataFrame, threads: int = 2) -> list[str]:
    """The issue's two speed targets checked on ``table`` at ``threads``."""
    t = table[(table["available"]) & (table["threads"] == threads)]
    lines = []
    fp32 = t[(t["precision"] == "fp32") & ~t["runtime"].isin(["pytorch", "onnxruntime"])]
    if len(fp32):
        best = fp32.loc[fp32["ratio_ort"].idxmin()]
        ok = best["ratio_ort"] <= 0.8
        lines.append(f"fastest fp32 deploy path at {threads} threads: {best['runtime']} {best['median_ms']:.1f} ms = "
                     f"{best['ratio_ort']:.2f}x plain ORT fp32 (target <= 0.8x): {'MET' if ok else 'NOT MET'}")
    int8 = t[t["precision"].str.startswith("int8")]
    if len(int8):
        accurate = int8[(int8["delta1_change"].abs() <= 0.01) & (int8["rmse_change_pct"].abs() <= 2.0)]
        pool = accurate if len(accurate) else int8
        best = pool.loc[pool["ratio_ort"].idxmin()]
        ok = len(accurate) > 0 and best["ratio_ort"] <= 0.6
        lines.append(f"fastest int8 path at {threads} threads{' within the accuracy bounds' if len(accurate) else ''}: "
                     f"{best['runtime']} {best['precision']} {best['median_ms']:.1f} ms = {best['ratio_ort']:.2f}x "
                     f"plain ORT fp32 (target <= 0.6x), delta1 change {best['delta1_change']:+.4f} (<= 0.01), "
                     f"RMSE change {best['rmse_change_pct']:+.2f} % (<= 2 %): {'MET' if ok else 'NOT MET'}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fastdepth")
    p.add_argument("--size", type=_hw, default=(224, 224), help="HxW of the export (default 224x224)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the repeats are split into")
    p.add_argument("--train-epochs", type=int, default=5, help="epochs fitted on the NYU half (0: as initialised)")
    p.add_argument("--tune-trials", type=int, default=0, help="TVM MetaSchedule trials (0: no tuned TVM row)")
    p.add_argument("--forms", nargs="+", default=None, help="runtime:precision pairs (default: all)")
    p.add_argument("--work-dir", type=pathlib.Path, default=None, help="exports and fitted weights")
    p.add_argument("--json", type=pathlib.Path, default=None, help="also write the rows as JSON records")
    p.add_argument("--quick", action="store_true", help="2 warm-up + 6 passes, no TVM: a smoke check")
    args = p.parse_args(argv)
    forms = FORMS if args.forms is None else [tuple(f.split(":", 1)) for f in args.forms]
    if args.quick:
        args.warmup, args.repeats, args.rounds = 2, 6, 2
        forms = [f for f in forms if not f[0].startswith("tvm")]
    if args.tune_trials == 0:
        forms = [f for f in forms if f[0] != "tvm-tuned"]
    work = args.work_dir or project_root() / ".cache" / "depthlib" / "deploy-bench"
    size = (1, 3, *args.size)

    machine = machine_info()
    print(f"machine: {machine['cpu']} ({machine['machine']}, {machine['logical_cpus']} logical CPUs); "
          f"torch {machine['torch']} CPU capability {machine['torch_cpu_capability']}")
    print(f"CPU flags: {machine['flags'] or '(none of the listed)'}")
    for n in args.threads:
        g = gemm_peak(n)
        print(f"GEMM peak ({g['n']}^3 fp32 matmul, {n} thread(s)): {g['gmac_per_s']:.1f} GMAC/s")

    train, evaluation, data_note = load_pairs(args.size)
    print(f"data: {data_note}")
    model, model_note = reference_model(args.model, train, args.train_epochs, work, args.size, 1)
    print(f"weights: {model_note}")
    calib, _, _ = stack_samples(train)
    images, depths, masks = stack_samples(evaluation)
    t0 = time.perf_counter()
    built = build_forms(model, work / f"{args.model}-{args.size[0]}x{args.size[1]}", size, forms=forms,
                        calibration=calib)
    print(f"exported {sum(f.available for f in built)} of {len(built)} forms in {time.perf_counter() - t0:.0f} s")
    table = measure_forms(built, threads=args.threads, images=images, depths=depths, masks=masks,
                          inverse_relative=getattr(model, "output_kind", "metric") == "inverse_relative",
                          macs=count_macs(model, size), warmup=args.warmup, repeats=args.repeats,
                          rounds=args.rounds, extra={"model": args.model})

    ok = table[table["available"]].copy()
    cols = ["runtime", "precision", "threads", "median_ms", "iqr_ms", "ratio_eager", "ratio_ort", "gmac_per_s",
            "fraction_of_peak", "size_mb", "max_abs_diff", "rmse_change_pct", "delta1_change"]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        print(f"\n{args.model} at {args.size[0]}x{args.size[1]}, batch 1; median of {args.repeats} passes "
              f"({args.rounds} interleaved rounds) after {args.warmup} warm-up; eval RMSE of eager fp32: "
              f"{ok['rmse_ref'].iloc[0]:.3f} m, delta1 {ok['delta1_ref'].iloc[0]:.3f}")
        print(ok[cols].to_string(index=False))
    missing = table[~table["available"]]
    for _, row in missing.iterrows():
        print(f"not available: {row['runtime']} {row['precision']}: {row['reason']}")
    print()
    for n in sorted(set(args.threads)):
        for line in targets(table, n):
            print(line)
    command = "python benchmarks/bench_deploy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nre-measure: {command.strip()}")
    if args.json:
        records = []
        for _, row in table.iterrows():
            rec = {k: row.get(k) for k in JSON_FIELDS}
            rec.update({k: row.get(k) for k in ("iqr_ms", "gmac_per_s", "size_mb", "max_abs_diff", "available",
                                               "reason", "cpu", "cpu_flags", "model")})
            records.append({k: (None if isinstance(v, float) and math.isnan(v) else
                                (v.item() if hasattr(v, "item") else v)) for k, v in rec.items()})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")
        print(f"wrote {len(records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
