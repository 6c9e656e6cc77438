"""Haly & Malcarne's two sweeps (haly2021, Section 3.1), exactly as they ran them, and what they really did.

- **fine-grained**: ``torch.nn.utils.prune.l1_unstructured(conv, "weight", amount=s)`` on every ``Conv2d``:
  the fraction ``s`` of each convolution's weights with the smallest magnitude becomes zero;
- **"channel"** (whole-layer): the ``Conv2d`` layers sorted by the magnitude (L1 norm) of their weights,
  least first, the first ``int(s x number of layers)`` of them zeroed entirely (``amount=1.0``).

Both zero weights inside dense tensors: the network has as many parameters, does as many multiply-adds and
runs no faster on a dense kernel. :func:`sparsity_report` says what changed instead: the true count of
non-zero parameters, the size on disk of the dense checkpoint (unchanged) and of the same file compressed
(where zeros do pay). Their tables print ``(1 - s) x 16.6 M`` as "Num. Parameters" for both sweeps
(:func:`nominal_params`), which is neither count.

>>> from depthlib.models import create_model
>>> from depthlib.prune import prune_unstructured, sparsity_report
>>> net = prune_unstructured(create_model("midas-small"), 0.5)            # a pruned copy, masks made permanent
>>> sparsity_report(net)["nonzero_params"] < sparsity_report(create_model("midas-small"))["params"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
import gzip
import io
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

__all__ = ["HALY_FINE_SPARSITIES", "HALY_LAYER_SPARSITIES", "prune_unstructured", "prune_whole_layers",
           "make_permanent", "nominal_params", "sparsity_report", "layers_by_magnitude"]

#: Section 3.1's fine-grained sweep (Table 2) and "channel" sweep (Table 1).
HALY_FINE_SPARSITIES = (0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.99)
HALY_LAYER_SPARSITIES = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20)


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return s


def _contiguous_copy(model: nn.Module) -> nn.Module:
    """A deep copy with contiguous weights: ``torch.nn.utils.prune`` flattens a weight with ``view(-1)``, which a
    ``channels_last`` weight (what :func:`depthlib.train.fit` leaves by default) cannot take."""
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def _convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def make_permanent(model: nn.Module) -> nn.Module:
    """``torch.nn.utils.prune.remove`` on every pruned parameter: the zeros stay, the masks and hooks go."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model


def prune_unstructured(model: nn.Module, sparsity: float, *, permanent: bool = True) -> nn.Module:
    """Haly & Malcarne's fine-grained pruning: ``l1_unstructured(amount=sparsity)`` on every ``Conv2d`` of a copy.

    Args:
        sparsity: fraction of each convolution's weights zeroed, in [0, 1).
        permanent: remove the masks (their procedure); ``False`` keeps them so that a fine-tune cannot
            regrow the zeros (call :func:`make_permanent` afterwards).
    """
    s = _check_sparsity(sparsity)
    net = _contiguous_copy(model)
    for _, conv in _convs(net):
        torch_prune.l1_unstructured(conv, "weight", amount=s)
    return make_permanent(net) if permanent else net


def layers_by_magnitude(model: nn.Module) -> list[tuple[str, float]]:
    """``(layer name, L1 norm of its weight)`` for every ``Conv2d``, least first (their ordering)."""
    norms = [(n, float(m.weight.detach().abs().sum())) for n, m in _convs(model)]
    return sorted(norms, key=lambda item: item[1])


def prune_whole_layers(model: nn.Module, sparsity: float, *, permanent: bool = True) -> tuple[nn.Module, list[str]]:
    """Haly & Malcarne's "channel" pruning of a copy: the ``int(sparsity x n_conv)`` ``Conv2d`` layers of least
    L1 norm zeroed by ``l1_unstructured(amount=1.0)``. Returns ``(model, names of the zeroed layers)``."""
    s = _check_sparsity(sparsity)
    net = _contiguous_copy(model)
    order = layers_by_magnitude(net)
    chosen = [name for name, _ in order[: int(s * len(order))]]  # "truncated the list": int() truncates
    modules = dict(net.named_modules())
    for name in chosen:
        torch_prune.l1_unstructured(modules[name], "weight", amount=1.0)
    return (make_permanent(net) if permanent else net), chosen


def nominal_params(params: int, sparsity: float) -> float:
    """The "Num. Parameters" of haly2021's Tables 1-2: ``(1 - sparsity) x params`` (not a count of anything)."""
    return (1.0 - _check_sparsity(sparsity)) * params


def _state_bytes(model: nn.Module) -> bytes:
    # the state dict the model would have with its masks made permanent: weight = weight_orig * weight_mask
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            key = key[: -len("_orig")]
            value = value * model.state_dict()[key + "_mask"]
        state[key] = value.detach()
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def sparsity_report(model: nn.Module, *, compresslevel: int = 6) -> dict[str, float]:
    """What pruning changed, counted rather than assumed.

    Returns:
        ``params`` (all parameters, zeros included), ``nonzero_params``, ``conv_weights``,
        ``nonzero_conv_weights``, ``zero_fraction`` (of the conv weights), ``dense_bytes`` (the
        ``torch.save`` file of the state dict) and ``gzip_bytes`` (that file gzip-compressed at ``compresslevel``).
        Masks still attached count as pruned (the effective weight ``weight_orig * weight_mask`` is counted).
    """
    params = nonzero = conv = conv_nonzero = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):  # a pruning mask is attached: count the effective weight
                p = getattr(module, name[: -len("_orig")])
            params += p.numel()
            nz = int(torch.count_nonzero(p.detach()))
            nonzero += nz
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and name.startswith("weight"):
                conv += p.numel()
                conv_nonzero += nz
    raw = _state_bytes(model)
    return {"params": params, "nonzero_params": nonzero, "conv_weights": conv, "nonzero_conv_weights": conv_nonzero,
            "zero_fraction": 1.0 - conv_nonzero / conv if conv else 0.0, "dense_bytes": len(raw),
            "gzip_bytes": len(gzip.compress(raw, compresslevel=compresslevel, mtime=0))}

