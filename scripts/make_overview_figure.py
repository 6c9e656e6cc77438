"""Draws book/_static/overview.png, the figure of README.md and of the book's cover page, and the favicon.

A procedural indoor scene and its depth map (seed 0), the pair every chapter of the quick profile starts
from. Re-run after changing depthlib.data.synth or depthlib.plotting:

    .venv/bin/python scripts/make_overview_figure.py
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # a script: no display needed

import matplotlib.pyplot as plt  # noqa: E402

from depthlib import plotting  # noqa: E402
from depthlib.data import open_dataset  # noqa: E402

STATIC = pathlib.Path(__file__).resolve().parents[1] / "book" / "_static"
OUT = STATIC / "overview.png"
FAVICON = STATIC / "favicon.png"


def main() -> None:
    scenes = [open_dataset("synth", n=1, size=(240, 320), seed=0, scene=s)[0] for s in ("indoor", "outdoor")]
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 5.6), layout="constrained")
    for row, (scene, sample) in enumerate(zip(("indoor", "outdoor"), scenes)):
        plotting.plot_image(axes[row, 0], sample["image"], title=f"{scene} scene: RGB input")
        plotting.plot_depth(axes[row, 1], sample["depth"], sample["mask"], title="depth to predict")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")
    # The favicon: the indoor depth map alone, 32 x 32 pixels (a page without one logs a 404 in the console).
    icon = plt.figure(figsize=(1, 1), dpi=32)
    ax = icon.add_axes((0, 0, 1, 1))
    ax.imshow(plotting.to_depth(scenes[0]["depth"]), cmap=plotting.DEFAULT_CMAP, aspect="auto")
    ax.set_axis_off()
    icon.savefig(FAVICON, dpi=32)
    print(f"wrote {FAVICON}")


if __name__ == "__main__":
    main()
