"""The experiment loops of the reproduction chapters: grids of runs, seeds, and which differences survive.

The chapters compare architectures, optimisers, losses and batch sizes, each over several seeds. This module
holds the loops and the statistics, built on the rest of depthlib (training is :func:`depthlib.train.fit`'s):

- :func:`chapter_data`: the training and evaluation sets a profile names (procedural scenes cached in
  memory, the real NYU test pairs when present, the NYU trees for the paper profile).
- :func:`grid` and :func:`run_grid`: the product of parameter axes, each run computed once per parameters
  and code version through :func:`depthlib.book.cached`, the results as one table (plus per-epoch curves).
- :func:`train_eval`: one run: ``create_model`` -> :func:`depthlib.train.fit` -> :func:`depthlib.train.evaluate`
  on each evaluation set, optionally with the predictions on a few samples for figures.
- :func:`predict` and :func:`edge_error`: a model's predictions on a dataset, and the Sobel-gradient error
  that measures the edges seed 000's edge loss is meant to sharpen.
- :func:`lr_search`: Smith's LR range test (:func:`depthlib.train.lr_range_test`) on a fresh model.
- :func:`complexity_table`: params, MACs, sizes and CPU latency (:func:`depthlib.profiler.profile_model`) of a
  list of models.
- :func:`reproduce_complexity`: the reported parameter and MAC counts a preset reproduces by construction.
- :func:`summarize`, :func:`compare`: mean and spread over seeds, and Welch's t-test or a bootstrap interval
  for each difference, with the Benjamini-Hochberg correction over the comparisons of a table.
- :func:`results_frame`: the rows :func:`depthlib.book.record_results` writes, from a summary.

Example (what chapter 04 does, at a toy size)::

    runs = grid(model=["fastdepth", "mobilenetv2-nnconv5"], seed=[0, 1])
    result = run_grid(runs, lambda model, seed: train_eval(model, train=ds, evaluations={"val": val},
                                                           config=TrainConfig(epochs=1, seed=seed)),
                      cache_key="04/table3", cache_params={"data": spec})
    summary = summarize(result.table, by="model", metrics=["val_delta1"])
    tests = compare(result.table, by="model", metric="val_delta1")
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "COMPLEXITY_CHECKS",
    "TRAIN_SETS",
    "GridResult",
    "chapter_data",
    "reproduce_complexity",
    "grid",
    "run_grid",
    "train_eval",
    "lr_search",
    "predict",
    "complexity_table",
    "edge_error",
    "summarize",
    "compare",
    "mean_spread",
    "results_frame",
]


# ----------------------------------------------------------------------------------------------- the data
#: Training sets :func:`chapter_data` knows, with the evaluation set that goes with each.
TRAIN_SETS = {
    "synth": "procedural indoor scenes (depthlib.data.synth), rendered at the training size",
    "nyu_h5": "FastDepth's NYU Depth v2 h5 tree (root/train, root/val), FastDepth's transforms",
    "nyu_labeled": "the 1449-image NYU labeled subset (seed 000's ablations), train/test split of splits.mat",
}


def _materialize(dataset: Dataset) -> list[dict[str, Any]]:
    keep = ("image", "depth", "mask", "path")
    return [{k: v for k, v in dataset[i].items() if k in keep} for i in range(len(dataset))]


def _synth_samples(split: str, n: int, size: Sequence[int], seed: int, scene: str) -> list[dict[str, Any]]:
    from depthlib.book import cached
    from depthlib.data import open_dataset

    spec = {"split": split, "n": int(n), "size": [int(size[0]), int(size[1])], "seed": int(seed), "scene": scene}

    def render() -> dict[str, Any]:
        samples = _materialize(open_dataset("synth", split=split, n=int(n), size=tuple(size), seed=int(seed),
                                            scene=scene))
        return {"image": torch.stack([s["image"] for s in samples]), "depth": torch.stack([s["depth"] for s in samples]),
                "mask": torch.stack([s["mask"] for s in samples]), "path": [s["path"] for s in samples]}

    # rendering is the slow part of a quick run (tenths of a second per frame): once per spec and code version
    stacked = cached("experiments/synth", spec, render)
    return [{"image": stacked["image"][i], "depth": stacked["depth"][i], "mask": stacked["mask"][i],
             "path": stacked["path"][i]} for i in range(len(stacked["path"]))]


def chapter_data(train: str, *, size: Sequence[int], n_train: int, n_val: int, seed: int = 0,
                 train_root: Any = None, nyu_root: Any = None, scene: str = "indoor") -> dict[str, Any]:
    """The training set and the evaluation sets of a chapter, as its profile describes them.

    Args:
        train: one of :data:`TRAIN_SETS`: ``"synth"`` (quick and smoke profiles), ``"nyu_h5"`` or
            ``"nyu_labeled"`` (paper profile).
        size: ``(H, W)`` of the network input, for training and evaluation (multiples of 32 for FastDepth).
        n_train, n_val: number of training and validation samples; ``0`` means the whole split (real data).
        seed: the procedural data's seed (the data stays fixed while the runs' seeds vary).
        train_root: the dataset root for ``nyu_h5`` / ``nyu_labeled``.
        nyu_root: DenseDepth's ``nyu_data`` folder (the real NYU test pairs) or ``None``; when given, its
            test split becomes the evaluation set ``"nyu"``, through FastDepth's validation transform.
        scene: the procedural scene kind.

    Returns:
        ``{"train": Dataset, "evaluations": {name: Dataset}, "primary": name of the evaluation set the
        chapter reports (``"nyu"`` when present), "describe": str for the ``data`` column of
        :func:`depthlib.book.record_results`, "spec": the JSON description, for cache keys}``.
        Procedural and small real sets are held in memory; the large NYU trees are read lazily.

    Raises:
        ValueError: an unknown ``train``; FileNotFoundError: a missing root (from :func:`open_dataset`).
    """
    from depthlib.data import open_dataset
    from depthlib.data.transforms import fastdepth_train_transform, fastdepth_val_transform

    if train not in TRAIN_SETS:
        raise ValueError(f"chapter_data: train={train!r} is not one of {list(TRAIN_SETS)}")
    size = (int(size[0]), int(size[1]))
    evaluations: dict[str, Dataset] = {}
    parts = []

    def head(ds: Dataset, n: int) -> Dataset:
        return torch.utils.data.Subset(ds, range(min(n, len(ds)))) if n else ds

    if train == "synth":
        train_set = _synth_samples("train", n_train, size, seed, scene)
        evaluations["synth"] = _synth_samples("val", n_val, size, seed, scene)
        parts.append(f"train: synth {scene} {len(train_set)} @{size[0]}x{size[1]} (data seed {seed}); "
                     f"eval: synth val {n_val}")
    else:
        # the real training sets, each evaluated on its own held-out split (FastDepth's val, the labeled test)
        title, eval_split = {"nyu_h5": ("NYU h5", "val"), "nyu_labeled": ("NYU labeled", "test")}[train]
        name = f"{train}_{eval_split}"
        train_set = head(open_dataset(train, train_root, split="train",
                                      transform=fastdepth_train_transform(size)), n_train)
        evaluations[name] = head(open_dataset(train, train_root, split=eval_split,
                                              transform=fastdepth_val_transform(size)), n_val)
        parts.append(f"train: {title} {len(train_set)} @{size[0]}x{size[1]}; eval: {title} {eval_split} "
                     f"{len(evaluations[name])}")
    if nyu_root is not None:
        evaluations["nyu"] = _materialize(open_dataset("nyu_png", nyu_root, split="test",
                                                       transform=fastdepth_val_transform(size)))
        parts.append(f"NYU test {len(evaluations['nyu'])} real pairs")
    primary = "nyu" if "nyu" in evaluations and train == "synth" else next(iter(evaluations))
    spec = {"train": train, "size": list(size), "n_train": int(n_train), "n_val": int(n_val), "seed": int(seed),
            "scene": scene, "train_root": str(train_root) if train_root is not None else None,
            "nyu": len(evaluations["nyu"]) if "nyu" in evaluations else 0}
    return {"train": train_set, "evaluations": evaluations, "primary": primary, "describe": ", ".join(parts),
            "spec": spec}


# ---------------------------------------------------------------------------------------------- the grids
def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """The product of parameter axes, in the order given (the last axis varies fastest).

    Example:
        >>> grid(decoder=["nnconv5", "upproj"], skip=["none", "add"])
        [{'decoder': 'nnconv5', 'skip': 'none'}, {'decoder': 'nnconv5', 'skip': 'add'},
         {'decoder': 'upproj', 'skip': 'none'}, {'decoder': 'upproj', 'skip': 'add'}]

    Raises:
        ValueError: no axis, or an axis that is a string or empty (``seed=0`` instead of ``seed=[0]``).
    """
    if not axes:
        raise ValueError("grid: give at least one axis, e.g. grid(seed=[0, 1])")
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"grid: axis {name!r} must be a list of values, got {values!r}")
    lists = {name: list(values) for name, values in axes.items()}
    empty = [name for name, values in lists.items() if not values]
    if empty:
        raise ValueError(f"grid: axis {empty[0]!r} is empty")
    return [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]


class GridResult(NamedTuple):
    """What :func:`run_grid` returns.

    Attributes:
        table: one row per run: the run's parameters, then every scalar the run returned.
        curves: the runs' DataFrames (e.g. ``history``: one row per epoch) stacked, each row carrying its
            run's parameters and a ``curve`` column naming the field; empty when no run returned one.
        outputs: per run, the non-scalar, non-DataFrame values it returned (tensors of predictions...), in
            the order of ``table``'s rows.
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    outputs: list[dict[str, Any]]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, np.generic))


def run_grid(runs: Iterable[Mapping[str, Any]], fn: Callable[..., Mapping[str, Any]], *,
             cache_key: str | None = None, cache_params: Mapping[str, Any] | None = None,
             progress: bool = False) -> GridResult:
    """Call ``fn(**run)`` for every run and gather the results.

    Args:
        runs: parameter dicts (JSON values), e.g. from :func:`grid`.
        fn: ``fn(**run) -> mapping``: scalars become columns of ``table``; DataFrames go to ``curves``;
            anything else (tensors, arrays, lists) to ``outputs``.
        cache_key: when given, each run is computed once per ``(cache_key, cache_params, run, depthlib code
            version)`` through :func:`depthlib.book.cached`, so that adding a seed or an axis value computes
            only the new runs and re-rendering a chapter computes nothing.
        cache_params: what else determines the result besides the run (the data and the recipe, as JSON
            values): a change here must change the result, or the cache would return a stale one.
        progress: print one line per run (the run's parameters and its wall time).

    Returns:
        :class:`GridResult`.

    Raises:
        ValueError: a run whose result is not a mapping, or whose result keys collide with its parameters.
    """
    runs = [dict(r) for r in runs]
    rows, curves, outputs = [], [], []
    for run in runs:
        start = time.perf_counter()
        if cache_key is None:
            result = fn(**run)
        else:
            from depthlib.book import cached

            result = cached(cache_key, {"run": run, "params": dict(cache_params or {})}, lambda: fn(**run))
        if not isinstance(result, Mapping):
            raise ValueError(f"run_grid: fn({run}) returned {type(result).__name__}; expected a mapping")
        clash = set(result) & set(run)
        if clash:
            raise ValueError(f"run_grid: fn({run}) returned keys {sorted(clash)} that are also run parameters")
        row, extra = dict(run), {}
        for name, value in result.items():
            if isinstance(value, pd.DataFrame):
                curve = value.copy()
                for param, pvalue in run.items():
                    curve[param] = [pvalue] * len(curve)
                curve["curve"] = name
                curves.append(curve)
            elif _is_scalar(value):
                row[name] = value.item() if isinstance(value, np.generic) else value
            else:
                extra[name] = value
        rows.append(row)
        outputs.append(extra)
        if progress:
            print(f"{run}: {time.perf_counter() - start:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    curve_frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return GridResult(table, curve_frame, outputs)


# ------------------------------------------------------------------------------------------------ one run
def resolve_pretrained(encoder: str, pretrained: str | None) -> str | None:
    """What a chapter's ``pretrained`` setting means for one encoder, as ``create_model`` takes it.

    - ``None`` or ``"none"``: random initialisation (``None``).
    - ``"auto"``: the converted ImageNet weights file (``../shared/weights`` or ``data/weights``, see
      :func:`depthlib.book.find_weights`) when one exists for this encoder, else random initialisation.
    - ``"imagenet"``: that file when present, else ``"imagenet"`` (the torchvision/timm weight API, which needs
      internet or a populated cache, and fails at once with a clear message otherwise).
    - anything else: a path to a state dict, returned as it is.

    Args:
        encoder: an encoder name of :func:`depthlib.models.encoders.list_encoders` (aliases accepted).
        pretrained: the setting.

    Returns:
        ``None``, ``"imagenet"`` or a path (str).
    """
    from depthlib.book import find_weights
    from depthlib.models.encoders import converted_weights_name

    if pretrained in (None, "none"):
        return None
    if pretrained not in ("auto", "imagenet"):
        return str(pretrained)
    filename = converted_weights_name(encoder)
    local = find_weights(filename) if filename else None
    if local is not None:
        return str(local)
    return "imagenet" if pretrained == "imagenet" else None


def pretrained_spec(pretrained: str | None) -> dict[str, Any]:
    """What ``pretrained`` resolves to for every encoder with converted weights: part of a cache key, so a
    result trained from random init is not reused once the weights files appear (or the other way round)."""
    from depthlib.models.encoders import CONVERTED_IMAGENET_WEIGHTS

    return {"setting": pretrained,
            "files": {enc: resolve_pretrained(enc, pretrained) for enc in sorted(CONVERTED_IMAGENET_WEIGHTS)}}


def describe_pretrained(pretrained: str | None) -> str:
    """The encoders' initialisation in words, for the provenance column of reproduced numbers.

    Example: ``"init: ImageNet (TFLite-converted file) for mobilenet_v1, mobilenet_v2; random otherwise"``.
    """
    files = pretrained_spec(pretrained)["files"]
    local = sorted(enc for enc, value in files.items() if value not in (None, "imagenet"))
    if pretrained in (None, "none"):
        return "init: random"
    if pretrained not in ("auto", "imagenet"):
        return f"init: {pretrained}"
    rest = "random" if pretrained == "auto" else "ImageNet (torchvision/timm weights)"
    if not local:
        return f"init: {rest}"
    return f"init: ImageNet (TFLite-converted file) for {', '.join(local)}; {rest} otherwise"


def _build(model: str | Callable[[], nn.Module], seed: int, pretrained_encoder: Any,
           overrides: Mapping[str, Any] | None) -> nn.Module:
    # The decoder's random init is part of what a seed varies: seed before building the model.
    torch.manual_seed(seed)
    if callable(model):
        if overrides or pretrained_encoder is not None:
            raise ValueError("train_eval: model_overrides and pretrained_encoder need a preset name, not a factory")
        return model()
    from depthlib.models import create_model

    if pretrained_encoder == "none":  # a chapter's setting, as the profiles spell it
        pretrained_encoder = None
    if pretrained_encoder in ("auto", "imagenet"):
        # the preset decides its encoder: build once to read its name, then again with the weights it resolves to
        encoder = create_model(model, **dict(overrides or {})).encoder.name
        pretrained_encoder = resolve_pretrained(encoder, pretrained_encoder)
        torch.manual_seed(seed)
    return create_model(model, pretrained_encoder=pretrained_encoder, **dict(overrides or {}))


def _batches(data: Dataset | Sequence[Mapping[str, Any]], batch_size: int) -> Iterable[dict[str, Any]]:
    from torch.utils.data import DataLoader, default_collate

    keep = ("image", "depth", "mask")
    # only the tensors a prediction needs: paths and intrinsics of mixed sources need not collate
    return DataLoader(data, batch_size=batch_size, shuffle=False,
                      collate_fn=lambda items: default_collate([{k: it[k] for k in keep if k in it} for it in items]))


def _normalized(x: torch.Tensor, normalize: str | None) -> torch.Tensor:
    if normalize not in (None, "imagenet"):
        raise ValueError(f"normalize must be None or 'imagenet', got {normalize!r}")
    if normalize is None:
        return x
    from torchvision.transforms.v2.functional import normalize as tv_normalize

    return tv_normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@torch.no_grad()
def predict(model: nn.Module, data: Dataset | Sequence[Mapping[str, Any]], *, normalize: str | None = "imagenet",
            device: str = "cpu", batch_size: int = 8) -> torch.Tensor:
    """The model's predictions for every sample of ``data``, in ``eval()`` mode.

    Args:
        model: ``(B, 3, H, W) -> (B, 1, H, W)``.
        data: samples with ``"image"`` ``(3, H, W)`` in [0, 1] (all of one size).
        normalize: ``"imagenet"`` normalises the images as :class:`depthlib.train.TrainConfig` does in
            training; ``None`` feeds them as they are. Use the value the model was trained with.
        device: where to run.
        batch_size: images per forward pass.

    Returns:
        ``(N, 1, H, W)`` float32 on the CPU.
    """
    _normalized(torch.zeros(1, 3, 1, 1), normalize)  # validate before any work
    was_training = model.training
    model.eval().to(device)
    preds = [model(_normalized(b["image"].to(device), normalize)).float().cpu() for b in _batches(data, batch_size)]
    model.train(was_training)
    return torch.cat(preds)


def edge_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image mean absolute difference of Sobel gradient magnitudes: how well depth edges are placed.

    Seed 000 adds a Sobel term to the loss to sharpen edges (its Fig. 7) but reports no number for it, since
    losses of different scales cannot be compared. This metric compares the gradients themselves, with
    kornia's normalised Sobel kernels (the ones the loss uses), over pixels whose 3x3 neighbourhood is valid
    (a gradient across an invalid pixel would measure the hole, not the scene).

    Args:
        pred: ``(B, 1, H, W)`` metres.
        target: ``(B, 1, H, W)`` metres, 0 = invalid.
        mask: ``(B, 1, H, W)`` bool; default ``target > 0``.

    Returns:
        ``(B,)`` metres per pixel (NaN for an image without a valid interior pixel).
    """
    import kornia

    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f"edge_error: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                         "(B, 1, H, W)")
    mask = (target > 0) if mask is None else mask.bool()
    interior = kornia.morphology.erosion(mask.float(), torch.ones(3, 3, device=mask.device)) > 0.5
    diff = (kornia.filters.sobel(pred.float()) - kornia.filters.sobel(target.float())).abs()
    total = (diff * interior).flatten(1).sum(1)
    count = interior.flatten(1).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan))


def train_eval(model: str | Callable[[], nn.Module], *, train: Dataset, config: Any,
               evaluations: Mapping[str, Dataset] | None = None, val: Dataset | None = None,
               pretrained_encoder: Any = None, model_overrides: Mapping[str, Any] | None = None,
               predict_on: Dataset | None = None, eval_kwargs: Mapping[str, Any] | None = None,
               edges: bool = False, on_nonfinite: str = "raise", out_dir: Any = None) -> dict[str, Any]:
    """One run: build the model, train it with :func:`depthlib.train.fit`, evaluate it.

    Args:
        model: a preset name for :func:`depthlib.models.create_model`, or a zero-argument factory.
        train: training samples (``image`` ``(3, H, W)``, ``depth`` and ``mask`` ``(1, H, W)``).
        config: the :class:`depthlib.train.TrainConfig`; ``config.seed`` also seeds the model's init.
        evaluations: named evaluation sets; each adds ``<name>_<metric>`` for every metric of
            :func:`depthlib.train.evaluate` (``rmse``, ``delta1``, ...).
        val: validation set evaluated after every epoch by ``fit`` (in ``history``).
        pretrained_encoder: ``None``/``"none"``, ``"auto"``, ``"imagenet"`` or a path (see
            :func:`resolve_pretrained`). model_overrides: passed to ``create_model``.
        predict_on: a few samples whose predictions ``(N, 1, H, W)`` are returned as ``predictions``.
        eval_kwargs: passed to ``evaluate`` (``max_depth``, ``crop``, ``reduction``...).
        edges: also compute :func:`edge_error` on each evaluation set (``<name>_edge_error``, mean over images).
        on_nonfinite: ``"raise"`` (default) or ``"record"``: a run whose loss turns NaN/inf (an LR from a range
            test can be too high) returns ``diverged = 1`` and NaN metrics instead of stopping the grid.
        out_dir: checkpoints of ``fit`` (resumable); ``None`` keeps nothing on disk.

    Returns:
        ``{"params": int, "diverged": 0 or 1, "train_loss": float (last epoch), "train_time_s": float,
        "images_per_s": float, "<name>_<metric>": float..., "history": DataFrame, "predictions":
        (N, 1, H, W) tensor (with predict_on)}``.
    """
    from depthlib.train import NonFiniteLossError, evaluate, fit

    if on_nonfinite not in ("raise", "record"):
        raise ValueError(f"train_eval: on_nonfinite must be 'raise' or 'record', got {on_nonfinite!r}")
    net = _build(model, config.seed, pretrained_encoder, model_overrides)
    start = time.perf_counter()
    try:
        history = fit(net, train, val, config, out_dir)
    except NonFiniteLossError as err:
        if on_nonfinite == "raise":
            raise
        return {"params": int(sum(p.numel() for p in net.parameters())), "diverged": 1, "train_loss": math.nan,
                "train_time_s": time.perf_counter() - start, "error": str(err).splitlines()[0]}
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "diverged": 0,
        "params": int(sum(p.numel() for p in net.parameters())),
        "train_loss": float(history["train_loss"].iloc[-1]),
        "train_time_s": elapsed,
        "images_per_s": float(history["images_per_s"].mean()) if "images_per_s" in history else math.nan,
    }
    for name, data in (evaluations or {}).items():
        metrics = evaluate(net, data, config, **dict(eval_kwargs or {}))
        out.update({f"{name}_{k}": float(v) for k, v in metrics.items()})
        if edges:
            errors = []
            with torch.no_grad():
                net.eval()
                for batch in _batches(data, config.eval_batch_size or config.batch_size):
                    pred = net(_normalized(batch["image"].to(config.device), config.normalize)).float().cpu()
                    errors.append(edge_error(pred, batch["depth"], batch["mask"]))
            out[f"{name}_edge_error"] = float(torch.cat(errors).nanmean())
    out["history"] = history
    if predict_on is not None:
        out["predictions"] = predict(net, predict_on, normalize=config.normalize, device=config.device)
    return out


def lr_search(model: str | Callable[[], nn.Module], data: Dataset, config: Any, *,
              pretrained_encoder: Any = None, model_overrides: Mapping[str, Any] | None = None,
              quiet: bool = True, **range_test: Any) -> dict[str, Any]:
    """Smith's LR range test on a freshly built model (seeded with ``config.seed``).

    Args:
        model, pretrained_encoder, model_overrides: as in :func:`train_eval`.
        data: training samples.
        config: optimiser, loss and batch size of the run whose LR is searched.
        quiet: hide torch-lr-finder's progress bar (it writes to stderr and has no switch of its own), which
            would otherwise fill a rendered page.
        **range_test: :func:`depthlib.train.lr_range_test` options (``start_lr``, ``end_lr``,
            ``num_iter``, ``suggestion``...).

    Returns:
        ``{"suggested_lr": float, "curve": DataFrame (lr, loss, raw_loss)}``.
    """
    from depthlib.train import lr_range_test

    net = _build(model, config.seed, pretrained_encoder, model_overrides)
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        curve, lr = lr_range_test(net, data, config, **range_test)
    return {"suggested_lr": float(lr), "curve": curve}


# ----------------------------------------------------------------------------------------- complexity
def complexity_table(models: Mapping[str, Callable[[], nn.Module]], input_size: Sequence[int] = (1, 3, 224, 224),
                     *, latency: bool = True, threads: int = 1, warmup: int = 3, repeats: int = 10,
                     ) -> pd.DataFrame:
    """Params, MACs, size and median CPU latency of each model, one row per name.

    Args:
        models: ``{name: factory}``; each factory builds one model (built, profiled and freed in turn, so
            that a grid of ResNet-50s never sits in memory at once).
        input_size: ``(B, 3, H, W)`` of the profiled input.
        latency: also measure the median CPU latency (:func:`depthlib.profiler.measure_latency`).
        threads, warmup, repeats: of the latency measurement.

    Returns:
        DataFrame indexed by ``name`` with the columns of :func:`depthlib.profiler.profile_model`
        (``params``, ``conv_weights``, ``macs``, ``size_mb_fp32``, ``size_mb_fp16``, and ``latency_ms`` with
        ``latency``) plus ``gmacs`` and ``mparams``.
    """
    from depthlib.profiler import profile_model

    rows = []
    for name, factory in models.items():
        net = factory().eval()
        kwargs = dict(device="cpu", threads=threads, warmup=warmup, repeats=repeats) if latency else {}
        row = {"name": name, **profile_model(net, input_size=tuple(input_size), latency=latency, **kwargs)}
        row["gmacs"] = row["macs"] / 1e9
        row["mparams"] = row["params"] / 1e6
        rows.append(row)
        del net
    return pd.DataFrame(rows).set_index("name")


#: Reported complexity numbers that a preset reproduces by construction: ``(key, preset, (H, W), quantity)``.
#: ``quantity`` is a key of :func:`depthlib.profiler.profile_model`; seed 002's "Flops" are compared with our
#: MACs (the paper does not define its unit; see the preset's docstring).
COMPLEXITY_CHECKS: tuple[tuple[str, str, tuple[int, int], str], ...] = (
    *((f"yucel2021/table1/{row}/params", preset, (224, 224), "params") for row, preset in (
        ("shufflenetv2", "shufflenetv2-nnconv5"), ("mnasnet", "mnasnet-nnconv5"), ("mobilenetv2", "mbv2-nnconv5"),
        ("mobilenetv3", "mbv3-nnconv5"), ("efficientnet-es", "effnet-es-nnconv5"),
        ("efficientnet-b0", "effnet-b0-nnconv5"), ("ghostnet", "ghostnet-nnconv5"), ("mixnet-m", "mixnet-m-nnconv5"),
        ("mixnet-s", "mixnet-s-nnconv5"), ("fastdepth", "fastdepth"))),
    *((f"yucel2021/table2/{row}/params", row.replace("efnet", "effnet"), (224, 224), "params") for row in (
        "efnet-es-nnconv5", "efnet-es-fbnet", "mixnet-m-nnconv5", "mixnet-m-fbnet", "ghostnet-nnconv5",
        "ghostnet-fbnet", "mbv2-nnconv5", "mbv2-fbnet", "mbv2-fbnet-x112")),
    ("yucel2021/table7/ours/params", "mbv2-fbnet-x112", (224, 224), "params"),
    ("yucel2021/table7/ours-baseline/params", "mbv2-fbnet-x112", (224, 224), "params"),
    ("yucel2021/abstract/params", "mbv2-fbnet-x112", (224, 224), "params"),
    *((f"zhang2021/table2/model{i}/flops", f"mai2021-{i}", (480, 640), "macs") for i in (1, 2, 3, 4)),
    ("zhang2021/table2/model3-dist/flops", "mai2021-3", (480, 640), "macs"),
    ("haly/section2.2/midas-v21-small/params", "midas-small", (256, 256), "params"),
)


def reproduce_complexity(checks: Iterable[tuple[str, str, Sequence[int], str]] = COMPLEXITY_CHECKS, *,
                         presets: Iterable[str] | None = None) -> pd.DataFrame:
    """Profile each preset of ``checks`` once at its paper resolution and return the checked quantities.

    Args:
        checks: ``(key, preset, (H, W), quantity)`` rows, default :data:`COMPLEXITY_CHECKS`.
        presets: restrict to these presets (the smoke profile profiles a few).

    Returns:
        DataFrame with ``key``, ``preset``, ``input``, ``quantity`` and ``value``, one row per check, ready for
        :func:`depthlib.book.record_results` (keep ``key`` and ``value``).
    """
    from depthlib.models import create_model
    from depthlib.profiler import count_params, profile_model

    keep = None if presets is None else set(presets)
    checks = [c for c in checks if keep is None or c[1] in keep]
    profiles: dict[tuple[str, tuple[int, ...], bool], dict[str, Any]] = {}
    rows = []
    for key, preset, hw, quantity in checks:
        # parameter counts need no forward pass; MACs do, at the paper's resolution
        needs_forward = quantity != "params"
        cache_key = (preset, tuple(hw), needs_forward)
        if cache_key not in profiles:
            net = create_model(preset).eval()
            profiles[cache_key] = (profile_model(net, input_size=(1, 3, *hw)) if needs_forward
                                   else {"params": count_params(net)})
            del net
        rows.append({"key": key, "preset": preset, "input": f"{hw[0]}x{hw[1]}", "quantity": quantity,
                     "value": float(profiles[cache_key][quantity])})
    return pd.DataFrame(rows, columns=["key", "preset", "input", "quantity", "value"])


# ----------------------------------------------------------------------------------------- statistics
def _groups(df: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"no column(s) {missing} to group by; columns: {list(df.columns)}")
    return cols


def summarize(df: pd.DataFrame, by: str | Sequence[str], metrics: str | Sequence[str], *,
              seed: str = "seed", confidence: float = 0.95) -> pd.DataFrame:
    """Mean and spread over seeds of each metric, per group.

    Args:
        df: one row per run (e.g. :attr:`GridResult.table`).
        by: the column(s) naming a configuration (everything but the seed).
        metrics: the metric column(s).
        seed: the seed column (its values are listed in ``seeds``).
        confidence: level of the t-interval of the mean.

    Returns:
        One row per (group, metric): the group columns, ``metric``, ``mean``, ``std`` (sample standard
        deviation, NaN for one seed), ``n``, ``ci_low``, ``ci_high`` (Student-t interval of the mean, NaN for
        one seed) and ``seeds`` (``"0,1,2"``).
    """
    from scipy import stats

    cols = _groups(df, by)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        if m not in df.columns:
            raise KeyError(f"summarize: no metric column {m!r}; columns: {list(df.columns)}")
    rows = []
    for key, part in df.groupby(cols, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        seeds = ",".join(str(s) for s in part[seed]) if seed in part else ""
        for m in metrics:
            values = part[m].astype(float).dropna().to_numpy()
            n = len(values)
            mean = float(values.mean()) if n else math.nan
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            if n > 1:
                half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
                low, high = mean - half, mean + half
            else:
                low = high = math.nan
            rows.append({**dict(zip(cols, key)), "metric": m, "mean": mean, "std": std, "n": n,
                         "ci_low": low, "ci_high": high, "seeds": seeds})
    return pd.DataFrame(rows)


def _welch(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float, float]:
    from scipy import stats

    if np.std(a) == 0 and np.std(b) == 0:
        # identical runs (a deterministic CPU run repeated): no noise to test against
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
    return float(res.pvalue), float(ci.low), float(ci.high)


def _bootstrap(a: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int
               ) -> tuple[float, float, float]:
    from scipy import stats

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.mean(axis=axis) - y.mean(axis=axis)

    # percentile intervals: BCa needs a jackknife, which is degenerate with 2-3 seeds per arm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((a, b), diff, n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    # a two-sided bootstrap p-value: how often the resampled difference falls on the other side of zero
    dist = res.bootstrap_distribution
    p = float(min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean())))
    return p, low, high


def compare(df: pd.DataFrame, by: str | Sequence[str], metric: str, *, baseline: Any = None,
            pairs: Sequence[tuple[Any, Any]] | None = None, method: str = "welch", alpha: float = 0.05,
            confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Which differences between configurations survive the seed-to-seed noise.

    For each compared pair ``(a, b)`` of groups, the difference of the means of ``metric`` over seeds with a
    confidence interval and a p-value, by Welch's unequal-variance t-test (``method="welch"``) or a
    percentile bootstrap of the difference of means (``"bootstrap"``). The p-values of the table are
    corrected for multiple comparisons with Benjamini-Hochberg (:func:`scipy.stats.false_discovery_control`);
    a difference *survives* when its corrected p-value is below ``alpha`` (and, for the bootstrap, its
    interval excludes zero). With one seed in an arm nothing can be said: ``verdict`` says so.

    Args:
        df: one row per run.
        by: the configuration column(s); a group is a value (or tuple of values) of them.
        metric: the metric column.
        baseline: compare every other group with this one; default (and without ``pairs``): all pairs.
        pairs: explicit ``(a, b)`` pairs of group values.
        method: ``"welch"`` or ``"bootstrap"``.
        alpha: false-discovery rate of the correction.
        confidence: level of the intervals.
        n_resamples, seed: of the bootstrap.

    Returns:
        One row per pair: ``a``, ``b``, ``mean_a``, ``mean_b``, ``n_a``, ``n_b``, ``diff`` (``mean_a -
        mean_b``), ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted``, ``survives`` (bool) and ``verdict``
        (a sentence for the chapter's table).
    """
    from scipy import stats

    if method not in ("welch", "bootstrap"):
        raise ValueError(f"compare: method must be 'welch' or 'bootstrap', got {method!r}")
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise ValueError(f"compare: alpha and confidence must be in (0, 1), got {alpha!r}, {confidence!r}")
    cols = _groups(df, by)
    if metric not in df.columns:
        raise KeyError(f"compare: no metric column {metric!r}; columns: {list(df.columns)}")
    samples: dict[Any, np.ndarray] = {}
    for key, part in df.groupby(cols, sort=False, dropna=False):
        key = key[0] if isinstance(key, tuple) and len(cols) == 1 else key
        samples[key] = part[metric].astype(float).dropna().to_numpy()
    if pairs is None:
        names = list(samples)
        if baseline is not None:
            if baseline not in samples:
                raise KeyError(f"compare: baseline {baseline!r} is not a group; groups: {names}")
            pairs = [(g, baseline) for g in names if g != baseline]
        else:
            pairs = list(itertools.combinations(names, 2))
    rows = []
    for a, b in pairs:
        for g in (a, b):
            if g not in samples:
                raise KeyError(f"compare: {g!r} is not a group of {cols}; groups: {list(samples)}")
        xa, xb = samples[a], samples[b]
        row = {"a": a, "b": b, "mean_a": float(xa.mean()) if len(xa) else math.nan,
               "mean_b": float(xb.mean()) if len(xb) else math.nan, "n_a": len(xa), "n_b": len(xb)}
        row["diff"] = row["mean_a"] - row["mean_b"]
        if min(len(xa), len(xb)) < 2:
            p, low, high = math.nan, math.nan, math.nan
        elif method == "welch":
            p, low, high = _welch(xa, xb, confidence)
        else:
            p, low, high = _bootstrap(xa, xb, confidence, n_resamples, seed)
        row.update(ci_low=low, ci_high=high, p_value=p)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["a", "b", "mean_a", "mean_b", "n_a", "n_b", "diff", "ci_low", "ci_high",
                                      "p_value"])
    tested = out["p_value"].notna()
    out["p_adjusted"] = math.nan
    if tested.any():
        out.loc[tested, "p_adjusted"] = stats.false_discovery_control(out.loc[tested, "p_value"].to_numpy())
    excludes_zero = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    out["survives"] = tested & (out["p_adjusted"] < alpha) & (excludes_zero if method == "bootstrap" else True)
    verdicts = []
    for _, r in out.iterrows():
        if min(r["n_a"], r["n_b"]) < 2:
            verdicts.append("one seed in an arm: no test possible, run more seeds")
        elif pd.isna(r["p_value"]):
            verdicts.append("no spread between seeds (identical runs): the test is undefined")
        elif r["survives"]:
            verdicts.append(f"survives: {r['a']} {'higher' if r['diff'] > 0 else 'lower'} "
                            f"(adjusted p = {r['p_adjusted']:.2g})")
        else:
            verdicts.append(f"within seed noise (adjusted p = {r['p_adjusted']:.2g})")
    out["verdict"] = verdicts
    return out


def mean_spread(mean: float, std: float, n: int | float, digits: int = 3) -> str:
    """``"0.741 ± 0.012"`` (``± std`` only with two seeds or more)."""
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.{digits}g}" if abs(mean) >= 10 ** digits else f"{mean:.{digits}f}"
    if n is not None and not pd.isna(n) and n > 1 and not pd.isna(std):
        text += f" ± {std:.{max(1, digits - 1)}f}"
    return text


def results_frame(summary: pd.DataFrame, keys: Mapping[Any, str], *, by: str | Sequence[str]) -> pd.DataFrame:
    """Rows for :func:`depthlib.book.record_results` from a :func:`summarize` table.

    Args:
        summary: output of :func:`summarize`.
        keys: ``{(group value(s), metric): reported key}``, e.g.
            ``{("mobilenetv2-sgd", "val_delta1"): "sagar2021/table3/mobilenetv2-sgd/delta1"}``; a group of
            several columns is a tuple of their values followed by the metric.
        by: the group column(s) used in :func:`summarize`.

    Returns:
        DataFrame with ``key``, ``value`` (the mean), ``spread`` (the std over seeds), ``n_seeds`` and
        ``seeds``, one row per entry of ``keys``.

    Raises:
        KeyError: a ``keys`` entry that matches no summary row (naming it).
    """
    cols = _groups(summary, by)
    index = {}
    for _, r in summary.iterrows():
        index[tuple(r[c] for c in cols) + (r["metric"],)] = r
    rows = []
    for sel, key in keys.items():
        sel = sel if isinstance(sel, tuple) else (sel,)
        if sel not in index:
            raise KeyError(f"results_frame: no summary row for {sel}; rows: {list(index)[:10]}")
        r = index[sel]
        rows.append({"key": key, "value": r["mean"], "spread": r["std"], "n_seeds": int(r["n"]),
                     "seeds": r["seeds"]})
    return pd.DataFrame(rows, columns=["key", "value", "spread", "n_seeds", "seeds"])
