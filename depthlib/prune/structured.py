"""Structured (channel) pruning on Torch-Pruning: a smaller *dense* network, faster on any runtime.

Torch-Pruning's :class:`~torch_pruning.DependencyGraph` traces the network once and groups every tensor
dimension that must shrink together: a convolution's output channels with its BatchNorm, the next layer's
input channels, a depthwise convolution's groups, both sides of an additive skip (FastDepth) and of MiDaS's
residual fusions. Removing channel ``i`` of a group removes it everywhere at once, so the pruned network
is an ordinary ``nn.Module`` with fewer channels: no masks, nothing special to export.

>>> import torch
>>> from depthlib.models import create_model
>>> from depthlib.prune import prune, save_pruned, load_pruned
>>> net = create_model("fastdepth")
>>> small = prune(net, torch.rand(1, 3, 64, 64), ratio=0.5, importance="l1")   # a pruned copy
>>> save_pruned(small, "small.pt"); same = load_pruned("small.pt")             # doctest: +SKIP

Targets (exactly one): ``ratio`` (the fraction of channels removed from every prunable group),
``target_macs`` (multiply-accumulates, :func:`depthlib.profiler.count_macs`) or ``target_latency_ms``
(:func:`depthlib.profiler.measure_latency`): pruning proceeds in small uniform steps until the target is met.
Importance: ``"l1"`` / ``"l2"`` (norm of each channel's weights across the whole group) or ``"taylor"``
(|weight x gradient|, Molchanov et al. 2019; needs ``grad_fn`` returning a loss to differentiate).
"""

from __future__ import annotations

import copy
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import torch
import torch_pruning as tp
from torch import nn

from depthlib.profiler import count_macs, count_params, measure_latency

__all__ = ["IMPORTANCES", "get_importance", "prunable_layers", "channel_table", "prune", "save_pruned",
           "load_pruned", "apply_shapes"]

#: Importance criteria accepted by :func:`prune` and :func:`depthlib.prune.netadapt`.
IMPORTANCES = ("l1", "l2", "taylor")

_ROOT_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def get_importance(name: str) -> tp.importance.Importance:
    """Torch-Pruning importance for ``"l1"``, ``"l2"`` or ``"taylor"``."""
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.TaylorImportance()
    raise ValueError(f"importance must be one of {IMPORTANCES}, got {name!r}")


def _output_layers(model: nn.Module) -> list[nn.Module]:
    # a layer with a single output channel is a prediction head: its output is the model's output
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == 1]


def _resolve(model: nn.Module, names: Iterable[str] | None, what: str) -> list[nn.Module]:
    modules = dict(model.named_modules())
    out = []
    for name in names or ():
        if name not in modules:
            raise ValueError(f"{what}: the model has no layer {name!r}")
        out.append(modules[name])
    return out


def _graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    was_training = model.training
    model.eval()  # trace the inference graph (training-only auxiliary heads are not part of it)
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    finally:
        model.train(was_training)


def _groups(model: nn.Module, dg: tp.DependencyGraph, ignored: Sequence[nn.Module]) -> dict[str, Any]:
    names = {m: n for n, m in model.named_modules()}
    out = {}
    for group in dg.get_all_groups(ignored_layers=list(ignored), root_module_types=list(_ROOT_TYPES)):
        root = group[0].dep.target.module
        if dg.get_out_channels(root) is None or dg.get_out_channels(root) < 2:
            continue
        out[names[root]] = group
    return out


def prunable_layers(model: nn.Module, example_inputs: torch.Tensor, *, ignored_layers: Iterable[str] = ()) -> pd.DataFrame:
    """The channel groups of ``model`` (one row per group, named by its root layer).

    Args:
        model: the network; ``example_inputs``: ``(B, 3, H, W)`` for the trace.
        ignored_layers: layer names never pruned (heads with one output channel are always left alone).

    Returns:
        DataFrame indexed by ``layer`` with ``channels`` (the root's output channels) and ``members``
        (how many layers shrink with it).
    """
    ignored = _resolve(model, ignored_layers, "ignored_layers") + _output_layers(model)
    dg = _graph(model, example_inputs)
    rows = [{"layer": name, "channels": dg.get_out_channels(group[0].dep.target.module), "members": len(group)}
            for name, group in _groups(model, dg, ignored).items()]
    return pd.DataFrame(rows, columns=["layer", "channels", "members"]).set_index("layer")


def channel_table(model: nn.Module) -> pd.DataFrame:
    """Output channels of every convolution / linear layer: ``layer, kind, in, out, groups`` (no trace)."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            kind = "depthwise" if m.groups == m.in_channels and m.groups > 1 else ("transposed" if m.transposed else "conv")
            rows.append({"layer": name, "kind": kind, "in": m.in_channels, "out": m.out_channels, "groups": m.groups})
        elif isinstance(m, nn.Linear):
            rows.append({"layer": name, "kind": "linear", "in": m.in_features, "out": m.out_features, "groups": 1})
    return pd.DataFrame(rows, columns=["layer", "kind", "in", "out", "groups"]).set_index("layer")


def _check_example(example_inputs: Any) -> torch.Tensor:
    if not isinstance(example_inputs, torch.Tensor) or example_inputs.dim() != 4:
        raise ValueError(f"example_inputs must be a (B, C, H, W) tensor, got {getattr(example_inputs, 'shape', example_inputs)!r}")
    return example_inputs


def prune(model: nn.Module, example_inputs: torch.Tensor, *, ratio: float | None = None,
          target_macs: int | None = None, target_latency_ms: float | None = None, target_params: int | None = None,
          importance: str = "l1",
          ignored_layers: Iterable[str] = (), global_pruning: bool = False, round_to: int | None = None,
          steps: int = 20, max_ratio: float = 0.9, grad_fn: Callable[[nn.Module], torch.Tensor] | None = None,
          latency_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A channel-pruned **copy** of ``model`` (the original is untouched).

    Args:
        model: the network (any ``nn.Module`` Torch-Pruning can trace).
        example_inputs: ``(B, 3, H, W)`` for the trace, the MAC count and the latency.
        ratio: fraction of channels removed from every prunable group, in [0, 1).
        target_macs: prune in ``steps`` uniform steps (up to ``max_ratio``) until MACs <= this.
        target_latency_ms: the same with :func:`depthlib.profiler.measure_latency` (``latency_kwargs``).
        target_params: the same with :func:`depthlib.profiler.count_params`.
        importance: ``"l1"``, ``"l2"`` or ``"taylor"``.
        ignored_layers: names of layers whose output channels are kept.
        global_pruning: rank channels across groups instead of pruning each group by the same ratio.
        round_to: keep channel counts multiples of this (SIMD-friendly widths).
        grad_fn: ``grad_fn(model) -> loss`` (scalar tensor), called before each step for ``"taylor"``.

    Returns:
        the pruned dense model, in the original's train/eval mode.

    Raises:
        ValueError: not exactly one target; a ratio outside [0, 1); a budget already met or not reached at
            ``max_ratio``; an unknown layer name; ``"taylor"`` without ``grad_fn``.
    """
    example_inputs = _check_example(example_inputs)
    given = {k: v for k, v in (("ratio", ratio), ("target_macs", target_macs),
                               ("target_latency_ms", target_latency_ms), ("target_params", target_params))
             if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of ratio, target_macs, target_latency_ms, target_params; got "
                         f"{sorted(given) or 'none'}")
    if ratio is not None and not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}")
    if not 0.0 < float(max_ratio) < 1.0:
        raise ValueError(f"max_ratio must be in (0, 1), got {max_ratio!r}")
    if importance == "taylor" and grad_fn is None:
        raise ValueError("importance='taylor' needs grad_fn(model) -> loss to compute the gradients")
    imp = get_importance(importance)
    net = copy.deepcopy(model)
    ignored = _resolve(net, ignored_layers, "ignored_layers") + _output_layers(net)
    size = tuple(example_inputs.shape)
    lat_kw = dict(latency_kwargs or {})

    def resource(m: nn.Module) -> float:
        if target_macs is not None:
            return count_macs(m, size)
        if target_params is not None:
            return count_params(m)
        return measure_latency(m, size, **lat_kw)

    target_name = next(iter(given))
    target = given[target_name]
    if ratio is None:
        start = resource(net)
        if start <= target:
            raise ValueError(f"budget already met: the model needs {start:,.4g} <= {target_name}={target:,.4g}")
    n_steps = 1 if ratio is not None else int(steps)
    pruner = tp.pruner.MetaPruner(
        net, example_inputs, importance=imp, global_pruning=global_pruning,
        pruning_ratio=float(ratio) if ratio is not None else float(max_ratio), iterative_steps=n_steps,
        ignored_layers=ignored, round_to=round_to)
    was_training = net.training
    for _ in range(n_steps):
        if importance == "taylor":
            net.zero_grad()
            net.train()
            grad_fn(net).backward()
        net.eval()
        pruner.step()
        if ratio is None and resource(net) <= target:
            break
    else:
        if ratio is None:
            now = resource(net)
            raise ValueError(f"budget unreachable: {now:,.4g} after pruning {max_ratio:.0%} of every group's "
                             f"channels, target {target:,.4g} (raise max_ratio or lower the target)")
    net.zero_grad(set_to_none=True)
    net.train(was_training)
    return net


# --- saving and loading a pruned model ---------------------------------------------------------------------

def _layer_shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    return {name: {"groups": int(m.groups)} for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


def apply_shapes(model: nn.Module, state_dict: dict[str, torch.Tensor], groups: dict[str, dict[str, int]]) -> nn.Module:
    """Resize ``model``'s layers in place to the shapes of ``state_dict`` (a pruned model's), then load it.

    Only the shapes change (parameters and buffers are replaced by tensors of the saved shape and the layers'
    channel attributes updated); the weights come from ``state_dict``, loaded strictly.
    """
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for pname, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            saved = state_dict.get(prefix + pname)
            if saved is not None and tuple(saved.shape) != tuple(tensor.shape):
                new = torch.empty_like(saved, device=tensor.device)
                if isinstance(tensor, nn.Parameter):
                    setattr(module, pname, nn.Parameter(new, requires_grad=tensor.requires_grad))
                else:
                    module.register_buffer(pname, new)
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            g = int(groups.get(name, {}).get("groups", module.groups))
            w = module.weight
            module.groups = g
            if module.transposed:
                module.in_channels, module.out_channels = w.shape[0], w.shape[1] * g
            else:
                module.out_channels, module.in_channels = w.shape[0], w.shape[1] * g
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
            module.num_features = module.weight.shape[0]
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
    model.load_state_dict(state_dict, strict=True)
    return model


def save_pruned(model: nn.Module, path: str | os.PathLike, *, name: str | None = None,
                overrides: dict[str, Any] | None = None, overwrite: bool = False, extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Write a pruned model atomically: its preset ``name`` (default ``model.name``), the preset's
    ``overrides``, each convolution's ``groups`` and the state dict (all loadable with ``weights_only=True``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: no preset name (pass ``name=``).
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    name = name or getattr(model, "name", None)
    if not isinstance(name, str):
        raise ValueError("save_pruned: the model has no preset .name; pass name= (a depthlib.models preset)")
    payload = {"format": "depthlib.prune/1", "name": name, "overrides": dict(overrides or {}),
               "groups": _layer_shapes(model), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": dict(extra or {})}
    _atomic_save(payload, path)
    return path


def _atomic_save(obj: Any, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def load_pruned(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load :func:`save_pruned`'s file: build the preset (or take ``model``, unpruned, same architecture), resize
    its layers to the saved widths and load the weights. Returns the model in eval mode."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pruned model at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "depthlib.prune/1":
        raise ValueError(f"{path} is not a depthlib.prune file (no format 'depthlib.prune/1')")
    if model is None:
        from depthlib.models import create_model

        model = create_model(payload["name"], **payload["overrides"])
    try:
        apply_shapes(model, payload["state_dict"], payload["groups"])
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit preset {payload['name']!r}: {err}") from None
    return model.eval()
