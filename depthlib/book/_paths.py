"""Where the book's files live: the project root, profiles, results, cache and the real samples."""

from __future__ import annotations

import os
import pathlib

# The project root holds profiles/ and _toc.yml. Notebooks run from notebooks/ (papermill's cwd), tests
# from a temporary copy, and the package may be installed editable or not, so the root is searched
# rather than derived from one of these alone.
_ROOT_MARKERS = ("profiles", "_toc.yml")


def _is_root(path: pathlib.Path) -> bool:
    return all((path / marker).exists() for marker in _ROOT_MARKERS)


def project_root() -> pathlib.Path:
    """The directory holding ``profiles/`` and ``_toc.yml``.

    Order: ``$DEPTHLIB_ROOT``; the working directory or one of its parents; the directory above the
    installed ``depthlib`` package (an editable install or a source checkout).
    """
    env = os.environ.get("DEPTHLIB_ROOT")
    if env:
        root = pathlib.Path(env).expanduser().resolve()
        if not _is_root(root):
            raise FileNotFoundError(
                f"DEPTHLIB_ROOT={env!r} has no profiles/ and _toc.yml: point it at the project root"
            )
        return root
    cwd = pathlib.Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _is_root(candidate):
            return candidate
    package_parent = pathlib.Path(__file__).resolve().parents[2]
    if _is_root(package_parent):
        return package_parent
    raise FileNotFoundError(
        f"cannot find the project root (a directory with profiles/ and _toc.yml) from {cwd} or "
        f"{package_parent}; set DEPTHLIB_ROOT"
    )


def profiles_dir() -> pathlib.Path:
    return project_root() / "profiles"


def results_dir() -> pathlib.Path:
    """``$DEPTHLIB_RESULTS`` or ``<root>/results``: reproduced numbers, one CSV per profile and notebook."""
    env = os.environ.get("DEPTHLIB_RESULTS")
    return pathlib.Path(env).expanduser() if env else project_root() / "results"


def cache_dir() -> pathlib.Path:
    """``$DEPTHLIB_CACHE`` or ``<root>/.cache/depthlib``: the results cache of :func:`depthlib.book.cached`."""
    env = os.environ.get("DEPTHLIB_CACHE")
    return pathlib.Path(env).expanduser() if env else project_root() / ".cache" / "depthlib"


def find_shared(name: str, marker: str = "") -> pathlib.Path | None:
    """A directory of real samples, ``name`` (e.g. ``"nyu_data"``), or None when absent.

    Searched in ``$DEPTHLIB_SHARED/data/<name>``, ``<root>/../shared/data/<name>`` (beside a developer's
    checkout) and ``<root>/data/<name>`` (where a reader unpacks a dataset); ``marker`` is a file that must
    exist inside it.
    """
    root = project_root()
    candidates = []
    if os.environ.get("DEPTHLIB_SHARED"):
        candidates.append(pathlib.Path(os.environ["DEPTHLIB_SHARED"]).expanduser() / "data" / name)
    candidates += [root.parent / "shared" / "data" / name, root / "data" / name]
    for path in candidates:
        if (path / marker).exists() if marker else path.is_dir():
            return path.resolve()
    return None


def find_weights(filename: str) -> pathlib.Path | None:
    """A weights file, ``filename``, or None when absent: :func:`depthlib.models.weights.find_weights_file`
    (``$DEPTHLIB_WEIGHTS``, ``$DEPTHLIB_SHARED/weights``, ``data/weights`` and ``shared/weights`` from the
    working directory up, and beside the source tree)."""
    from depthlib.models.weights import find_weights_file

    return find_weights_file(filename)


def find_nyu_data() -> pathlib.Path | None:
    """The DenseDepth-layout NYU samples (``nyu_data/`` with ``data/nyu2_test.csv``), or None when absent.

    See :func:`find_shared` for where it is searched.
    """
    return find_shared("nyu_data", "data/nyu2_test.csv")


def package_dir() -> pathlib.Path:
    """The directory of the depthlib package in use."""
    return pathlib.Path(__file__).resolve().parents[1]


def code_files() -> list[pathlib.Path]:
    """The source files whose content defines depthlib's code version (sorted, stable across machines)."""
    package = package_dir()
    files = [
        p for p in package.rglob("*")
        if p.is_file() and p.suffix in {".py", ".yaml", ".yml", ".json"} and "__pycache__" not in p.parts
    ]
    return sorted(files, key=lambda p: p.relative_to(package).as_posix())
