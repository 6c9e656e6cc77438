"""yucel2021's ordinal-depth pipeline (Tables 3-7) as runs: one relative-depth network trained on a sequence of
datasets (MC -> RedWeb -> DIW), with intermediate heads, distillation and loss rebalancing, evaluated on three
metrics (RMSE on NYU, WHDR on DIW, si-RMSE on MC).

The networks of this pipeline predict **log depth up to an additive constant** (``output_kind == "relative"``,
e.g. ``create_model("mbv2-fbnet-x112", relative=True)``): Li et al.'s MC loss (:func:`depthlib.losses.mannequin_si`)
is defined on log depth, and the ranking losses of DIW and ReDWeb depend only on the order of the values, which the
logarithm keeps. The evaluation follows from that (:func:`relative_metrics`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["STAGE_LOSSES", "relative_metrics", "ordinal_run"]

#: The loss each dataset is trained with (yucel2021 section 3.2): MC with Li et al.'s scale-invariant loss
#: (eq. 1), ReDWeb with Xian et al.'s improved ranking loss on its sampled pairs (eq. 3), DIW with Chen et al.'s
#: ranking loss (eq. 2). NYU (Table 3's first row, metric depth) is trained here with the MC loss too, so that every
#: row predicts the same quantity (the paper trains that row with its metric protocol of Table 1).
STAGE_LOSSES: dict[str, str] = {"mc": "mannequin_si", "redweb": "ranking_improved", "diw": "ranking",
                                "nyu": "mannequin_si"}


def _scale_heads(net: nn.Module, factor: float) -> None:
    """Multiply the last convolution of the output head and of every intermediate head by ``factor``."""
    dec = getattr(net, "decoder", None)
    heads = [getattr(dec, "head", None), *getattr(dec, "aux_heads", {}).values()] if dec is not None else []
    convs = [next((m for m in reversed(list(h.modules())) if isinstance(m, nn.Conv2d)), None) for h in heads if h is not None]
    if not convs or any(c is None for c in convs):
        raise ValueError(f"ordinal_run: output_scale needs a decoder with convolutional heads; "
                         f"{getattr(net, 'name', type(net).__name__)} has none")
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(float(factor))
            if conv.bias is not None:
                conv.bias.zero_()


@torch.no_grad()
def relative_metrics(model: nn.Module, evaluations: Mapping[str, Dataset], *, device: str = "cpu",
                     batch_size: int = 8) -> dict[str, float]:
    """The metrics of a log-depth network on each evaluation set, as ``{"<set>_<metric>": value}``.

    - Sets with ordinal pairs (DIW): ``whdr``, the share of pairs whose predicted order disagrees
      (:func:`depthlib.metrics.whdr`, threshold 0: DIW's pairs are never "equal"), over all pairs of the set.
    - Sets with dense depth (NYU in metres, MC up to scale): the prediction ``z`` is turned into depth by the
      per-image constant that best fits ``ln(target)`` in least squares (``exp(z + c)``, ``c`` the mean of
      ``ln t - z`` over the valid pixels: the scale si-RMSE ignores, :func:`depthlib.metrics.align_log_scale`),
      then every metric of :func:`depthlib.metrics.depth_metrics` (``rmse`` in the set's units, ``si_rmse``,
      ``delta1``, ...). yucel2021 does not say how a relative network's RMSE on NYU was computed; this alignment is
      ours (one free scale per image, as Li et al.'s own evaluation allows).

    Args:
        model: maps ``(B, 3, H, W)`` to ``(B, 1, H, W)`` log depth; evaluated in ``eval()`` mode.
        evaluations: named datasets of sample dicts (``pairs``/``relation`` and/or ``depth``/``mask``).
        device, batch_size: where and how many samples at a time.
    """
    from depthlib.metrics import DepthMetrics, whdr

    from torch.utils.data import DataLoader, default_collate

    keep = ("image", "depth", "mask", "pairs", "relation")
    was = model.training
    model.eval()
    model.to(device)
    out: dict[str, float] = {}
    try:
        for name, data in evaluations.items():
            wrong = total = 0.0
            dense = DepthMetrics()
            batches = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=lambda items: default_collate(
                [{k: it[k] for k in keep if k in it} for it in items]))
            for batch in batches:
                z = model(batch["image"].to(device)).float()
                if "pairs" in batch and "relation" in batch:
                    wrong += float(whdr(z, batch["pairs"], batch["relation"], reduction="sum"))
                    total += float(batch["relation"].numel())
                mask = batch.get("mask")
                if mask is not None and bool(mask.any()):
                    t, m = batch["depth"].to(device), mask.to(device).bool() & (batch["depth"].to(device) > 0)
                    logt = torch.log(torch.where(m, t, torch.ones_like(t)).clamp(min=1e-3))
                    n = m.sum(dim=(1, 2, 3)).clamp(min=1)
                    shift = ((logt - z) * m).sum(dim=(1, 2, 3)) / n
                    aligned = torch.exp((z + shift.view(-1, 1, 1, 1)).clamp(-30, 30))
                    dense.update(aligned, t, m)
            if total:
                out[f"{name}_whdr"] = wrong / total
            if dense.num_images:
                out.update({f"{name}_{k}": float(v) for k, v in dense.compute().items()})
    finally:
        model.train(was)
    return out


def ordinal_run(*, model: str, seed: int, sequence: Sequence[str], datasets: Mapping[str, Any],
                common: Mapping[str, Any], stage_fields: Mapping[str, Mapping[str, Any]] | None = None,
                aux_heads: int = 0, model_overrides: Mapping[str, Any] | None = None, weights: Any = None,
                distill: Sequence[Mapping[str, Any]] | None = None, rebalance: Mapping[str, Any] | None = None,
                loss_weight: float = 1.0, teacher: nn.Module | None = None, teacher_cache: Any = None,
                output_scale: float | None = None, keep_state: bool = False, out_dir: Any = None) -> dict[str, Any]:
    """One run of the ordinal pipeline: build a relative network, train it on ``sequence``, evaluate it.

    Args:
        model: a preset that takes ``relative=True`` and ``aux_heads`` (the yucel2021 FBNet presets).
        seed: the run's seed (model initialisation and every stage's :class:`TrainConfig`).
        sequence: dataset names trained on in order, e.g. ``["mc", "redweb", "diw"]``; each must be a key of
            ``datasets["train"]`` (a :func:`depthlib.data.relative_chapter_data` result).
        datasets: that result: ``{"train": {name: Dataset}, "evaluations": {name: Dataset}, ...}``.
        common: :class:`TrainConfig` fields of every stage (optimiser, LR, batch size, device, ...).
        stage_fields: per dataset name, fields that override ``common`` for its stage (``epochs``, ``loss``,
            ``loss_kwargs``...); the loss defaults to :data:`STAGE_LOSSES`.
        aux_heads: intermediate prediction heads (0, 1 or 2; yucel2021 Table 4), trained with ``common``'s
            ``aux_weights`` (or 0.5/0.5 and 0.5/0.25/0.25 by default) and removed before evaluation and counting.
        distill: :class:`DistillTerm` fields as dicts, applied in the **last** stage (DIW + KD); needs ``teacher``.
        rebalance: ``TrainConfig.rebalance`` of the last stage (Lee & Kim's rebalancing, Table 6).
        loss_weight: weight of the last stage's supervised loss (0: "PI-only", the teacher alone supervises).
        teacher, teacher_cache: the frozen teacher and its output cache (see :func:`fit`).
        output_scale: multiply the heads' last convolution by this factor and zero its bias, so the untrained
            network starts near a constant log depth instead of values of tens (kaiming initialisation).
        keep_state: also return the trained ``state_dict`` (with the intermediate heads, for a teacher).
        out_dir: checkpoints of the stages (resumable, :func:`fit_sequence`); ``None`` keeps nothing.

    Returns:
        ``{"params": int (without the intermediate heads), "train_time_s", "train_loss" (last epoch of the last
        stage), "<set>_<metric>"... from :func:`relative_metrics`, "history": DataFrame (a ``stage`` column),
        "rebalance_history": DataFrame (one row per rebalance, with ``rebalance``), "state_dict" (with
        ``keep_state``)}``.

    Raises:
        ValueError: before any training, naming the value: an unknown dataset in ``sequence`` (the message lists
            the known ones), an empty sequence, ``distill`` without ``teacher``, a negative ``loss_weight``.
    """
    from . import Stage, TrainConfig, fit_sequence
    from .distill import DistillTerm
    from .runs import build_model

    train_sets = datasets["train"]
    sequence = list(sequence)
    if not sequence:
        raise ValueError("ordinal_run: sequence is empty; name the datasets to train on, e.g. ['mc', 'redweb', 'diw']")
    unknown = [s for s in sequence if s not in train_sets]
    if unknown:
        raise ValueError(f"ordinal_run: sequence={sequence} names unknown dataset(s) {unknown}; "
                         f"known: {sorted(train_sets)}")
    if distill and teacher is None:
        raise ValueError(f"ordinal_run: distill={[d.get('kind') for d in distill]} needs a teacher (teacher=None)")
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, (int, float)) or not math.isfinite(loss_weight) \
            or loss_weight < 0:
        raise ValueError(f"ordinal_run: loss_weight must be a finite number >= 0, got {loss_weight!r}")
    terms = [DistillTerm(**dict(t)) for t in (distill or [])]
    overrides = {"relative": True, "aux_heads": int(aux_heads), **dict(model_overrides or {})}
    net = build_model(model, seed, weights, overrides)
    if output_scale is not None:
        _scale_heads(net, output_scale)
    stages = []
    for k, name in enumerate(sequence):
        fields = {"loss": STAGE_LOSSES.get(name, "ranking"), **dict(common), **dict((stage_fields or {}).get(name, {}))}
        last = k == len(sequence) - 1
        if last and rebalance is not None:
            fields["rebalance"] = dict(rebalance)
        if last and loss_weight != 1.0:
            fields["loss_weight"] = float(loss_weight)
        stages.append(Stage(name, train_sets[name], TrainConfig(**fields, seed=seed), distill=bool(last and terms)))
    start = time.perf_counter()
    history = fit_sequence(net, stages, out_dir, teacher=teacher if terms else None, distill=terms or None,
                           teacher_cache=teacher_cache if terms else None)
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {"train_time_s": elapsed, "train_loss": float(history["train_loss"].iloc[-1])}
    if keep_state:
        out["state_dict"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    if hasattr(net, "remove_aux_heads"):
        net.remove_aux_heads()
    out["params"] = int(sum(p.numel() for p in net.parameters()))
    device = str(stages[-1].config.device)
    out.update(relative_metrics(net, datasets["evaluations"], device=device,
                                batch_size=stages[-1].config.eval_batch_size or stages[-1].config.batch_size))
    out["history"] = history
    reb = history.attrs.get("rebalance") if hasattr(history, "attrs") else None
    if isinstance(reb, pd.DataFrame) and len(reb):
        out["rebalance_history"] = reb
    return out
