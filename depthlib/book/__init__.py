"""The book's machinery: profiles and parameter checks, the results cache, recorded results, the runner.

A chapter notebook starts with a cell tagged ``parameters``::

    profile = "quick"
    n_scenes = None   # None: take the profile's value

and continues with::

    import depthlib.book
    P = depthlib.book.setup("02_data", profile, n_scenes=n_scenes)

``setup`` loads ``profiles/<profile>.yaml``, checks every value's type and displays the parameters of the
run. Expensive results go through ``cached(key, P, fn)`` (keyed by the parameters and the library code the
result depends on), grids of runs through ``run_grid`` (:mod:`depthlib.book.grids`); reproduced numbers
through ``record_results(df, "02_data", P)`` (read back, joined with the papers' numbers, by
:func:`depthlib.reported.scorecard`). The book sits on top of the library: nothing in ``depthlib`` outside
``depthlib.book`` imports it. ``depthlib book --profile quick`` runs every notebook of ``_toc.yml``
through papermill and builds the HTML (see :mod:`depthlib.book.runner`).
"""

from __future__ import annotations

from ._paths import cache_dir, find_nyu_data, find_shared, find_weights, project_root, results_dir
from .claims import CLAIM_BOX, claim_box, glue, judged_claims
from .cache import cache_path, cached, code_version, load_cached
from .grids import GridResult, grid, run_grid
from .params import Params, ParameterError, list_profiles, load_profile, profile_values, setup
from .results import RESULT_COLUMNS, record_results, results_path

__all__ = [
    "CLAIM_BOX", "claim_box", "glue", "judged_claims",
    "Params", "ParameterError", "RESULT_COLUMNS", "add_subcommands", "cache_dir", "cache_path", "cached", "code_version",
    "find_nyu_data", "find_shared", "find_weights", "list_profiles", "load_cached", "load_profile", "profile_values",
    "project_root", "record_results", "results_dir", "results_path", "setup", "grid", "run_grid", "GridResult",
]


def add_subcommands(subparsers) -> None:
    """Adds ``depthlib book`` to the ``depthlib`` command (collected by :mod:`depthlib.cli`)."""
    from .runner import add_subcommands as _add

    _add(subparsers)
