"""The results cache: expensive results stored pickle-free, keyed by parameters and the code they depend on.

An entry's key is ``(key, params, code)``, where ``code`` hashes only the depthlib modules the computation
depends on (:func:`dependencies`): the modules of the depthlib functions and objects ``fn`` refers to (through
its globals and closures, following the chapter's own helper functions), and everything those modules import
from depthlib, lazily imported modules included. Each module is hashed by its syntax tree with docstrings
removed, so comments, docstrings and formatting never invalidate a result; plotting, the command line and the
book machinery (runner, cache, results, grids, parameters) are never part of it. A result that depends on a
loss is recomputed when the loss's code changes; a docstring edit in ``plotting.py`` keeps every cached run.
When the references cannot be followed (``fn`` uses the whole ``depthlib`` package), every library module
counts.

A corrupt entry or an unwritable cache directory is a warning and a recompute, never a crash, a stale number
or a lost result.

A cached value is a tree of JSON values (numbers, strings, booleans, None, lists, str-keyed dicts),
``pandas.DataFrame``/``Series``, ``torch.Tensor`` and ``numpy.ndarray``. It is stored as a directory
``<cache>/<key>/<hash>/`` holding ``manifest.json`` (the tree, JSON leaves inline) and one file per
frame (``.json`` in pandas' "table" orient, which keeps dtypes and the index), tensor (``.pt``, read back
with ``weights_only=True``) or array (``.npy``, ``allow_pickle=False``). Nothing is unpickled, so a cache
directory received from someone else (a ``paper`` run made on a GPU) cannot execute code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from . import _paths

T = TypeVar("T")

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")
_FORMAT = 1  # bump when the on-disk layout changes


#: Modules that never change a cached result: drawing, the command line and the book's own machinery.
NOT_DEPENDENCIES = ("depthlib.plotting", "depthlib.cli", "depthlib.book", "depthlib.book._paths",
                    "depthlib.book.cache", "depthlib.book.grids", "depthlib.book.params", "depthlib.book.results",
                    "depthlib.book.runner")


def _modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """``{dotted name: file}`` of every module of the package at ``package``."""
    out = {}
    for path in _paths.code_files():
        if path.suffix != ".py":
            continue
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(("depthlib", *parts))] = path
    return out


def _stat(path: pathlib.Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=512)
def _parsed(path: str, size: int, mtime: int) -> tuple[str, tuple[str, ...]]:
    """A module's hash without docstrings, comments or formatting, and the names it imports (any depth)."""
    source = pathlib.Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source, filename=path)
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()  # the docstring does not compute anything
        if isinstance(node, ast.Import):
            imports += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    digest = hashlib.sha256(ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).hexdigest()
    return digest, tuple(json.dumps(i) for i in imports)


def _imported(name: str, path: pathlib.Path, known: Mapping[str, pathlib.Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for item in _parsed(*_stat(path))[1]:
        level, module, names = json.loads(item)
        if level:
            base = package.split(".")[: len(package.split(".")) - level + 1]
            module = ".".join(base + ([module] if module else []))
        for candidate in [module, *(f"{module}.{n}" for n in names)]:
            if candidate in known:
                found.add(candidate)
    return found


def dependencies(roots: Iterable[str] | None = None) -> list[str]:
    """The depthlib modules a computation starting in ``roots`` runs: their static import closure (lazy
    imports included, parent packages included), less :data:`NOT_DEPENDENCIES`. ``None``: every module."""
    known = _modules(_paths.package_dir())
    if roots is None:
        todo = list(known)
    else:
        todo = [r for r in roots if r in known]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in NOT_DEPENDENCIES:  # the book's machinery is no computation: do not follow its imports
            continue
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known]
        todo += sorted(_imported(name, known[name], known) - seen)
    return sorted(m for m in seen if m not in NOT_DEPENDENCIES)


def code_version(roots: Iterable[str] | None = None) -> str:
    """SHA-256 (hex) of the code of :func:`dependencies` ``(roots)``: module names and their syntax trees
    without docstrings. Comments, docstrings and modules outside the closure do not change it."""
    known = _modules(_paths.package_dir())
    digest = hashlib.sha256()
    for name in dependencies(roots):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(_parsed(*_stat(known[name]))[0].encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def roots_of(fn: Callable[..., Any]) -> set[str] | None:
    """The depthlib modules ``fn`` refers to: the modules of the depthlib functions, classes, objects and
    modules reachable from its globals and closure cells, following non-depthlib functions (a chapter's own
    ``run``, and the book machinery's own functions such as the lambda :func:`run_grid` builds around a
    ``functools.partial``) a few levels deep. ``None`` when it refers to the ``depthlib`` package as a whole or to nothing
    of depthlib (then every module counts)."""
    roots: set[str] = set()
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> bool:  # False: give up (too broad)
        if id(obj) in seen or depth > 6:
            return True
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            if name == "depthlib":
                return False
            if name.startswith("depthlib.") and name not in NOT_DEPENDENCIES:
                roots.add(name)
            return True
        if isinstance(obj, functools.partial):
            return all(visit(o, depth + 1) for o in (obj.func, *obj.args, *obj.keywords.values()))
        module = getattr(obj, "__module__", None) if isinstance(obj, (type, types.FunctionType,
                                                                        types.BuiltinFunctionType)) \
            else type(obj).__module__
        # The book's machinery (run_grid's lambda, cached) computes nothing itself: a function of it is
        # followed like a chapter's own function, so the run it wraps is what counts.
        machinery = module in NOT_DEPENDENCIES
        if isinstance(module, str) and (module == "depthlib" or module.startswith("depthlib.")) and not machinery:
            roots.add(module)
            return True
        if machinery and not isinstance(obj, types.FunctionType):
            return True
        if isinstance(obj, types.MethodType):
            return visit(obj.__func__, depth + 1) and visit(obj.__self__, depth + 1)
        if isinstance(obj, types.FunctionType):
            names = _code_names(obj.__code__)
            refs = [obj.__globals__[n] for n in names if n in obj.__globals__]
            refs += [c.cell_contents for c in (obj.__closure__ or ()) if _has_contents(c)]
            refs += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
            return all(visit(r, depth + 1) for r in refs)
        if isinstance(obj, (list, tuple, set, frozenset)):
            return all(visit(o, depth + 1) for o in list(obj)[:64])
        if isinstance(obj, dict):
            return all(visit(o, depth + 1) for o in list(obj.values())[:64])
        return True

    if not visit(fn, 0) or not roots:
        return None
    return roots


def _has_contents(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a name assigned later)
        return False
    return True


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
    (default: the current version of the whole library)."""
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


def load_cached(key: str, params: Any, cache_dir: str | os.PathLike | None = None, *,
                code: str | None = None) -> Any:
    """The stored value of ``key`` with ``params`` (under ``code``, default the whole library's version),
    or a KeyError naming the missing entry."""
    directory = cache_path(key, params, cache_dir, code=code)
    if not (directory / "manifest.json").is_file():
        raise KeyError(f"no cached result {key!r} for these parameters and code version at {directory}")
    return _load_dir(directory)


def cached(key: str, params: Any, fn: Callable[[], T], *, refresh: bool = False,
           cache_dir: str | os.PathLike | None = None, depends_on: Iterable[str] | None = None) -> T:
    """``fn()``, computed once per ``(key, params, code it depends on)`` and stored pickle-free.

    Args:
        key: names the result, slash-separated (``"fastdepth/ablation"``); one directory per key.
        params: everything the result depends on besides depthlib's code: a :class:`Params`, a mapping or
            JSON values. Tensors and functions are not parameters.
        fn: computes the value; called without arguments only on a cache miss (or ``refresh=True``).
        refresh: recompute and overwrite.
        cache_dir: default ``$DEPTHLIB_CACHE``, else the profile's ``cache:`` directory
            (``params.cache_dir``, ``results/paper/cache`` for the paper profile, committed so that a GPU
            run renders elsewhere without recomputing), else ``<project>/.cache/depthlib``.
        depends_on: the depthlib modules the result depends on (their imports are followed); default: found
            from ``fn`` (:func:`roots_of`).

    Returns:
        The value ``fn`` returned, or its stored copy: tuples come back as lists, numpy scalars as Python
        numbers, tensors on the CPU.

    Raises:
        TypeError: ``params`` or the value cannot be stored without pickle (names the offending entry).

    Warns:
        an entry that cannot be read (corrupt, truncated, from an incompatible version) is recomputed and
        replaced; a cache directory that cannot be written keeps the value in memory only. Either way the
        page gets the freshly computed value, never a stale one or none.
    """
    # The entry is named once, before computing: the code version is the one fn() started with, even if
    # the sources change while it runs.
    version = code_version(sorted(depends_on) if depends_on is not None else roots_of(fn))
    directory = cache_path(key, params, cache_dir, code=version)
    if not refresh and (directory / "manifest.json").is_file():
        try:
            return _load_dir(directory)
        except Exception as err:  # noqa: BLE001 - any unreadable entry is recomputed, never trusted
            warnings.warn(f"cache entry {directory} cannot be read ({type(err).__name__}: {err}); recomputing",
                          stacklevel=2)
    value = fn()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        # Written into a sibling temp dir, then renamed: a crash or a concurrent run never leaves a
        # half-written entry under the final name.
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
    except OSError as err:
        warnings.warn(f"cache directory {directory.parent} is not writable ({err}); the result of {key!r} is "
                      "kept in memory only", stacklevel=2)
        return value
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
    except OSError as err:
        warnings.warn(f"cache entry {directory} could not be written ({err}); the result of {key!r} is kept "
                      "in memory only", stacklevel=2)
        return value
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # Return the stored copy so a first run and a cached run give a page exactly the same values.
    try:
        return _load_dir(directory)
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"cache entry {directory} cannot be read back ({err}); using the computed value",
                      stacklevel=2)
        return value
