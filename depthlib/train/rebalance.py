"""Loss rebalancing inside :func:`depthlib.train.fit` (``TrainConfig.rebalance``): which terms, when, and what
is recorded. The update rule is :class:`depthlib.losses.MultiLossRebalancer`'s."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from depthlib.losses import MultiLossRebalancer

from .config import REBALANCE_ORDERS

__all__ = ["Rebalancing", "rebalance_boundaries"]


def rebalance_boundaries(n_batches: int, per_epoch: int) -> list[int]:
    """The numbers of batches done in an epoch after which the weights are rebalanced:
    ``ceil(j * n_batches / per_epoch)`` for ``j = 1 .. per_epoch``, without repeats (the last is ``n_batches``)."""
    return sorted({math.ceil(j * n_batches / per_epoch) for j in range(1, per_epoch + 1)})


class Rebalancing:
    """The rebalancing of one ``fit`` run.

    The term names depend on the number of auxiliary heads (with ``wrap_aux=False``), which only a training-mode
    output tells: the :class:`~depthlib.losses.MultiLossRebalancer` is built at the first batch
    (:meth:`ensure`), before the first step; a checkpoint's state waits until then (:meth:`load_state_dict`).

    Args:
        spec: ``TrainConfig.rebalance`` (defaults filled in).
        distill: ``(name, kind)`` of every distillation term; ``"holistic"`` ones are not rebalanced.
        n_batches: batches per epoch (per process).
    """

    def __init__(self, spec: dict[str, Any], distill: Sequence[tuple[str, str]], n_batches: int) -> None:
        self.spec = dict(spec)
        self.distill = [(n, k) for n, k in distill if k != "holistic"]
        self.boundaries = set(rebalance_boundaries(n_batches, spec["per_epoch"]))
        self.n_batches = n_batches
        self.rebalancer: MultiLossRebalancer | None = None
        self._pending: dict[str, Any] | None = None
        self._source = ""
        weights = spec.get("weights")
        if weights is not None:  # checked before any forward pass: the head count is read from the keys
            heads = [int(k.rsplit("/", 1)[1]) for k in weights if k.startswith("loss/") and k[5:].isdigit()]
            self._check_weights(weights, self.names(max(heads) if heads and self.split else 0))

    def _check_weights(self, weights: dict[str, float], names: list[str]) -> None:
        missing, unknown = [n for n in names if n not in weights], sorted(set(weights) - set(names))
        if missing or unknown:
            raise ValueError(
                f"TrainConfig.rebalance['weights']={weights!r} must give one weight per rebalanced term "
                f"{names}" + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))

    @property
    def split(self) -> bool:
        """Whether heads are rebalanced one by one (``wrap_aux=False``)."""
        return not self.spec["wrap_aux"]

    def names(self, n_aux: int) -> list[str]:
        """The rebalanced terms for a student with ``n_aux`` auxiliary heads, in the objective's order."""
        split = self.split and n_aux > 0
        heads = range(n_aux + 1)
        out = [f"loss/{h}" for h in heads] if split else ["loss"]
        for name, kind in self.distill:
            out += [f"{name}/{h}" for h in heads] if split and kind == "pixel_rmse" else [name]
        return out

    def ensure(self, n_aux: int) -> MultiLossRebalancer:
        """The rebalancer, built on the first call (``ValueError`` when ``weights`` names other terms)."""
        if self.rebalancer is not None:
            return self.rebalancer
        names = self.names(n_aux)
        weights = self.spec.get("weights")
        if weights is not None:
            self._check_weights(weights, names)
            weights = [weights[n] for n in names]
        start, slope, end = REBALANCE_ORDERS[self.spec["order"]]
        rb = MultiLossRebalancer(names, weights=weights, lam_start=start, lam_slope=slope, lam_end=end,
                                 initialize=self.spec["initialize"])
        if self._pending is not None:
            if list(self._pending["names"]) != names:
                raise ValueError(f"{self._source} was rebalancing the terms {list(self._pending['names'])}, this run "
                                 f"has {names}; resume with the same model and terms, or pass resume=False")
            rb.load_state_dict(self._pending)
            self._pending = None
        self.rebalancer = rb
        return rb

    def objective(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sum_i w_i L_i`` over the rebalanced terms (a tensor with gradient)."""
        assert self.rebalancer is not None
        total = None
        for name in self.rebalancer.names:
            term = self.rebalancer.weights[name] * parts[name]
            total = term if total is None else total + term
        return total  # type: ignore[return-value]

    def after_batch(self, values: dict[str, float], done: int, epoch: int) -> None:
        """Record one step's (finite) values; rebalance when ``done`` batches of epoch ``epoch`` (0-based) end a
        period, at ``epoch + done / n_batches`` (a float: epochs completed)."""
        assert self.rebalancer is not None
        self.rebalancer.record(values)
        if done in self.boundaries:
            at = epoch + done / self.n_batches
            try:
                self.rebalancer.rebalance(at)
            except ValueError as err:
                raise ValueError(f"loss rebalancing at epoch {at:.3g} (TrainConfig.rebalance): {err}") from None

    def weights(self) -> dict[str, float]:
        """The current weights by term (``{}`` before the first batch of a fresh run)."""
        if self.rebalancer is not None:
            return dict(self.rebalancer.weights)
        return dict(self._pending["weights"]) if self._pending is not None else {}

    def history_frame(self) -> pd.DataFrame:
        """One row per rebalance: ``epoch`` (float, epochs completed), ``lam``, ``w_<term>``, ``loss_<term>``."""
        if self.rebalancer is not None:
            rows = self.rebalancer.history
        else:
            rows = self._pending["history"] if self._pending is not None else []
        return pd.DataFrame([dict(r) for r in rows])

    def state_dict(self) -> dict[str, Any] | None:
        if self.rebalancer is not None:
            return self.rebalancer.state_dict()
        return self._pending

    def load_state_dict(self, state: dict[str, Any] | None, source: str) -> None:
        if state is None:
            raise ValueError(f"{source} was written without the rebalancer's state; resume with the same config, "
                             "or pass resume=False / another out_dir to start over")
        self._pending, self._source, self.rebalancer = dict(state), source, None
