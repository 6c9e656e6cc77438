"""Reproduced numbers: one CSV per profile and notebook, joined by the scorecard with the papers' numbers.

Written here (:func:`record_results`); read back with :func:`depthlib.reported.load_results(profile,
results_dir) <depthlib.reported.load_results>`, the one reader, which the scorecard uses too.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
from typing import Any

from . import _paths

from depthlib.reported import RESULT_COLUMNS  # one definition; read back with depthlib.reported.load_results


def results_path(profile: str, notebook: str, results_dir: str | os.PathLike | None = None) -> pathlib.Path:
    root = pathlib.Path(results_dir) if results_dir is not None else _paths.results_dir()
    return root / profile / f"{notebook}.csv"


def record_results(df: Any, notebook: str, params: Any, *,
                   results_dir: str | os.PathLike | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Write the reproduced numbers of ``notebook`` to ``results/<profile>/<notebook>.csv``.

    Args:
        df: a DataFrame with columns ``key`` (names a reported number, ``"fastdepth/table1/rmse"``) and
            ``value``; optional ``spread`` (the standard deviation over seeds, NaN for one seed),
            ``n_seeds``, ``data`` and ``seeds``, which default to the run's (``len(params.seeds)``,
            ``params.data``, ``params.seeds``). A mapping ``{key: value}`` is accepted too.
        notebook: the notebook's name; must equal ``params.notebook``.
        params: the :class:`~depthlib.book.Params` of the run (its profile names the CSV).
        results_dir: default ``$DEPTHLIB_RESULTS`` or ``<project>/results``.

    Returns:
        The DataFrame written, with columns ``key value spread n_seeds profile data seeds notebook``.
        The file replaces the notebook's previous CSV of this profile atomically.

    Raises:
        ValueError: a missing column, a duplicated key, a non-numeric value, or a notebook name differing
            from ``params.notebook``.
    """
    import pandas as pd

    profile = getattr(params, "profile", None)
    if not isinstance(profile, str):
        raise ValueError(f"record_results: params must be the Params from depthlib.book.setup, got {params!r}")
    if getattr(params, "notebook", notebook) != notebook:
        raise ValueError(f"record_results: notebook {notebook!r} differs from params.notebook {params.notebook!r}")
    if isinstance(df, dict):
        df = pd.DataFrame({"key": list(df), "value": list(df.values())})
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"record_results: df must be a DataFrame or a dict, got {type(df).__name__}")
    missing = {"key", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"record_results({notebook!r}): df lacks column(s) {sorted(missing)}; has {list(df.columns)}")
    unexpected = set(df.columns) - set(RESULT_COLUMNS)
    if unexpected:
        raise ValueError(f"record_results({notebook!r}): unexpected column(s) {sorted(unexpected)}; "
                         f"allowed: {list(RESULT_COLUMNS)}")
    out = df.copy().reset_index(drop=True)
    duplicated = out["key"][out["key"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"record_results({notebook!r}): duplicated key(s) {duplicated}")
    try:
        out["value"] = pd.to_numeric(out["value"], errors="raise").astype(float)
    except (ValueError, TypeError) as err:
        raise ValueError(f"record_results({notebook!r}): column 'value' must be numeric ({err})") from None
    seeds = params.get("seeds") if hasattr(params, "get") else None
    n_default = len(seeds) if isinstance(seeds, (list, tuple)) else 1
    seeds_text = ",".join(map(str, seeds)) if isinstance(seeds, (list, tuple)) else ("" if seeds is None else str(seeds))
    defaults = {
        "spread": math.nan,
        "n_seeds": n_default,
        "data": params.get("data", "") if hasattr(params, "get") else "",
        "seeds": seeds_text,
    }
    for column, default in defaults.items():
        if column not in out:
            out[column] = default
    out["spread"] = pd.to_numeric(out["spread"], errors="raise").astype(float)
    out["n_seeds"] = out["n_seeds"].astype(int)
    out["profile"] = profile
    out["notebook"] = notebook
    out = out[list(RESULT_COLUMNS)]
    path = results_path(profile, notebook, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            out.to_csv(f, index=False, float_format="%.6g")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
