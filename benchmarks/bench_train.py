"""Training throughput of ``depthlib.train.fit`` with its defaults against a plain PyTorch loop (issue 9).

Both train FastDepth (random init) on the same in-memory procedural frames at 224x224, batch 8, SGD
(lr 0.01, momentum 0.9, weight decay 1e-4), L1 loss, with the same number of torch threads, in the same
process, alternately (plain, fit, plain, fit, ...) so that a shared CPU's load hits both alike:

- plain: fp32, contiguous tensors, ``torch.optim.SGD`` with its default implementation, a DataLoader over
  the samples, ImageNet normalisation on the batch: the loop of a PyTorch tutorial.
- fit: ``fit(model, data, config=TrainConfig(epochs=E, batch_size=8, ...))`` with every speed switch at its
  default (``channels_last``, ``cpu_amp``, ``fused_optimizer``, ``compile``).

Each side's images/s is taken over its epochs after the first (warm: allocator, oneDNN primitives, compile).
The table gives the median over repeats and the ratio; the CPU's flags that decide the fast paths
(avx2, avx512f, avx512_bf16, amx_bf16) are printed with it.

Run: ``.venv/bin/python benchmarks/bench_train.py`` (``--repeats 3 --epochs 3 --samples 48 --threads 2``);
``--quick`` for a short check. Add ``--switches`` for one row per switch turned off (its contribution).

``--seeds N`` instead compares results: FastDepth (ImageNet encoder when the converted weights are present)
trained with fit's defaults and with every speed switch off, for seeds 0..N-1, on procedural frames
(version 2, 64x96, ``--seed-frames`` of them, ``--seed-epochs``), evaluated on the real NYU pairs when present, else on
procedural validation frames: the table gives each side's mean and standard deviation over seeds
and the difference of the means beside the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time
import warnings

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthlib.data import open_dataset  # noqa: E402
from depthlib.models import create_model  # noqa: E402
from depthlib.train import TrainConfig, fit  # noqa: E402
from depthlib.train._engine import machine_banner  # noqa: E402


def make_data(n: int, size: tuple[int, int]) -> list[dict]:
    ds = open_dataset("synth", n=n, size=size, seed=0)
    return [{k: v for k, v in ds[i].items() if k in ("image", "depth", "mask")} for i in range(n)]


def plain_loop(data: list[dict], epochs: int, batch: int, seed: int) -> tuple[float, float]:
    """Images/s of a plain fp32 contiguous loop over epochs 2..E, and images per CPU second over all epochs."""
    from torchvision.transforms.v2.functional import normalize

    torch.manual_seed(seed)
    model = create_model("fastdepth").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True)
    rates = []
    cpu0 = time.process_time()
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for b in loader:
            x = normalize(b["image"], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
            out = model(x)
            pred = out["depth"] if isinstance(out, dict) else out
            m = b["mask"]
            loss = (pred - b["depth"]).abs()[m].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t0))
    cpu_rate = epochs * len(data) / (time.process_time() - cpu0)
    return (statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]), cpu_rate


def fit_loop(data: list[dict], epochs: int, batch: int, seed: int, **switches) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = create_model("fastdepth")
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=0.01, seed=seed, progress=False, **switches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu0 = time.process_time()
        hist = fit(model, data, config=cfg)
        cpu_rate = epochs * len(data) / (time.process_time() - cpu0)
    rates = hist["images_per_s"].tolist()
    return (statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]), cpu_rate


def seed_comparison(seeds: int, frames: int, epochs: int) -> None:
    import pandas as pd

    from depthlib.transfer import nyu_eval_set, synth_like_nyu, transfer_run

    size = (64, 96)
    train = synth_like_nyu(frames, size, version=2)
    nyu_root = REPO.parent / "shared" / "data" / "nyu_data"
    if (nyu_root / "data" / "nyu2_test.csv").is_file():
        evals = {"NYU real (40 pairs)": nyu_eval_set(nyu_root, size)}
    else:
        evals = {"synth val": synth_like_nyu(max(16, frames // 4), size, version=2, split="val")}
    pre = "auto"  # the converted ImageNet MobileNet when present, else random (create_model(weights=...))
    off = {"channels_last": False, "cpu_amp": None, "fused_optimizer": False}
    rows = []
    for seed in range(seeds):
        for name, sw in (("defaults", {}), ("switches off", off)):
            for ev_name, ev in evals.items():
                r = _run_with(train, ev, seed, epochs, pre, sw)
                rows.append({"setting": name, "eval": ev_name, "seed": seed, **r})
    df = pd.DataFrame(rows)
    print(f"FastDepth {size[0]}x{size[1]}, {frames} procedural frames (v2) x {epochs} epochs, SGD lr 0.05, "
          f"batch 8, init {'ImageNet' if pre else 'random'}; seeds 0..{seeds - 1}\n")
    print("| eval | metric | defaults (mean +- std) | switches off (mean +- std) | difference of means | "
          "seed spread (larger std) |")
    print("|---|---|---|---|---|---|")
    for ev_name in evals:
        for metric in ("nyu_delta1", "nyu_rmse", "nyu_aligned_delta1"):
            a = df[(df.setting == "defaults") & (df["eval"] == ev_name)][metric]
            b = df[(df.setting == "switches off") & (df["eval"] == ev_name)][metric]
            print(f"| {ev_name} | {metric.replace('nyu_', '')} | {a.mean():.3f} +- {a.std():.3f} | "
                  f"{b.mean():.3f} +- {b.std():.3f} | {a.mean() - b.mean():+.3f} | {max(a.std(), b.std()):.3f} |")
    t = df.groupby("setting")["train_time_s"].sum()
    print(f"\ntraining time over all runs: defaults {t['defaults']:.0f} s, switches off {t['switches off']:.0f} s")


def _run_with(train, evaluation, seed, epochs, pre, switches):
    from depthlib.transfer import transfer_run

    return transfer_run(train, evaluation, seed=seed, epochs=epochs, batch_size=8, lr=0.05, weights=pre,
                        config_overrides=switches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 repeat, 2 epochs of 32 samples")
    parser.add_argument("--switches", action="store_true", help="also fit with each default switch turned off")
    parser.add_argument("--seeds", type=int, default=0, help="compare results over this many seeds instead")
    parser.add_argument("--seed-frames", type=int, default=128)
    parser.add_argument("--seed-epochs", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.epochs, args.samples = 1, 2, 32
    torch.set_num_threads(args.threads)
    print(machine_banner(args.threads))
    if args.seeds:
        seed_comparison(args.seeds, args.seed_frames, args.seed_epochs)
        print("\nre-measure: .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))
        return
    print(f"FastDepth {args.size[0]}x{args.size[1]}, batch {args.batch}, SGD, {args.samples} samples x "
          f"{args.epochs} epochs (first epoch = warm-up), median of {args.repeats} alternating repeats\n")
    data = make_data(args.samples, tuple(args.size))
    variants = {"fit (defaults)": {}}
    if args.switches:
        variants.update({
            "fit, channels_last=False": {"channels_last": False},
            "fit, cpu_amp='auto' (bf16 where native)": {"cpu_amp": "auto"},
            "fit, fused_optimizer=False": {"fused_optimizer": False},
            "fit, every switch off": {"channels_last": False, "fused_optimizer": False,
                                      "compile": False},
        })
    results: dict[str, list[tuple[float, float]]] = {"plain fp32 contiguous loop": [], **{k: [] for k in variants}}
    for r in range(args.repeats):
        results["plain fp32 contiguous loop"].append(plain_loop(data, args.epochs, args.batch, seed=r))
        for name, sw in variants.items():
            results[name].append(fit_loop(data, args.epochs, args.batch, seed=r, **sw))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f}" for k, v in results.items()), flush=True)
    base = statistics.median(x[0] for x in results["plain fp32 contiguous loop"])
    base_cpu = statistics.median(x[1] for x in results["plain fp32 contiguous loop"])
    width = max(len(k) for k in results)
    # images per CPU second (all epochs, warm-up included) is what a loaded machine distorts least with 1 thread;
    # with several threads it also counts the threads' spin-waits
    print(f"| {'loop'.ljust(width)} | images/s | x plain | images/CPU-s | x plain |")
    print(f"|{'-' * (width + 2)}|----------|---------|--------------|---------|")
    for name, rates in results.items():
        med = statistics.median(x[0] for x in rates)
        med_cpu = statistics.median(x[1] for x in rates)
        print(f"| {name.ljust(width)} | {med:8.2f} | {med / base:7.2f} | {med_cpu:12.2f} | {med_cpu / base_cpu:7.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (other jobs on the CPU lower both sides alike)")
    print("re-measure: .venv/bin/python benchmarks/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
