"""NetAdapt (Yang, Howard, Chen, Zhang, Go, Sandler, Sze and Adam, ECCV 2018), the pruning FastDepth used.

Each iteration ``i`` lowers the resource (MACs, or measured latency) by ``step x R0`` (``R0`` the unpruned
model's), decayed by ``step_decay ** i``:

1. for every channel group of the current network (Torch-Pruning's dependency graph: a layer with everything
   that must shrink with it), find the **fewest** channels to remove, least important first (``importance``),
   so that the network meets this iteration's resource target;
2. fine-tune each such proposal briefly (``short_term``) and score it (``score``, higher is better);
3. keep the best proposal; stop once the resource is at most ``budget x R0``; fine-tune the result for
   longer (``long_term``).

Every iteration is checkpointed atomically in ``out_dir`` (``iter_NNN.pt``: the network's weights and widths,
the history and the settings); a killed run started again with the same settings resumes after the last
finished iteration and ends bit-identical to an uninterrupted one (the fine-tunes are seeded); other settings
raise an error naming the first difference. :attr:`NetAdaptResult.history` has one row per iteration.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import torch
import torch_pruning as tp
from torch import nn
from tqdm.auto import tqdm

from depthlib.profiler import count_macs, count_params, measure_latency
from depthlib.prune.structured import (_atomic_save, _check_example, _graph, _groups, _layer_shapes, _output_layers,
                                       _resolve, apply_shapes, get_importance)

__all__ = ["NetAdaptResult", "netadapt", "netadapt_fit", "load_iteration", "HISTORY_COLUMNS"]

#: Columns of :attr:`NetAdaptResult.history`.
HISTORY_COLUMNS = ("iteration", "layer", "channels_before", "channels_after", "resource", "target", "macs",
                   "params", "score", "n_proposals")

_RESOURCES = ("macs", "params", "latency")


@dataclasses.dataclass
class NetAdaptResult:
    """The pruned network, one history row per iteration, and the unpruned resource ``R0``."""

    model: nn.Module
    history: pd.DataFrame
    initial_resource: float
    resource: str


def _settings(**kw: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def _checkpoints(out_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in out_dir.glob("iter_*.pt") if re.fullmatch(r"iter_\d{3}\.pt", p.name))


def netadapt(model: nn.Module, example_inputs: torch.Tensor, *, budget: float, score: Callable[[nn.Module], float],
             short_term: Callable[[nn.Module, int], Any] | None = None,
             long_term: Callable[[nn.Module], Any] | None = None, resource: str = "macs", step: float = 0.1,
             step_decay: float = 1.0, importance: str = "l1", layers: Iterable[str] | None = None,
             ignored_layers: Iterable[str] = (), min_channels: int = 1, max_iterations: int = 50,
             out_dir: str | os.PathLike | None = None, latency_kwargs: dict[str, Any] | None = None,
             settings: dict[str, Any] | None = None, progress: bool | None = None) -> NetAdaptResult:
    """Prune a copy of ``model`` with NetAdapt until its resource is at most ``budget`` times the original's.

    Args:
        model: the trained network (untouched).
        example_inputs: ``(B, 3, H, W)``: the trace, the MAC count and the latency input.
        budget: target resource as a fraction of the unpruned one, in (0, 1).
        score: ``score(model) -> float``, higher is better (e.g. delta1 on a held-out set).
        short_term: ``short_term(model, iteration)`` fine-tunes a proposal in place (seed it for resumability).
        long_term: fine-tunes the final network in place.
        resource: ``"macs"`` (:func:`depthlib.profiler.count_macs`), ``"params"``
            (:func:`depthlib.profiler.count_params`: yucel2021's Table 7 budgets are parameter counts) or
            ``"latency"`` (:func:`depthlib.profiler.measure_latency` with ``latency_kwargs``).
        step: resource removed per iteration, as a fraction of the unpruned resource, in (0, 1).
        step_decay: the step of iteration ``i`` (0-based) is ``step x step_decay ** i``.
        importance: ``"l1"`` or ``"l2"`` ranks the channels within a group.
        layers: root layers of the groups NetAdapt may shrink (default: every prunable group).
        ignored_layers: layers never shrunk.
        min_channels: channels every group keeps.
        out_dir: checkpoint folder (resumes from it); ``None`` keeps nothing.
        settings: extra settings to check on resume (e.g. the fine-tuning recipe).
        progress: tqdm bar per iteration (``None``: on a terminal or in a notebook).

    Returns:
        :class:`NetAdaptResult`.

    Raises:
        ValueError: a budget, step or resource out of range; a budget the unpruned model already meets; an
            unknown or unprunable layer in ``layers``; a checkpoint written with other settings; no group
            able to reach an iteration's target (the budget is unreachable; the iterations done are kept).
    """
    example_inputs = _check_example(example_inputs)
    if resource not in _RESOURCES:
        raise ValueError(f"resource must be one of {_RESOURCES}, got {resource!r}")
    if not 0.0 < float(budget) < 1.0:
        raise ValueError(f"budget must be in (0, 1) (a fraction of the unpruned {resource}), got {budget!r}")
    if not 0.0 < float(step) < 1.0:
        raise ValueError(f"step must be in (0, 1), got {step!r}")
    if not 0.0 < float(step_decay) <= 1.0:
        raise ValueError(f"step_decay must be in (0, 1], got {step_decay!r}")
    if importance not in ("l1", "l2"):
        raise ValueError(f"importance must be 'l1' or 'l2' for NetAdapt, got {importance!r}")
    if int(min_channels) < 1:
        raise ValueError(f"min_channels must be >= 1, got {min_channels!r}")
    imp = get_importance(importance)
    size = tuple(example_inputs.shape)
    lat_kw = dict(latency_kwargs or {})

    def measure(m: nn.Module) -> float:
        if resource == "macs":
            return float(count_macs(m, size))
        if resource == "params":
            return float(count_params(m))
        return measure_latency(m, size, **lat_kw)

    net = copy.deepcopy(model)
    ignored_names = list(ignored_layers)
    _resolve(net, ignored_names, "ignored_layers")
    base_ignored = lambda m: _resolve(m, ignored_names, "ignored_layers") + _output_layers(m)  # noqa: E731
    all_groups = _groups(net, _graph(net, example_inputs), base_ignored(net))
    if layers is not None:
        layers = list(layers)
        modules = dict(net.named_modules())
        for name in layers:
            if name not in modules:
                raise ValueError(f"layers: the model has no layer {name!r}")
            if name not in all_groups:
                raise ValueError(f"layers: {name!r} is not the root of a channel group the dependency graph can "
                                 f"prune; prunable: {sorted(all_groups)}")
    names = layers if layers is not None else list(all_groups)
    r0 = measure(net)
    config = _settings(budget=float(budget), resource=resource, step=float(step), step_decay=float(step_decay),
                       importance=importance, layers=names, ignored_layers=ignored_names, min_channels=int(min_channels),
                       input=list(size), initial_macs=int(count_macs(net, size)), user=settings or {})
    history: list[dict[str, Any]] = []
    out = pathlib.Path(out_dir) if out_dir is not None else None
    start = 0
    if out is not None and _checkpoints(out):
        last = _checkpoints(out)[-1]
        saved = torch.load(last, map_location="cpu", weights_only=True)
        for key in sorted(set(config) | set(saved["settings"])):
            if key == "initial_resource":
                continue
            if saved["settings"].get(key) != config.get(key):
                raise ValueError(f"{last} was written by a NetAdapt run with {key}={saved['settings'].get(key)!r}, "
                                 f"this run has {key}={config.get(key)!r}: use another out_dir or the same settings")
        apply_shapes(net, saved["state_dict"], saved["groups"])
        history = list(saved["history"])
        start = int(saved["iteration"])
        r0 = float(saved["initial_resource"])  # latency is measured, not recomputed: keep the run's reference
    goal = float(budget) * r0
    current = measure(net) if not history else float(history[-1]["resource"])
    if not history and current <= goal:
        raise ValueError(f"budget already met: the model's {resource} {current:,.4g} <= budget x itself")
    for it in range(start, int(max_iterations)):
        if current <= goal:
            break
        target = max(goal, current - float(step) * float(step_decay) ** it * r0)
        dg = _graph(net, example_inputs)
        # each group is rebuilt from its first root layer: after pruning, Torch-Pruning may root it elsewhere
        modules = dict(net.named_modules())
        groups = {}
        for name in names:
            layer = modules[name]
            fn = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
            n_out = dg.get_out_channels(layer)
            if n_out is not None and n_out >= 2:
                groups[name] = dg.get_pruning_group(layer, fn, idxs=list(range(n_out)))
        proposals = []
        bar = tqdm(names, desc=f"NetAdapt iteration {it + 1}", unit="group", leave=False,
                   disable=None if progress is None else not progress)
        for name in bar:
            if name not in groups:
                continue
            cand = _propose(net, example_inputs, name, groups[name], dg, imp, target, current, measure, int(min_channels))
            if cand is None:
                continue
            model_k, before, after, res_k = cand
            if short_term is not None:
                short_term(model_k, it)
            s = float(score(model_k))
            proposals.append((s, name, before, after, res_k, model_k))
            bar.set_postfix(layer=name, score=f"{s:.4f}")
        bar.close()
        if not proposals:
            raise ValueError(f"budget unreachable: no channel group can bring the {resource} from {current:,.4g} to "
                             f"{target:,.4g} at iteration {it + 1} (keeping min_channels={min_channels}); the "
                             f"{len(history)} finished iteration(s) are kept" + (f" in {out}" if out else ""))
        best = max(proposals, key=lambda p: p[0])  # ties: the first group in layer order
        s, name, before, after, res_k, net = best
        current = res_k
        history.append({"iteration": it + 1, "layer": name, "channels_before": before, "channels_after": after,
                        "resource": res_k, "target": target, "macs": int(count_macs(net, size)),
                        "params": int(count_params(net)), "score": s, "n_proposals": len(proposals)})
        if out is not None:
            _atomic_save({"format": "depthlib.netadapt/1", "iteration": it + 1, "settings": config,
                          "initial_resource": r0, "history": history, "groups": _layer_shapes(net),
                          "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}},
                         out / f"iter_{it + 1:03d}.pt")
    if long_term is not None:
        long_term(net)
    return NetAdaptResult(net, pd.DataFrame(history, columns=list(HISTORY_COLUMNS)), r0, resource)


def _propose(net: nn.Module, example_inputs: torch.Tensor, name: str, group: Any, dg: tp.DependencyGraph,
             imp: Any, target: float, current: float, measure: Callable[[nn.Module], float],
             min_channels: int) -> tuple[nn.Module, int, int, float] | None:
    """The fewest channels of group ``name`` whose removal meets ``target``: ``(model, before, after, resource)``."""
    root = group[0].dep.target.module
    channels = dg.get_out_channels(root)
    most = channels - min_channels
    if most < 1:
        return None
    order = torch.argsort(imp(group)).tolist()  # least important first

    names = {id(m): n for n, m in net.named_modules()}
    fn = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels

    def pruned(n: int) -> tuple[nn.Module, float]:
        # the group is resolved once on ``net``'s graph and replayed on a copy, layer by layer (one trace per
        # iteration instead of one per proposal); graph-only nodes (concat, split) carry no weights
        plan = [(names[id(dep.target.module)], dep, tp._helpers.to_plain_idxs(idxs))
                for dep, idxs in dg.get_pruning_group(root, fn, idxs=order[:n]) if id(dep.target.module) in names]
        cand = copy.deepcopy(net)
        modules = dict(cand.named_modules())
        for layer, dep, idxs in plan:
            dep.handler.__self__.pruning_dim = dep.target.pruning_dim
            dep.handler(modules[layer], idxs)
        return cand, measure(cand)

    cand, res = pruned(1)
    if res <= target:
        return cand, channels, channels - 1, res
    per_channel = current - res
    if per_channel <= 0:
        n = most
    else:  # MACs fall linearly with a group's channels: the estimate is exact up to rounding
        n = min(most, max(2, math.ceil((current - target) / per_channel)))
    cand, res = pruned(n)
    while res > target and n < most:
        n = min(most, n + max(1, n // 4))
        cand, res = pruned(n)
    if res > target:
        return None
    while n > 1:  # the fewest: step back while the target still holds (latency is not exactly linear)
        smaller, r = pruned(n - 1)
        if r > target:
            break
        cand, res, n = smaller, r, n - 1
    return cand, channels, channels - n, res


def load_iteration(out_dir: str | os.PathLike, iteration: int, model: nn.Module) -> nn.Module:
    """The network after NetAdapt iteration ``iteration`` (1-based) of the run in ``out_dir``: ``model`` (the
    unpruned architecture, resized in place) with that checkpoint's widths and weights, in eval mode."""
    path = pathlib.Path(out_dir) / f"iter_{int(iteration):03d}.pt"
    if not path.is_file():
        have = [p.name for p in _checkpoints(pathlib.Path(out_dir))] if pathlib.Path(out_dir).is_dir() else []
        raise FileNotFoundError(f"no NetAdapt checkpoint {path}; the folder has {have or 'none'}")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return apply_shapes(model, saved["state_dict"], saved["groups"]).eval()


def netadapt_fit(model: nn.Module, train_data: Any, score_data: Any, example_inputs: torch.Tensor, *, budget: float,
                 short_config: Any, long_config: Any | None = None, score_metric: str = "delta1",
                 out_dir: str | os.PathLike | None = None, **kwargs: Any) -> NetAdaptResult:
    """:func:`netadapt` with :func:`depthlib.train.fit` as its fine-tunes and :func:`depthlib.train.evaluate` as
    its score: the recipe the chapters use.

    Args:
        train_data: samples for the fine-tunes (``fit``'s ``train_data``).
        score_data: held-out samples scoring each proposal with ``score_metric`` (higher is better; for an
            error metric such as ``"rmse"`` its negative is used).
        short_config: the :class:`~depthlib.train.TrainConfig` of each proposal's fine-tune; iteration ``i``
            fine-tunes with seed ``short_config.seed + i``, so a resumed run repeats it exactly.
        long_config: the final fine-tune's config (``None``: none).
        **kwargs: passed to :func:`netadapt` (``step``, ``resource``, ``layers``, ``progress``...).
    """
    from depthlib.train import evaluate, fit

    sign = 1.0 if score_metric.startswith("delta") else -1.0

    def short_term(m: nn.Module, it: int) -> None:
        fit(m, train_data, None, dataclasses.replace(short_config, seed=short_config.seed + it, progress=False))

    def score(m: nn.Module) -> float:
        return sign * evaluate(m, score_data, short_config)[score_metric]

    def long_term(m: nn.Module) -> None:
        fit(m, train_data, None, long_config)

    settings = {"short_config": _plain(short_config.to_dict()),
                "long_config": _plain(long_config.to_dict()) if long_config is not None else None,
                "score_metric": score_metric, "n_train": len(train_data), "n_score": len(score_data),
                **kwargs.pop("settings", {})}
    return netadapt(model, example_inputs, budget=budget, score=score, short_term=short_term,
                    long_term=long_term if long_config is not None else None, out_dir=out_dir, settings=settings, **kwargs)


def _plain(value: Any) -> Any:
    # settings are stored with weights_only=True: only plain containers and scalars
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
