"""Profiles and the parameters a chapter runs with.

A profile is ``profiles/<name>.yaml`` with a ``defaults`` mapping shared by every notebook and a
``notebooks`` mapping with one section per notebook::

    defaults:
      seeds: [0, 1]
      data: auto
    notebooks:
      02_data:
        n_scenes: 8
        size: [240, 320]

A notebook's value is its section's, else the default. The value's type in the profile is the parameter's
type: an override of another type is an error naming the parameter (a YAML ``null`` accepts any value).
Numbers are also checked by what the parameter's name says it counts (:data:`POSITIVE_PARAMETERS`,
:data:`NON_NEGATIVE_PARAMETERS`): ``-p epochs -1`` fails in the setup cell, naming ``epochs``, before any work.
"""

from __future__ import annotations

import html
import json
import pathlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from . import _paths


class ParameterError(ValueError):
    """A profile, parameter name or parameter value a notebook cannot run with."""


#: Names of parameters whose numbers (or every number of whose list) must be > 0: epochs, batch sizes,
#: learning rates, step counts, thread counts, repeats, sizes, depth caps.
POSITIVE_PARAMETERS = re.compile(
    r"^((?!train_epochs$).*epochs|batch_sizes?|.*lr|lr_.*|.*_lr_.*|.*_repeats|.*threads|.*_iters|.*max_depth|(.*_)?size)$")
#: Names of parameters whose numbers must be >= 0: counts of samples or items (``n_train: 0`` = the whole
#: split), random seeds, loss weights, ``train_epochs`` (0: the initialised model, untrained).
NON_NEGATIVE_PARAMETERS = re.compile(r"^(n_.*|seeds?|lambdas?|.*_weights?|train_epochs)$")
# A profile is a file name in profiles/, never a path.
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_range(name: str, value: Any, where: str) -> None:
    """Raise when a number of parameter ``name`` is outside what its name says it counts."""
    if POSITIVE_PARAMETERS.match(name):
        bound, ok = "> 0", lambda v: v > 0
    elif NON_NEGATIVE_PARAMETERS.match(name):
        bound, ok = ">= 0", lambda v: v >= 0
    else:
        return
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not (v == v and ok(v)):
            shown = f"{value!r}" if v is value else f"{value!r} (element {v!r})"
            raise ParameterError(f"parameter {name!r} {where} must be {bound}, got {shown}")


def list_profiles() -> list[str]:
    """Names of the profiles in ``profiles/`` (``smoke``, ``quick``, ``paper``)."""
    return sorted(p.stem for p in _paths.profiles_dir().glob("*.yaml"))


def load_profile(profile: str) -> dict[str, Any]:
    """The parsed ``profiles/<profile>.yaml``: ``{"defaults": {...}, "notebooks": {name: {...}}}``."""
    if not isinstance(profile, str) or not profile:
        raise ParameterError(f"parameter 'profile' must be a profile name (str), got {profile!r}")
    if not _PROFILE_NAME.match(profile) or ".." in profile:
        raise ParameterError(
            f"parameter 'profile' must be the name of a profile in profiles/, not a path, got {profile!r}; "
            f"profiles: {', '.join(list_profiles())}")
    path = _paths.profiles_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ParameterError(
            f"unknown profile {profile!r} (parameter 'profile'): no {path}; profiles: {', '.join(list_profiles())}"
        )
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict) or not set(content) <= {"defaults", "notebooks", "description", "cache"}:
        raise ParameterError(
            f"{path}: expected top-level keys 'description', 'cache', 'defaults' and 'notebooks', got "
            f"{sorted(content)}"
        )
    if not isinstance(content.get("cache", ""), str):
        raise ParameterError(f"{path}: 'cache' must be a directory relative to the project root")
    for section in ("defaults", "notebooks"):
        content.setdefault(section, {})
        if content[section] is None:
            content[section] = {}
        if not isinstance(content[section], dict):
            raise ParameterError(f"{path}: {section!r} must be a mapping, got {type(content[section]).__name__}")
    return content


def profile_values(notebook: str, profile: str) -> dict[str, Any]:
    """The profile's defaults merged with its section for ``notebook`` (section wins)."""
    content = load_profile(profile)
    if notebook not in content["notebooks"]:
        raise ParameterError(
            f"notebook {notebook!r} has no section in profiles/{profile}.yaml; sections: "
            f"{', '.join(sorted(content['notebooks']))}"
        )
    return {**content["defaults"], **(content["notebooks"][notebook] or {})}


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        inner = {_type_name(v) for v in value}
        return f"list[{inner.pop()}]" if len(inner) == 1 else "list"
    return type(value).__name__


def _check_value(name: str, value: Any, reference: Any, notebook: str, profile: str) -> Any:
    """``value`` converted to the type of the profile's ``reference`` value, or a ParameterError."""
    if reference is None or value is None:
        return value

    def fail() -> ParameterError:
        hint = ""
        if isinstance(value, str) and isinstance(reference, (list, tuple, dict)):
            hint = f" (with papermill, pass lists and mappings as YAML: -y '{name}: {json.dumps(reference)}')"
        elif isinstance(value, str):
            hint = " (with papermill, pass numbers and booleans with -p, which parses them, not with -r)"
        return ParameterError(
            f"parameter {name!r} of notebook {notebook!r} must be {_type_name(reference)} like the profile "
            f"{profile!r} value {reference!r}, got {type(value).__name__} {value!r}{hint}"
        )

    if isinstance(reference, bool):
        if not isinstance(value, bool):
            raise fail()
        return value
    if isinstance(reference, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if isinstance(reference, float):
        # An int where a float is expected is exact (papermill parses "-p lr 1" as int).
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        return float(value)
    if isinstance(reference, str):
        if not isinstance(value, str):
            raise fail()
        return value
    if isinstance(reference, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if reference:
            # Elements must match the profile list's element type (all profile elements share one type).
            try:
                return [_check_value(name, v, reference[0], notebook, profile) for v in value]
            except ParameterError:
                raise fail() from None
        return list(value)
    if isinstance(reference, dict):
        if not isinstance(value, dict):
            raise fail()
        return dict(value)
    raise ParameterError(
        f"profiles/{profile}.yaml: parameter {name!r} has a value of unsupported type {type(reference).__name__}"
    )


class Params(Mapping[str, Any]):
    """The parameters a notebook runs with: a read-only mapping that also allows ``P.name``.

    ``P.notebook`` and ``P.profile`` name the run; ``P.data`` and ``P.seeds`` (when the profile has them)
    are what :func:`depthlib.book.record_results` writes beside every number. ``P.overridden`` is the set of
    names given explicitly (by papermill ``-p`` or a call), the rest come from the profile. ``P.data_root``
    is the directory of the real samples ``data: auto`` resolved to; ``P.cache_dir`` the profile's own
    results cache (its top-level ``cache:``; the ``paper`` profile keeps it in ``results/paper/cache`` to
    be committed), used by :func:`depthlib.book.cached`.
    """

    def __init__(self, notebook: str, profile: str, values: Mapping[str, Any], overridden: set[str] | None = None,
                 data_root: pathlib.Path | None = None, cache_dir: pathlib.Path | None = None) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "notebook", notebook)
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "overridden", frozenset(overridden or ()))
        object.__setattr__(self, "data_root", data_root)
        object.__setattr__(self, "cache_dir", cache_dir)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"notebook {self.notebook!r} has no parameter {name!r}; parameters: {', '.join(self._values)}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params are read-only: change a value in the parameters cell or with papermill -p")

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Params(notebook={self.notebook!r}, profile={self.profile!r}, {items})"

    def to_dict(self) -> dict[str, Any]:
        """All values plus ``notebook`` and ``profile``: what a cache key or a results row should name."""
        return {"notebook": self.notebook, "profile": self.profile, **self._values}

    def seeds_text(self) -> str:
        seeds = self._values.get("seeds")
        if seeds is None:
            return ""
        return ",".join(str(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds]))

    def _rows(self) -> list[tuple[str, str, str]]:
        return [(k, repr(v), "override" if k in self.overridden else f"profile {self.profile}")
                for k, v in self._values.items()]

    def _repr_markdown_(self) -> str:
        from .cache import code_version

        lines = [
            f"**Parameters of this run.** Notebook `{self.notebook}`, profile `{self.profile}` "
            f"(`profiles/{self.profile}.yaml`), depthlib code version `{code_version()[:12]}`.",
            "",
        ]
        if "data" in self._values:
            where = f" from `{_display_path(self.data_root)}`" if self.data_root is not None else ""
            lines[0] += f" Data: `{self._values['data']}`{where}."
        if "seeds" in self._values:
            lines[0] += f" Seeds: `{self.seeds_text()}`."
        lines[0] += (f" Re-run: `papermill notebooks/{self.notebook}.ipynb out.ipynb -p profile {self.profile}` "
                     "with `-p name value` for any parameter below.")
        # The table in a <details> drop-down: collapsed on the page (and in JupyterLab), still searchable.
        lines += [f"<details><summary>All {len(self._values)} parameters of this run</summary>", "",
                  "| parameter | value | from |", "|---|---|---|"]
        for name, value, source in self._rows():
            lines.append(f"| `{name}` | `{value.replace('|', '/')}` | {source} |")
        lines += ["", "</details>"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td><code>{html.escape(v)}</code></td><td>{s}</td></tr>"
            for n, v, s in self._rows()
        )
        return (f"<p>Parameters of notebook <code>{self.notebook}</code>, profile <code>{self.profile}</code></p>"
                f"<table><tr><th>parameter</th><th>value</th><th>from</th></tr>{rows}</table>")


def _display_path(path: pathlib.Path | None) -> str:
    """A path relative to the project root when possible: pages should not name a reader's home directory."""
    if path is None:
        return ""
    resolved = pathlib.Path(path).resolve()
    root = _paths.project_root()
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return resolved.name


def _resolve_data(value: Any) -> tuple[Any, pathlib.Path | None]:
    """``data: auto`` means the real NYU pairs when present, else procedural scenes."""
    from depthlib.data import list_datasets

    allowed = ["auto", "nyu_data", *list_datasets()]
    if value not in allowed:
        raise ParameterError(f"parameter 'data' must be one of {allowed}, got {value!r}")
    if value == "auto":
        root = _paths.find_nyu_data()
        return ("nyu_data", root) if root is not None else ("synth", None)
    if value == "nyu_data":
        root = _paths.find_nyu_data()
        if root is None:
            raise ParameterError(
                "parameter 'data' is 'nyu_data' but no NYU samples were found in ../shared/data/nyu_data or "
                "data/nyu_data (unpack DenseDepth's nyu_data.zip into data/); use data='auto' or 'synth'"
            )
        return value, root
    return value, None


def setup(notebook: str, profile: str = "quick", namespace: Mapping[str, Any] | None = None, *, show: bool = True,
          **overrides: Any) -> Params:
    """The parameters of ``notebook`` under ``profile``, checked, with ``None`` overrides filled.

    Called in the cell after a notebook's ``parameters`` cell, which is the one place a chapter writes its
    parameters::

        P = depthlib.book.setup("02_data", profile, globals())

    ``namespace`` (the notebook's globals, where papermill injects a reader's values) supplies every
    parameter of the profile's section it defines; keyword ``overrides`` win over it.

    Args:
        notebook: the notebook's name, its file name without ``.ipynb`` (``"02_data"``).
        profile: ``"smoke"``, ``"quick"`` or ``"paper"`` (a file in ``profiles/``).
        show: display the parameter table (profile, data, seeds, every value) in the notebook's output,
            so the rendered page states what it ran with while papermill's injected cell stays hidden.
        **overrides: ``name=value``; ``None`` takes the profile's value. Every name must exist in the
            profile (its section for ``notebook`` or its defaults).

    Returns:
        :class:`Params`. Matplotlib, seaborn and pandas draw and print in the book's style from here on
        (:func:`depthlib.plotting.book_style`, :func:`depthlib.book.style.table_style`). ``data: auto`` is resolved to ``"nyu_data"`` (``P.data_root`` is its directory)
        when the real NYU pairs are present, else ``"synth"``. Random generators (python, numpy, torch)
        are seeded with the first seed, and torch uses ``num_threads`` threads when the profile sets it.

    Raises:
        ParameterError (a ValueError): an unknown profile, a notebook without a section in the profile,
            an unknown parameter, or a value of the wrong type, each naming it.
    """
    values = profile_values(notebook, profile)
    if namespace is not None:
        overrides = {**{k: namespace[k] for k in values if k in namespace and k != "profile"}, **overrides}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for notebook {notebook!r} in profile "
            f"{profile!r}; known: {', '.join(sorted(values))}"
        )
    overridden = set()
    for name, value in overrides.items():
        if value is not None:
            values[name] = _check_value(name, value, values[name], notebook, profile)
            overridden.add(name)
    for name, value in values.items():
        source = "(override)" if name in overridden else f"(profiles/{profile}.yaml)"
        _check_range(name, value, f"of notebook {notebook!r} {source}")
    data_root = None
    if "data" in values:
        values["data"], data_root = _resolve_data(values["data"])
    if "seeds" in values:
        seeds = values["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                for s in seeds):
            raise ParameterError(f"parameter 'seeds' must be a non-empty list of int, got {seeds!r}")
        from depthlib.train import seed_everything  # the library's one seeding function

        seed_everything(seeds[0])
    if values.get("num_threads") is not None:
        import torch

        torch.set_num_threads(int(values["num_threads"]))
    from depthlib.plotting import book_style  # one figure style for every chapter

    from .style import table_style  # and one table style

    book_style()
    table_style()
    cache = load_profile(profile).get("cache")
    params = Params(notebook, profile, values, overridden, data_root,
                    _paths.project_root() / cache if cache else None)
    if show:
        _display(params)
    return params


def _display(params: Params) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # plain python: nothing to render into
        return
    if get_ipython() is not None:
        display(Markdown(params._repr_markdown_()))
