"""Grids of runs for the chapters: the product of parameter axes, each run computed once through the cache.

Example (what chapter 04 does, at a toy size)::

    from depthlib.book import grid, run_grid
    from depthlib.train import TrainConfig, train_eval

    runs = grid(model=["fastdepth", "mbv2-nnconv5-narrow"], seed=[0, 1])
    result = run_grid(runs, lambda model, seed: train_eval(model, train=ds, evaluations={"val": val},
                                                           config=TrainConfig(epochs=1, seed=seed)),
                      cache_key="04/table3", cache_params={"data": spec})
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .cache import cached

__all__ = ["GridResult", "grid", "run_grid"]

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
            version)`` through :func:`depthlib.book.cached` (keyed by the code it depends on), so that adding a seed or an axis value computes
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
