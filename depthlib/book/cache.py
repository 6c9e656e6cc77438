"""The results cache: expensive results stored pickle-free, keyed by parameters and depthlib's code version.

A cached value is a tree of JSON values (numbers, strings, booleans, None, lists, str-keyed dicts),
``pandas.DataFrame``/``Series``, ``torch.Tensor`` and ``numpy.ndarray``. It is stored as a directory
``<cache>/<key>/<hash>/`` holding ``manifest.json`` (the tree, JSON leaves inline) and one file per
frame (``.json`` in pandas' "table" orient, which keeps dtypes and the index), tensor (``.pt``, read back
with ``weights_only=True``) or array (``.npy``, ``allow_pickle=False``). Nothing is unpickled, so a cache
directory received from someone else (a ``paper`` run made on a GPU) cannot execute code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import _paths

T = TypeVar("T")

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")
_FORMAT = 1  # bump when the on-disk layout changes


def code_version() -> str:
    """SHA-256 (hex) of depthlib's source files: their relative paths and contents.

    Any edit to the library invalidates every cached result, so a page never shows numbers computed by
    older code.
    """
    package = _paths.package_dir()
    digest = hashlib.sha256()
    for path in _paths.code_files():
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _canonical(params: Any) -> Any:
    """``params`` as plain JSON (a Params, a Mapping, or JSON values), or a TypeError naming the value."""
    to_dict = getattr(params, "to_dict", None)
    if callable(to_dict):
        params = to_dict()
    if isinstance(params, Mapping):
        return {str(k): _canonical(v) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [_canonical(v) for v in params]
    if isinstance(params, pathlib.PurePath):
        return params.as_posix()
    if params is None or isinstance(params, (bool, int, str)):
        return params
    if isinstance(params, float):
        return params if math.isfinite(params) else repr(params)
    raise TypeError(f"cache params must be JSON values, Params or mappings of them; got {type(params).__name__} "
                    f"{params!r}")


def cache_hash(key: str, params: Any, code: str | None = None) -> str:
    """The hex digest naming the cache entry of ``key`` with ``params`` under code version ``code``
    (default: the current one)."""
    code = code_version() if code is None else code
    text = json.dumps({"key": key, "params": _canonical(params), "code": code, "format": _FORMAT},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(key: str, params: Any, cache_dir: str | os.PathLike | None = None, *,
               code: str | None = None) -> pathlib.Path:
    """The directory where ``cached(key, params, ...)`` stores its value (it may not exist yet)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"cache key {key!r} must be slash-separated names of letters, digits, '_', '.', '-'")
    if cache_dir is None and not os.environ.get("DEPTHLIB_CACHE"):
        cache_dir = getattr(params, "cache_dir", None)  # a profile's own cache (Params.cache_dir)
    root = pathlib.Path(cache_dir) if cache_dir is not None else _paths.cache_dir()
    return root / key / cache_hash(key, params, code)[:20]


def _encode(value: Any, directory: pathlib.Path, counter: list[int], where: str) -> Any:
    import numpy as np
    import pandas as pd
    import torch

    def next_file(suffix: str) -> str:
        counter[0] += 1
        return f"{counter[0]:04d}{suffix}"

    if isinstance(value, pd.Series):
        name = next_file(".json")
        value.to_frame().to_json(directory / name, orient="table", double_precision=15)
        return {"type": "series", "file": name}
    if isinstance(value, pd.DataFrame):
        name = next_file(".json")
        value.to_json(directory / name, orient="table", double_precision=15)
        return {"type": "frame", "file": name}
    if isinstance(value, torch.Tensor):
        name = next_file(".pt")
        torch.save(value.detach().cpu().clone(), directory / name)
        return {"type": "tensor", "file": name}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"cached value at {where}: object arrays cannot be stored without pickle")
        name = next_file(".npy")
        np.save(directory / name, value, allow_pickle=False)
        return {"type": "ndarray", "file": name}
    if isinstance(value, np.generic):
        return {"type": "json", "value": value.item()}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cached value at {where}: dict keys must be str, got {list(value)!r}")
        return {"type": "dict", "items": {k: _encode(v, directory, counter, f"{where}[{k!r}]")
                                          for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"type": "list", "items": [_encode(v, directory, counter, f"{where}[{i}]")
                                          for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"type": "json", "value": value}
    raise TypeError(
        f"cached value at {where} has type {type(value).__name__}, which the pickle-free cache cannot store: "
        "return JSON values, DataFrames, Series, tensors or numpy arrays (in dicts/lists)"
    )


def _decode(node: Mapping[str, Any], directory: pathlib.Path) -> Any:
    import numpy as np
    import pandas as pd
    import torch

    kind = node["type"]
    if kind == "json":
        return node["value"]
    if kind == "dict":
        return {k: _decode(v, directory) for k, v in node["items"].items()}
    if kind == "list":
        return [_decode(v, directory) for v in node["items"]]
    path = directory / node["file"]
    if kind == "frame":
        return pd.read_json(path, orient="table")
    if kind == "series":
        return pd.read_json(path, orient="table").iloc[:, 0]
    if kind == "tensor":
        return torch.load(path, map_location="cpu", weights_only=True)
    if kind == "ndarray":
        return np.load(path, allow_pickle=False)
    raise ValueError(f"{directory / 'manifest.json'}: unknown entry type {kind!r}")


def _load_dir(directory: pathlib.Path) -> Any:
    with open(directory / "manifest.json", encoding="utf-8") as f:
        content = json.load(f)
    return _decode(content["value"], directory)


def load_cached(key: str, params: Any, cache_dir: str | os.PathLike | None = None) -> Any:
    """The stored value of ``key`` with ``params``, or a KeyError naming the missing entry."""
    directory = cache_path(key, params, cache_dir)
    if not (directory / "manifest.json").is_file():
        raise KeyError(f"no cached result {key!r} for these parameters and code version at {directory}")
    return _load_dir(directory)


def cached(key: str, params: Any, fn: Callable[[], T], *, refresh: bool = False,
           cache_dir: str | os.PathLike | None = None) -> T:
    """``fn()``, computed once per ``(key, params, depthlib code version)`` and stored pickle-free.

    Args:
        key: names the result, slash-separated (``"fastdepth/ablation"``); one directory per key.
        params: everything the result depends on besides depthlib's code: a :class:`Params`, a mapping or
            JSON values. Tensors and functions are not parameters.
        fn: computes the value; called without arguments only on a cache miss (or ``refresh=True``).
        refresh: recompute and overwrite.
        cache_dir: default ``$DEPTHLIB_CACHE``, else the profile's ``cache:`` directory
            (``params.cache_dir``, ``results/paper/cache`` for the paper profile, committed so that a GPU
            run renders elsewhere without recomputing), else ``<project>/.cache/depthlib``.

    Returns:
        The value ``fn`` returned, or its stored copy: tuples come back as lists, numpy scalars as Python
        numbers, tensors on the CPU.

    Raises:
        TypeError: ``params`` or the value cannot be stored without pickle (names the offending entry).
    """
    # The entry is named once, before computing: the code version is the one fn() started with, even if
    # the sources change while it runs.
    version = code_version()
    directory = cache_path(key, params, cache_dir, code=version)
    if not refresh and (directory / "manifest.json").is_file():
        return _load_dir(directory)
    value = fn()
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Written into a sibling temp dir, then renamed: a crash or a concurrent run never leaves a
    # half-written entry under the final name.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    try:
        tree = _encode(value, tmp, [0], "result")
        content = {"key": key, "params": _canonical(params), "code_version": version, "value": tree}
        with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
            json.dump(content, f, indent=1, sort_keys=True)
        if directory.exists():
            shutil.rmtree(directory)
        try:
            os.replace(tmp, directory)
        except OSError:
            if not (directory / "manifest.json").is_file():  # someone else won the race only if it is complete
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # Return the stored copy so a first run and a cached run give a page exactly the same values.
    return _load_dir(directory)
