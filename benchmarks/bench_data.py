"""Data throughput on this machine, printed as a table (median of repeats).

1. The procedural generator at 240x320, indoor (version 2, the default, and version 1) and outdoor: batched
   (``render_batch`` of 16 frames), per sample in order (``open_dataset("synth")[i]``, which renders 16 frames
   ahead in one pass) and through a 2-worker DataLoader (each batch one ``__getitems__`` render).
2. Reading ``nyu_png`` and ``nyu_h5`` (480x640 frames) + FastDepth's training transform through a 2-worker
   DataLoader, batch 8, against the time of one FastDepth training step (224x224, batch 8, SGD) on the CPU.
   Uses the 40 real pairs in ../shared/data/nyu_data when present, else generated frames written in the
   same layouts.

Run: ``.venv/bin/python benchmarks/bench_data.py`` (``--repeats``, ``--threads``, ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthlib.data import open_dataset  # noqa: E402
from depthlib.data.synth import render_batch  # noqa: E402
from depthlib.data.transforms import fastdepth_train_transform  # noqa: E402
from depthlib.data.writer import write_nyu_png  # noqa: E402

SHARED_NYU = pathlib.Path(os.environ.get("DEPTHLIB_SHARED", REPO.parent / "shared")) / "data" / "nyu_data"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, lazy imports, worker start-up paths
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_generator(scene: str, repeats: int, frames: int, version: int = 2) -> list[tuple[str, float, str]]:
    rows = []
    batch = 16
    start = [0]
    scene_name = f"{scene} v{version}" if scene == "indoor" else scene

    def batched():
        for s in range(0, frames, batch):
            render_batch(0, range(start[0] + s, start[0] + s + batch), (240, 320), scene, version=version)
        start[0] += frames

    t = median_time(batched, repeats)
    rows.append((f"synth {scene_name} 240x320, batched x{batch}", frames / t, "frames/s"))
    ds = open_dataset("synth", n=10**6, size=(240, 320), scene=scene, version=version)
    offset = [0]

    def single():
        for i in range(frames):
            ds[offset[0] + i]
        offset[0] += frames

    t = median_time(single, repeats)
    rows.append((f"synth {scene_name} 240x320, per sample", frames / t, "frames/s"))
    # As training uses it: rendered in 2 DataLoader workers (one torch thread each).
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, persistent_workers=True)
    batches = max(2, frames // 8)

    def workers():
        for n, _ in enumerate(loader, start=1):
            if n == batches:
                break

    t = median_time(workers, repeats)
    rows.append((f"synth {scene_name} 240x320, 2-worker DataLoader, batch 8", batches * 8 / t, "frames/s"))
    return rows


def make_sources(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, str]:
    """nyu_png root (real pairs if available) and an nyu_h5 tree holding the same frames."""
    if (SHARED_NYU / "data" / "nyu2_test.csv").is_file():
        png_root, origin = SHARED_NYU, "40 real NYU test pairs"
    else:
        png_root, origin = tmp / "nyu_png", "40 generated 480x640 frames"
        write_nyu_png(png_root, 40, (480, 640), seed=0, scene="indoor")
    h5_root = tmp / "nyu_h5"
    ds = open_dataset("nyu_png", png_root, split="test")
    (h5_root / "val" / "scene").mkdir(parents=True)
    for i in range(len(ds)):
        s = ds[i]
        with h5py.File(h5_root / "val" / "scene" / f"{i:05d}.h5", "w") as f:
            f["rgb"] = (s["image"] * 255).round().to(torch.uint8).numpy()
            f["depth"] = s["depth"][0].numpy().astype(np.float32)
    return png_root, h5_root, origin


def bench_loader(kind: str, root: pathlib.Path, repeats: int, batches: int) -> float:
    split = "test" if kind == "nyu_png" else "val"
    ds = open_dataset(kind, root, split=split, transform=fastdepth_train_transform())
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, persistent_workers=True, drop_last=True)

    def run():
        n = 0
        while n < batches:
            for _ in loader:
                n += 1
                if n == batches:
                    break

    t = median_time(run, repeats)
    return batches / t


def bench_train_step(repeats: int) -> float | None:
    try:
        from depthlib.models import create_model
    except ImportError:
        return None
    model = create_model("fastdepth").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(8, 3, 224, 224), torch.rand(8, 1, 224, 224) * 10

    def step():
        out = model(x)
        pred = out["depth"] if isinstance(out, dict) else out
        loss = (pred - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return 1.0 / median_time(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="fewer frames per repeat")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = 16 if args.quick else 64
    from depthlib.train._engine import cpu_features

    feats = cpu_features()
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start, median of {args.repeats} repeats; CPU {feats['model']}: "
          + ", ".join(f"{k}={'yes' if feats[k] else 'no'}" for k in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
          + "\n")
    rows = []
    for scene, version in (("indoor", 2), ("indoor", 1), ("outdoor", 2)):
        rows += bench_generator(scene, args.repeats, frames, version)
    with tempfile.TemporaryDirectory() as tmp:
        png_root, h5_root, origin = make_sources(pathlib.Path(tmp))
        for kind, root in (("nyu_png", png_root), ("nyu_h5", h5_root)):
            rate = bench_loader(kind, root, args.repeats, batches=10 if args.quick else 20)
            rows.append((f"{kind} + fastdepth_train_transform, 2 workers, batch 8 ({origin})", rate, "batches/s"))
    steps = bench_train_step(args.repeats)
    if steps is None:
        rows.append(("FastDepth training step 224x224 batch 8", float("nan"), "depthlib.models missing"))
    else:
        rows.append(("FastDepth training step 224x224 batch 8 (SGD, CPU)", steps, "steps/s"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measurement'.ljust(width)} | {'rate':>9} | unit |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|------|")
    for name, rate, unit in rows:
        print(f"| {name.ljust(width)} | {rate:9.1f} | {unit} |")
    if steps is not None:
        loader_rates = [r[1] for r in rows if r[2] == "batches/s"]
        ahead = all(rate > steps for rate in loader_rates)
        print(f"\nloaders {'stay ahead of' if ahead else 'fall behind'} the training step "
              f"({min(loader_rates):.1f} batches/s vs {steps:.1f} steps/s)")
    print("re-measure: .venv/bin/python benchmarks/bench_data.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
