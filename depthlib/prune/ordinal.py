"""yucel2021's pruned networks (Table 7's last three rows): NetAdapt on the final relative model, by parameter
count, then each pruned version fine-tuned on DIW with the training pipeline.

The paper (section 4.3, "Final Words"): "we remove the intermediate prediction layers, prune the model and finetune
on DIW using the same training pipeline", to 1.9 M, 1.5 M and 1 M parameters. It says nothing of NetAdapt's
settings; here its short-term fine-tune of each proposal is one short DIW stage with the ranking loss alone,
its score the WHDR on a held-out part of the DIW *training* set (never the test set), and the final fine-tune
of each version is the last stage of the pipeline (DIW with the distillation terms and the rebalancer).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from depthlib.profiler import count_macs, count_params
from depthlib.prune.netadapt import _plain, netadapt

__all__ = ["ordinal_netadapt"]


def ordinal_netadapt(model: nn.Module, *, train_data: Any, short_data: Any, score_data: Any,
                     evaluations: Mapping[str, Any],
                     budgets: Sequence[float], short_fields: Mapping[str, Any], long_fields: Mapping[str, Any],
                     seed: int, example_size: Sequence[int], step: float = 0.1,
                     distill: Sequence[Mapping[str, Any]] | None = None, teacher: nn.Module | None = None,
                     teacher_cache: Any = None, out_dir: str | os.PathLike | None = None,
                     progress: bool | None = None) -> dict[str, Any]:
    """Prune a trained relative network with NetAdapt to each of ``budgets`` (fractions of its parameters),
    one NetAdapt trajectory through them in order, and fine-tune and evaluate every version.

    Args:
        model: the trained network (untouched); its intermediate heads, if any, are removed from a copy first.
        train_data: the DIW training samples (``image``, ``pairs``, ``relation``) of the final fine-tunes.
        short_data: the samples of each proposal's short fine-tune (a part of ``train_data``: on the real DIW a
            full epoch per proposal is out of reach).
        score_data: held-out DIW samples scoring NetAdapt's proposals by WHDR (lower is better), outside
            ``short_data``.
        evaluations: the sets every version is evaluated on (:func:`depthlib.train.ordinal.relative_metrics`).
        budgets: parameter fractions of ``model``, strictly decreasing, each in (0, 1); yucel2021: 1.9, 1.5 and
            1.0 M of 2.6 M.
        short_fields: :class:`~depthlib.train.TrainConfig` fields of each proposal's short fine-tune (its
            ``loss`` defaults to the DIW ranking loss); iteration ``i`` of each budget's NetAdapt call runs with
            seed ``seed + i``.
        long_fields: fields of each version's final fine-tune (with ``distill`` and ``teacher``: the pipeline's
            last stage, ``rebalance`` included if given).
        seed: the run's seed.
        example_size: ``(B, 3, H, W)`` of the trace and of the MAC count.
        step: parameters removed per NetAdapt iteration, as a fraction of ``model``'s.
        distill, teacher, teacher_cache: the final fine-tune's :class:`~depthlib.train.DistillTerm` fields, the
            frozen teacher and its output cache (as :func:`depthlib.train.fit` takes them).
        out_dir: NetAdapt's checkpoints, one folder per budget (a killed run resumes its NetAdapt iterations; the
            final fine-tunes, not checkpointed, run again and give the same weights); ``None`` keeps nothing.
        progress: NetAdapt's progress bars.

    Returns:
        ``{"versions": DataFrame`` (one row per budget: ``budget``, ``params``, ``macs``, ``iterations``, then
        every metric of ``relative_metrics``), ``"history"``: NetAdapt's iterations of the whole trajectory
        (a ``budget`` column), ``"unpruned": {"params", "macs"}}``.

    Raises:
        ValueError: before any pruning: an empty, unsorted or out-of-range ``budgets``; ``distill`` without
            ``teacher``.
    """
    from depthlib.train import DistillTerm, TrainConfig, fit
    from depthlib.train.ordinal import STAGE_LOSSES, relative_metrics

    budgets = [float(b) for b in budgets]
    if not budgets or any(not 0.0 < b < 1.0 for b in budgets) or any(b >= a for a, b in zip(budgets, budgets[1:])):
        raise ValueError(f"ordinal_netadapt: budgets must be strictly decreasing fractions in (0, 1), got {budgets}")
    if distill and teacher is None:
        raise ValueError("ordinal_netadapt: distill terms need a teacher (teacher=None)")
    short = TrainConfig(**{"loss": STAGE_LOSSES["diw"], **dict(short_fields), "seed": seed, "progress": False})
    long = TrainConfig(**{"loss": STAGE_LOSSES["diw"], **dict(long_fields), "seed": seed})
    terms = [DistillTerm(**dict(t)) for t in (distill or [])]

    net = copy.deepcopy(model).cpu().eval()
    if hasattr(net, "remove_aux_heads"):
        net.remove_aux_heads()
    size = tuple(int(s) for s in example_size)
    example = torch.rand(size, generator=torch.Generator().manual_seed(0))
    p0, m0 = count_params(net), count_macs(net, size)

    def short_term(m: nn.Module, it: int) -> None:
        fit(m, short_data, None, dataclasses.replace(short, seed=seed + it))

    def score(m: nn.Module) -> float:
        return -relative_metrics(m, {"diw": score_data}, batch_size=short.batch_size)["diw_whdr"]

    rows, histories, done = [], [], 0
    for budget in budgets:
        current = count_params(net)
        folder = pathlib.Path(out_dir) / f"budget-{budget:.3f}" if out_dir is not None else None
        if current > budget * p0:
            result = netadapt(net, example, budget=budget * p0 / current, resource="params", step=step * p0 / current,
                              score=score, short_term=short_term, out_dir=folder, progress=progress,
                              settings={"short": _plain(short.to_dict()), "seed": seed, "offset": done,
                                        "n_short": len(short_data), "n_score": len(score_data)})
            net = result.model
            history = result.history.assign(budget=budget, iteration=result.history["iteration"] + done)
            done += len(history)
            histories.append(history)
        version = copy.deepcopy(net)
        fit(version, train_data, None, long, teacher=teacher if terms else None, distill=terms or None,
            teacher_cache=teacher_cache if terms else None)
        version.eval()
        rows.append({"budget": budget, "params": int(count_params(version)), "macs": int(count_macs(version, size)),
                     "iterations": done, **relative_metrics(version, evaluations, batch_size=long.batch_size)})
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return {"versions": pd.DataFrame(rows), "history": history, "unpruned": {"params": int(p0), "macs": int(m0)}}
