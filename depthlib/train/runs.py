"""One run of a chapter: build a preset with its weights, train it, evaluate it, predict with it.

:func:`train_eval` is ``create_model`` -> :func:`depthlib.train.fit` -> :func:`depthlib.train.evaluate` on each
evaluation set (plus :func:`depthlib.metrics.edge_error` and a few predictions for figures, both through
:func:`predict`); :func:`lr_search` is Smith's LR range test on a freshly built model. The input
normalisation is the model's own (``model.normalization``, recorded by ``create_model`` from the weights):
nothing here normalises.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from . import _engine

__all__ = ["build_model", "rebuild_model", "predict", "train_eval", "train_eval_run", "lr_search"]


def build_model(model: str | Callable[[], nn.Module], seed: int, weights: Any = None,
                overrides: Mapping[str, Any] | None = None) -> nn.Module:
    """A preset (or a factory's model) built after seeding, so that the decoder's init is part of what a seed varies.

    Args:
        model: a preset name for :func:`depthlib.models.create_model`, or a zero-argument factory.
        seed: seeds torch, Python and NumPy first.
        weights: the encoder's weights, as ``create_model`` takes them (``"none"`` as the profiles spell it).
        overrides: preset keyword arguments.
    """
    _engine.seed_everything(seed)
    if callable(model):
        if overrides or weights not in (None, "none"):
            raise ValueError("model_overrides and weights need a preset name, not a factory")
        return model()
    from depthlib.models import create_model

    return create_model(model, weights=weights, **dict(overrides or {}))


def rebuild_model(model: str | Callable[[], nn.Module], state: Mapping[str, torch.Tensor], *, weights: Any = None,
                  overrides: Mapping[str, Any] | None = None) -> nn.Module:
    """The trained network of a run, from the ``state_dict`` that ``train_eval(..., keep_state=True)`` returned.

    Built as the run built it (same preset, ``weights`` and ``overrides``, so the recorded input normalisation
    is the same), then loaded strictly with ``state``; returned in ``eval()`` mode.
    """
    net = build_model(model, 0, weights, overrides)
    net.load_state_dict(dict(state))
    return net.eval()


def _batches(data: Dataset | Sequence[Mapping[str, Any]], batch_size: int) -> Iterable[dict[str, Any]]:
    from torch.utils.data import DataLoader, default_collate

    keep = ("image", "depth", "mask")
    # only the tensors a prediction needs: paths and intrinsics of mixed sources need not collate
    return DataLoader(data, batch_size=batch_size, shuffle=False,
                      collate_fn=lambda items: default_collate([{k: it[k] for k in keep if k in it} for it in items]))


@torch.no_grad()
def predict(model: nn.Module, data: Dataset | Sequence[Mapping[str, Any]], *, device: str = "cpu",
            batch_size: int = 8, with_targets: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
    """The model's predictions for every sample of ``data``, in ``eval()`` mode.

    Args:
        model: ``(B, 3, H, W) -> (B, 1, H, W)``; a :class:`depthlib.models.DepthNet` normalises its input
            itself as its weights expect (``model.normalization``).
        data: samples with ``"image"`` ``(3, H, W)`` in [0, 1] (all of one size).
        device: where to run.
        batch_size: images per forward pass.
        with_targets: also return the samples' ``depth`` and ``mask``.

    Returns:
        ``(N, 1, H, W)`` float32 on the CPU, or with ``with_targets`` ``{"pred", "depth", "mask"}``.
    """
    was_training = model.training
    model.eval().to(device)
    preds, depths, masks = [], [], []
    for batch in _batches(data, batch_size):
        preds.append(model(batch["image"].to(device)).float().cpu())
        if with_targets:
            depths.append(batch["depth"])
            masks.append(batch["mask"])
    model.train(was_training)
    if not with_targets:
        return torch.cat(preds)
    return {"pred": torch.cat(preds), "depth": torch.cat(depths), "mask": torch.cat(masks)}


OUTPUT_BIAS_SAMPLES = 256


def mean_valid_depth(dataset: Dataset, max_samples: int | None = None) -> float:
    """Mean of the valid depth pixels (metres) of ``dataset``, over up to ``max_samples`` samples spread evenly
    through it (all of them with ``None``); each sample has ``depth`` and ``mask`` ``(1, H, W)``.

    Raises:
        ValueError: an empty dataset, or no valid pixel in the samples read.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("mean_valid_depth: the dataset is empty")
    count = n if max_samples is None else min(n, int(max_samples))
    picks = sorted({int(i) for i in torch.linspace(0, n - 1, count).round().tolist()})
    total, pixels = 0.0, 0
    for i in picks:
        sample = dataset[i]
        valid = sample["depth"][sample["mask"]]
        total, pixels = total + float(valid.double().sum()), pixels + int(valid.numel())
    if pixels == 0:
        raise ValueError(f"mean_valid_depth: no valid depth pixel in {len(picks)} sample(s)")
    return total / pixels


def _output_bias(value: float | str | None, train: Dataset) -> float | None:
    """The depth (metres) ``train_eval(output_bias=value)`` starts the head at; ``None`` for no change."""
    if value is None:
        return None
    if isinstance(value, str):
        if value != "mean":
            raise ValueError(f"train_eval: output_bias must be None, a depth in metres or 'mean', got {value!r}")
        return mean_valid_depth(train, OUTPUT_BIAS_SAMPLES)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"train_eval: output_bias must be a positive finite depth in metres, got {value!r}")
    return float(value)


def train_eval(model: str | Callable[[], nn.Module], *, train: Dataset, config: Any,
               evaluations: Mapping[str, Dataset] | None = None, val: Dataset | None = None,
               weights: Any = None, model_overrides: Mapping[str, Any] | None = None,
               predict_on: Dataset | None = None, eval_kwargs: Mapping[str, Any] | None = None,
               edges: bool = False, on_nonfinite: str = "raise", out_dir: Any = None,
               teacher: nn.Module | None = None, distill: Sequence[Any] | None = None,
               teacher_cache: Any = None, keep_state: bool = False,
               output_bias: float | str | None = None, output_scale: float = 1.0) -> dict[str, Any]:
    """One run: build the model, train it with :func:`depthlib.train.fit`, evaluate it.

    Args:
        model: a preset name for :func:`depthlib.models.create_model`, or a zero-argument factory.
        train: training samples (``image`` ``(3, H, W)``, ``depth`` and ``mask`` ``(1, H, W)``).
        config: the :class:`depthlib.train.TrainConfig`; ``config.seed`` also seeds the model's init.
        evaluations: named evaluation sets; each adds ``<name>_<metric>`` for every metric of
            :func:`depthlib.train.evaluate` (``rmse``, ``delta1``, ...).
        val: validation set evaluated after every epoch by ``fit`` (in ``history``).
        weights: the encoder's weights, as :func:`depthlib.models.create_model` takes them (``None``/``"none"``,
            ``"auto"``, ``"imagenet"``, a weights name or a path). model_overrides: passed to ``create_model``.
        predict_on: a few samples whose predictions ``(N, 1, H, W)`` are returned as ``predictions``.
        eval_kwargs: passed to ``evaluate`` (``max_depth``, ``crop``, ``reduction``...).
        edges: also compute :func:`depthlib.metrics.edge_error` on each evaluation set
            (``<name>_edge_error``, mean over images).
        on_nonfinite: ``"raise"`` (default) or ``"record"``: a run whose loss turns NaN/inf (an LR from a range
            test can be too high) returns ``diverged = 1`` and NaN metrics instead of stopping the grid.
        out_dir: checkpoints of ``fit`` (resumable); ``None`` keeps nothing on disk.
        teacher, distill, teacher_cache: distillation, passed to ``fit`` (a frozen teacher, a list of
            :class:`depthlib.train.DistillTerm` or of dicts of their fields, a :class:`~depthlib.train.TeacherCache`
            shared by the runs of a seed sweep). ``distill`` without a ``teacher`` raises; a ``teacher`` without
            ``distill`` terms is not used (so one bound teacher serves both arms of an ablation).
        keep_state: also return the trained ``state_dict`` (CPU tensors), for :func:`rebuild_model`.
        output_bias: start the network's last bias (before its final ReLU) at this depth in metres, or at
            ``"mean"``: the mean valid depth of up to :data:`OUTPUT_BIAS_SAMPLES` training samples spread over
            ``train`` (:meth:`depthlib.models.DepthNet.init_output_bias`). ``None`` (default) keeps the
            initialisation of the preset. A network whose head has no such bias raises.
        output_scale: with ``output_bias``, also multiply that layer's weight by this factor (``weight_scale``
            of ``init_output_bias``): below 1, every pixel starts near the bias whatever the head's layout.

    Returns:
        ``{"params": int, "diverged": 0 or 1, "train_loss": float (last epoch), "train_time_s": float,
        "images_per_s": float, "weights": the weights entry's name or "none", "<name>_<metric>": float...,
        "history": DataFrame, "predictions": (N, 1, H, W) tensor (with predict_on), "state_dict" (with
        keep_state)}``; a distilled run's history has a ``train_<term>`` column per term.
    """
    from depthlib.metrics import edge_error
    from depthlib.train import NonFiniteLossError, evaluate, fit

    from depthlib.train import DistillTerm

    if on_nonfinite not in ("raise", "record"):
        raise ValueError(f"train_eval: on_nonfinite must be 'raise' or 'record', got {on_nonfinite!r}")
    terms = [t if isinstance(t, DistillTerm) else DistillTerm(**dict(t)) for t in (distill or [])]
    if terms and teacher is None:
        raise ValueError(f"train_eval: distill={[t.name or t.kind for t in terms]} needs a teacher (teacher=None)")
    bias = _output_bias(output_bias, train)
    net = build_model(model, config.seed, weights, model_overrides)
    if bias is None and output_scale != 1.0:
        raise ValueError(f"train_eval: output_scale={output_scale!r} needs output_bias (it scales the layer whose bias is set)")
    if bias is not None and not (hasattr(net, "init_output_bias") and net.init_output_bias(bias, output_scale)):
        raise ValueError(f"train_eval: output_bias={output_bias!r}, but {getattr(net, 'name', type(net).__name__)} "
                         "has no bias before a final ReLU to set")
    entry = getattr(net, "weights", None)
    start = time.perf_counter()
    try:
        history = fit(net, train, val, config, out_dir, **(
            {"teacher": teacher, "distill": terms, "teacher_cache": teacher_cache} if terms else {}))
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
        "weights": entry.name if entry is not None else "none",
    }
    for name, data in (evaluations or {}).items():
        metrics = evaluate(net, data, config, **dict(eval_kwargs or {}))
        out.update({f"{name}_{k}": float(v) for k, v in metrics.items()})
        if edges:
            got = predict(net, data, device=config.device, batch_size=config.eval_batch_size or config.batch_size,
                          with_targets=True)
            out[f"{name}_edge_error"] = float(edge_error(got["pred"], got["depth"], got["mask"]).nanmean())
    out["history"] = history
    if predict_on is not None:
        out["predictions"] = predict(net, predict_on, device=config.device)
    if keep_state:
        out["state_dict"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return out


def train_eval_run(*, model: str, data: str, seed: int, datasets: Mapping[str, Mapping[str, Any]],
                   common: Mapping[str, Any] | None = None, weights: Any = None,
                   model_overrides: Mapping[str, Any] | None = None, teacher: nn.Module | None = None,
                   teacher_cache: Any = None, **fields: Any) -> dict[str, Any]:
    """One run of a grid whose runs are JSON dicts: :func:`train_eval` with ``TrainConfig(**common, **fields,
    seed=seed)`` on ``datasets[data]`` (a :func:`depthlib.data.chapter_data` result).

    ``fields`` are :class:`~depthlib.train.TrainConfig` fields (``optimizer``, ``lr``, ``loss``, ``loss_kwargs``,
    ``batch_size``, ``epochs``...) or :func:`train_eval` options (``predict_on``, ``edges``, ``on_nonfinite``,
    ``eval_kwargs``, ``keep_state``, ``output_bias``, ``output_scale``, and ``distill``: a list of :class:`~depthlib.train.DistillTerm` fields as
    dicts). Bind ``datasets``, ``common``, ``weights`` (and a ``teacher`` with its ``teacher_cache``, used by
    the runs that name ``distill`` terms) with :func:`functools.partial` and hand the result to
    :func:`depthlib.book.run_grid`.
    """
    from depthlib.train import TrainConfig

    options = {k: fields.pop(k) for k in ("predict_on", "edges", "on_nonfinite", "eval_kwargs", "val", "out_dir",
                                          "distill", "keep_state", "output_bias", "output_scale") if k in fields}
    if data not in datasets:
        raise ValueError(f"train_eval_run: data={data!r} is not one of {list(datasets)}")
    ds = datasets[data]
    config = TrainConfig(**{**dict(common or {}), **fields, "seed": seed})
    return train_eval(model, train=ds["train"], evaluations=ds["evaluations"], config=config, weights=weights,
                      model_overrides=model_overrides, teacher=teacher, teacher_cache=teacher_cache, **options)


def lr_search(model: str | Callable[[], nn.Module], data: Dataset, config: Any, *,
              weights: Any = None, model_overrides: Mapping[str, Any] | None = None,
              quiet: bool = True, **range_test: Any) -> dict[str, Any]:
    """Smith's LR range test on a freshly built model (seeded with ``config.seed``).

    Args:
        model, weights, model_overrides: as in :func:`train_eval`.
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

    net = build_model(model, config.seed, weights, model_overrides)
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        curve, lr = lr_range_test(net, data, config, **range_test)
    return {"suggested_lr": float(lr), "curve": curve}
