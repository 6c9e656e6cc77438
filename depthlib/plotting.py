"""Figures of the book: depth maps on a colour scale shared with their ground truth, in metres.

Every function draws with labelled axes and units. Depth maps of one row (ground truth and predictions)
share one :class:`matplotlib.colors.Normalize`, so equal colours mean equal metres, and one colour bar in
metres. Invalid pixels (``mask`` False or depth 0) are drawn in a neutral grey, never as "near".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colors
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DEFAULT_CMAP = "magma_r"  # near = bright, far = dark; perceptually uniform, readable in grey scale
INVALID_COLOR = "0.75"
DEPTH_LABEL = "depth (m)"

__all__ = [
    "BOOK_PALETTE", "DEFAULT_CMAP", "VERDICT_COLORS", "book_style", "model_color", "model_palette", "plot_verdicts", "depth_norm", "plot_image", "plot_depth", "plot_depth_grid", "plot_depth_histogram", "plot_error",
    "plot_ordinal_pairs", "plot_pareto", "pareto_front", "to_image", "to_depth",
]


#: Okabe & Ito's colour-blind-safe qualitative palette, less black (the reference lines' colour) and yellow (too
#: faint on the white page for a line or a small marker).
BOOK_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999999")

# The models the chapters compare most, each with its colour in every chapter. Other names get a colour from
# their name's CRC32, so one name has one colour in every chapter and every run.
_MODEL_COLORS = {
    "fastdepth": BOOK_PALETTE[0],
    "mobilenet / nnconv5dw / add": BOOK_PALETTE[0],   # FastDepth's configuration as chapter 03 labels it
    "mbv2-nnconv5-narrow": BOOK_PALETTE[1],
    "midas-v21-small": BOOK_PALETTE[2],
    "mai2021-3": BOOK_PALETTE[3],
}

#: Matplotlib settings of every figure of the book: text readable at the page's width (a figure 7 in wide is
#: shown about 700 px wide), the colour-blind-safe palette, light grids, no top and right spines.
BOOK_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": DEFAULT_CMAP,
}


def book_style() -> None:
    """Apply the book's figure style (:data:`BOOK_RC` and :data:`BOOK_PALETTE` as the colour cycle) to matplotlib
    and seaborn; ``depthlib.book.setup`` calls it, so every chapter draws alike."""
    import seaborn as sns
    from cycler import cycler

    sns.set_palette(list(BOOK_PALETTE))
    plt.rcParams.update({**BOOK_RC, "axes.prop_cycle": cycler(color=list(BOOK_PALETTE))})


def model_color(name: str) -> str:
    """The colour of model ``name`` in every figure of the book (a hex string of :data:`BOOK_PALETTE`).

    The presets the chapters compare most have fixed colours (FastDepth blue, sagar2021's MobileNetV2 orange,
    MiDaS small green, MAI-2021 model 3 vermilion); any other name, a configuration label included, maps to a
    palette colour through its CRC32, the same in every chapter and every run.
    """
    import zlib

    if not isinstance(name, str) or not name:
        raise ValueError(f"model_color: name must be a non-empty string, got {name!r}")
    if name in _MODEL_COLORS:
        return _MODEL_COLORS[name]
    return BOOK_PALETTE[zlib.crc32(name.encode("utf-8")) % len(BOOK_PALETTE)]


def model_palette(names: Sequence[str]) -> dict[str, str]:
    """``{name: model_color(name)}`` for seaborn's ``palette=`` argument; names may repeat. Two names that share
    a colour by their hash get the next free palette colours instead, so one figure never shows two models in one
    colour (while it has fewer models than :data:`BOOK_PALETTE` has colours)."""
    unique = list(dict.fromkeys(str(n) for n in names))
    palette: dict[str, str] = {}
    used: set[str] = set()
    for name in unique:
        color = model_color(name)
        if color in used and len(used) < len(BOOK_PALETTE):
            start = BOOK_PALETTE.index(color)
            color = next(BOOK_PALETTE[(start + k) % len(BOOK_PALETTE)] for k in range(len(BOOK_PALETTE))
                         if BOOK_PALETTE[(start + k) % len(BOOK_PALETTE)] not in used)
        palette[name] = color
        used.add(color)
    return palette


#: The colour of each verdict of the scorecard (:data:`depthlib.reported.VERDICTS`), the same on every page.
VERDICT_COLORS = {
    "reproduced": "#009E73",
    "not resolved at this profile": "#56B4E9",
    "contradicted": "#D55E00",
    "needs the paper profile": "#E69F00",
    "not reproducible here": "#999999",
    "no chapter yet": "#DDDDDD",
    "not run": "#CC79A7",
}


def plot_verdicts(ax: Axes, counts: Any, *, xlabel: str = "reported results (count)") -> Axes:
    """Stacked horizontal bars: per study (rows of ``counts``), how many reported results have each verdict.

    Args:
        counts: :func:`depthlib.reported.verdict_counts` (a study x verdict DataFrame of counts).
    """
    import pandas as pd

    if not isinstance(counts, pd.DataFrame) or counts.empty:
        raise ValueError("plot_verdicts: counts must be a non-empty DataFrame (depthlib.reported.verdict_counts)")
    unknown = sorted(set(counts.columns) - set(VERDICT_COLORS))
    if unknown:
        raise ValueError(f"plot_verdicts: unknown verdict column(s) {unknown}; known: {list(VERDICT_COLORS)}")
    left = np.zeros(len(counts))
    for verdict in counts.columns:
        values = counts[verdict].to_numpy(float)
        ax.barh(counts.index.astype(str), values, left=left, color=VERDICT_COLORS[verdict], label=verdict,
                edgecolor="white", linewidth=0.5)
        left += values
    ax.invert_yaxis()  # the first study on top
    ax.set_xlabel(xlabel)
    ax.set_ylabel("study")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    return ax


def to_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An RGB image as an ``(H, W, 3)`` float array in [0, 1] for ``imshow``.

    Args:
        image: ``(3, H, W)`` or ``(1, 3, H, W)`` tensor/array in [0, 1] (depthlib's convention), or an
            ``(H, W, 3)`` array.
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (3, H, W), (1, 3, H, W) or (H, W, 3); got shape {tuple(array.shape)}")
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def to_depth(depth: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> np.ma.MaskedArray:
    """A depth map as an ``(H, W)`` masked array in metres, invalid pixels masked.

    Args:
        depth: ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``; 0 marks invalid pixels.
        mask: same spatial shape, True where valid (default: ``depth > 0`` and finite).
    """
    array = depth.detach().cpu().float().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth, np.float32)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"depth must have one channel: (H, W), (1, H, W) or (1, 1, H, W); got {tuple(np.shape(depth))}")
    valid = np.isfinite(array) & (array > 0)
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        m = np.squeeze(m).astype(bool)
        if m.shape != array.shape:
            raise ValueError(f"mask shape {m.shape} differs from depth shape {array.shape}")
        valid &= m
    return np.ma.masked_array(array, mask=~valid)


def depth_norm(*depths: Any, max_depth: float | None = None, percentile: float = 99.0) -> colors.Normalize:
    """One colour scale for several depth maps: from 0 m to ``max_depth``.

    Args:
        *depths: depth maps (any shape :func:`to_depth` accepts); the first is taken as the ground truth.
        max_depth: metres at the top of the scale; default the ``percentile`` of the first map's valid
            pixels, so a few far outliers do not wash the scale out.
    """
    if max_depth is None:
        if not depths:
            raise ValueError("depth_norm: give depth maps or max_depth")
        valid = to_depth(depths[0]).compressed()
        max_depth = float(np.percentile(valid, percentile)) if valid.size else 1.0
    if not max_depth > 0:
        raise ValueError(f"max_depth must be > 0 metres, got {max_depth}")
    return colors.Normalize(vmin=0.0, vmax=max_depth)


def _cmap(name: str) -> colors.Colormap:
    return plt.get_cmap(name).with_extremes(bad=INVALID_COLOR)


def _pixel_axes(ax: Axes) -> None:
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")


def plot_image(ax: Axes, image: Any, *, title: str | None = None):
    """Draw an RGB image ``(3, H, W)`` in [0, 1] with pixel axes; returns the ``AxesImage``."""
    im = ax.imshow(to_image(image))
    _pixel_axes(ax)
    if title:
        ax.set_title(title)
    return im


def plot_depth(ax: Axes, depth: Any, mask: Any = None, *, norm: colors.Normalize | None = None,
               cmap: str = DEFAULT_CMAP, title: str | None = None, colorbar: bool = True):
    """Draw one depth map in metres on ``ax``; returns the ``AxesImage``.

    Args:
        depth: ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` metres, 0 = invalid (grey).
        mask: optional ``(H, W)``-compatible validity mask.
        norm: the shared colour scale (:func:`depth_norm`); default 0 to this map's 99th percentile.
        colorbar: add a colour bar labelled "depth (m)".
    """
    data = to_depth(depth, mask)
    norm = norm or depth_norm(data)
    im = ax.imshow(data, cmap=_cmap(cmap), norm=norm, interpolation="nearest")
    _pixel_axes(ax)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=DEPTH_LABEL, fraction=0.046, pad=0.04)
    return im


def plot_depth_grid(images: Sequence[Any], depths: Sequence[Any], predictions: Mapping[str, Sequence[Any]] | None = None,
                    *, masks: Sequence[Any] | None = None, max_depth: float | None = None, cmap: str = DEFAULT_CMAP,
                    row_titles: Sequence[str] | None = None, panel_size: float = 2.6) -> Figure:
    """RGB, ground truth and predictions, one row per sample, each row on one colour scale in metres.

    Args:
        images: N images ``(3, H, W)`` in [0, 1] (or a ``(N, 3, H, W)`` batch).
        depths: N ground-truth maps ``(1, H, W)`` in metres, 0 = invalid (or a ``(N, 1, H, W)`` batch).
        predictions: ``{name: N maps (1, H, W)}`` drawn beside the ground truth on its scale.
        masks: N validity masks ``(1, H, W)`` (default ``depth > 0``).
        max_depth: top of every row's scale in metres (default per row, from its ground truth).
        row_titles: N labels (e.g. the sample's path) shown on the RGB panel.

    Returns:
        The figure: ``N`` rows, ``2 + len(predictions)`` columns, a colour bar per row labelled "depth (m)".
    """
    predictions = dict(predictions or {})
    n = len(images)
    if len(depths) != n or any(len(p) != n for p in predictions.values()):
        raise ValueError(f"plot_depth_grid: {n} images but {len(depths)} depths and "
                         f"{ {k: len(v) for k, v in predictions.items()} } predictions")
    if n == 0:
        raise ValueError("plot_depth_grid: no samples to draw")
    ncols = 2 + len(predictions)
    fig, axes = plt.subplots(n, ncols, figsize=(panel_size * ncols + 0.8, panel_size * 0.8 * n), squeeze=False,
                             layout="constrained")
    for i in range(n):
        mask = masks[i] if masks is not None else None
        norm = depth_norm(to_depth(depths[i], mask), max_depth=max_depth)
        plot_image(axes[i, 0], images[i])
        axes[i, 0].set_title(row_titles[i] if row_titles else "RGB image", fontsize=9)
        im = plot_depth(axes[i, 1], depths[i], mask, norm=norm, cmap=cmap, colorbar=False,
                        title="ground truth")
        for j, (name, maps) in enumerate(predictions.items()):
            plot_depth(axes[i, 2 + j], maps[i], norm=norm, cmap=cmap, colorbar=False, title=name)
        fig.colorbar(im, ax=list(axes[i, 1:]), label=DEPTH_LABEL, shrink=0.9)
    return fig


def plot_error(ax: Axes, prediction: Any, target: Any, mask: Any = None, *, max_error: float | None = None,
               title: str = "|prediction - ground truth|"):
    """Absolute error ``|pred - target|`` in metres on valid pixels; returns the ``AxesImage``.

    Args:
        prediction, target: ``(H, W)``-compatible depth maps in metres.
        max_error: top of the colour scale in metres (default: the 99th percentile of the error).
    """
    pred = to_depth(prediction)
    tgt = to_depth(target, mask)
    if pred.shape != tgt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {tgt.shape}")
    error = np.ma.masked_array(np.abs(pred.data - tgt.data), mask=tgt.mask)
    vmax = max_error if max_error is not None else (float(np.percentile(error.compressed(), 99)) if error.count() else 1.0)
    cmap = _cmap("viridis")
    im = ax.imshow(error, cmap=cmap, vmin=0.0, vmax=max(vmax, 1e-6), interpolation="nearest")
    _pixel_axes(ax)
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, label="absolute error (m)", fraction=0.046, pad=0.04)
    return im


def plot_depth_histogram(ax: Axes, depths: Mapping[str, Any], *, bins: int | np.ndarray = 50,
                         max_depth: float | None = None) -> Axes:
    """Distribution of valid depths (metres) of several sources as normalised histograms on one axis.

    Args:
        depths: ``{label: depth maps}``, each a tensor/array of any shape in metres, 0 = invalid.
        bins: bin count or edges in metres.
        max_depth: right edge in metres (default the largest valid depth).
    """
    values = {}
    for label, d in depths.items():
        array = d.detach().cpu().float().numpy() if isinstance(d, torch.Tensor) else np.asarray(d, np.float32)
        values[label] = array[np.isfinite(array) & (array > 0)]
    top = max_depth if max_depth is not None else max((float(v.max()) for v in values.values() if v.size), default=1.0)
    edges = np.linspace(0.0, top, bins + 1) if isinstance(bins, int) else np.asarray(bins)
    for label, v in values.items():
        ax.hist(np.clip(v, 0, top), bins=edges, density=True, histtype="step", linewidth=1.5,
                label=f"{label} ({v.size:,} px)")
    ax.set_xlabel(DEPTH_LABEL)
    ax.set_ylabel("density (1/m)")
    ax.legend(fontsize=8)
    return ax


def plot_ordinal_pairs(ax: Axes, image: Any, pairs: Any, relation: Any, *, max_pairs: int | None = None) -> Axes:
    """DIW-style ordinal annotations on an image: point A (circle) joined to point B (square), coloured by relation.

    Args:
        image: ``(3, H, W)`` in [0, 1].
        pairs: ``(K, 4)`` long ``[yA, xA, yB, xB]`` in pixels.
        relation: ``(K,)`` in {+1, -1, 0}: ``sign(depth_A - depth_B)`` (depthlib.data's convention), so +1
            when A is farther than B, -1 when closer, 0 when about equal.
        max_pairs: draw at most this many pairs.
    """
    p = pairs.detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
    r = relation.detach().cpu().numpy() if isinstance(relation, torch.Tensor) else np.asarray(relation)
    if p.ndim != 2 or p.shape[1] != 4 or r.shape != (p.shape[0],):
        raise ValueError(f"pairs must be (K, 4) and relation (K,); got {p.shape} and {r.shape}")
    if max_pairs is not None:
        p, r = p[:max_pairs], r[:max_pairs]
    ax.imshow(to_image(image))
    styles = {-1: ("tab:cyan", "A closer"), 1: ("tab:orange", "A farther"), 0: ("white", "about equal")}
    for value, (color, label) in styles.items():
        sel = r == value
        if not sel.any():
            continue
        for ya, xa, yb, xb in p[sel]:
            ax.plot([xa, xb], [ya, yb], color=color, linewidth=1.0, alpha=0.9)
        ax.scatter(p[sel, 1], p[sel, 0], s=14, color=color, edgecolors="black", linewidths=0.4, label=f"{label} (A)")
        ax.scatter(p[sel, 3], p[sel, 2], s=14, marker="s", color=color, edgecolors="black", linewidths=0.4)
    _pixel_axes(ax)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def pareto_front(points: Any, x: str, y: str, *, minimize_x: bool = True, minimize_y: bool = True):
    """The rows of a DataFrame not dominated in ``(x, y)``, sorted by ``x``.

    A row is dominated when another is at least as good on both columns and better on one (e.g. latency
    and RMSE, both minimised).
    """
    import pandas as pd

    if not isinstance(points, pd.DataFrame):
        raise ValueError(f"pareto_front expects a DataFrame, got {type(points).__name__}")
    for column in (x, y):
        if column not in points:
            raise ValueError(f"pareto_front: no column {column!r}; columns: {list(points.columns)}")
    sx = 1.0 if minimize_x else -1.0
    sy = 1.0 if minimize_y else -1.0
    xs = sx * points[x].to_numpy(float)
    ys = sy * points[y].to_numpy(float)
    keep = []
    for i in range(len(points)):
        dominated = np.any((xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i])))
        keep.append(not dominated)
    return points[np.asarray(keep, dtype=bool)].sort_values(x)


def plot_pareto(ax: Axes, points: Any, x: str, y: str, *, label: str | None = None, hue: str | None = None,
                xlabel: str | None = None, ylabel: str | None = None, minimize_y: bool = True,
                palette: Any = None) -> Axes:
    """Scatter of ``points[y]`` against ``points[x]`` with the Pareto front drawn as a step line.

    Args:
        points: a DataFrame with one row per model.
        x, y: columns (e.g. ``"latency_ms"`` and ``"rmse"``); ``xlabel``/``ylabel`` should carry units.
        label: column annotating each point; hue: column colouring points by group.
        minimize_y: False for accuracy-like columns (delta1), where higher is better.
        palette: seaborn's ``palette`` for ``hue`` (e.g. :func:`model_palette` when ``hue`` names models).
    """
    import seaborn as sns

    sns.scatterplot(data=points, x=x, y=y, hue=hue, ax=ax, s=40, palette=palette)
    front = pareto_front(points, x, y, minimize_y=minimize_y)
    ax.step(front[x], front[y], where="post", color="black", linewidth=1.0, label="Pareto front")
    if label is not None:
        for _, row in points.iterrows():
            ax.annotate(str(row[label]), (row[x], row[y]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=7)
    return ax
