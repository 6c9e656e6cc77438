"""The results cache is keyed by the code a result depends on, and survives a broken cache directory."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import depthlib
from depthlib.book import _paths
from depthlib.book import cache as cache_module
from depthlib.book import cached


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of depthlib's sources that the cache hashes instead of the checkout's."""
    copy = tmp_path / "depthlib"
    shutil.copytree(os.path.dirname(depthlib.__file__), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(_paths, "package_dir", lambda: copy)
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    return copy


def _edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_docstring_in_plotting_keeps_the_run_and_a_loss_constant_recomputes_it(package_copy):
    from depthlib.train import train_eval

    calls = []

    def run(seed):
        calls.append(seed)
        return {"loss": 0.5 if train_eval else 0.0}  # refers to train_eval: depends on training and the losses

    def compute():
        return cached("test/run", {"seed": 0}, lambda: run(0))

    assert cache_module.roots_of(lambda: run(0)) == {"depthlib.train.runs"}
    deps = cache_module.dependencies({"depthlib.train.runs"})
    assert "depthlib.losses" in deps and "depthlib.plotting" not in deps and "depthlib.book.cache" not in deps
    compute()
    assert calls == [0]

    # documentation and comments, even in a module the run depends on, change nothing
    _edit(package_copy / "plotting.py", '"""', '"""Edited docstring. ')
    _edit(package_copy / "losses.py", "    lambd: float = 12.0,", "    lambd: float = 12.0,  # a new comment")
    _edit(package_copy / "losses.py", '"""SmoothL1 + lambda', '"""(edited) SmoothL1 + lambda')
    # a module the run does not depend on may change in any way
    _edit(package_copy / "plotting.py", "from __future__ import annotations", "from __future__ import annotations\nX = 1")
    compute()
    assert calls == [0]

    # a constant of a loss is code the run depends on: recomputed
    _edit(package_copy / "losses.py", "    lambd: float = 12.0,", "    lambd: float = 12.5,")
    compute()
    assert calls == [0, 0]


def test_references_to_the_whole_package_count_every_module(package_copy):
    import depthlib.losses  # noqa: F401

    assert cache_module.roots_of(lambda: depthlib.losses.l1) is None
    assert cache_module.roots_of(lambda: 3) is None  # nothing of depthlib: every module counts
    assert len(cache_module.dependencies(None)) > len(cache_module.dependencies({"depthlib.metrics"}))


def test_a_corrupt_entry_is_recomputed_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    values = iter([1.0, 2.0])
    assert cached("k/corrupt", {}, lambda: {"v": next(values)}) == {"v": 1.0}
    manifest = next((tmp_path / "cache" / "k" / "corrupt").glob("*/manifest.json"))
    manifest.write_text("{ not json")
    with pytest.warns(UserWarning, match="cannot be read.*recomputing"):
        assert cached("k/corrupt", {}, lambda: {"v": next(values)}) == {"v": 2.0}
    assert json.loads(manifest.read_text())["value"]["items"]["v"]["value"] == 2.0  # the entry is repaired


def test_an_unwritable_cache_keeps_the_result_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DEPTHLIB_CACHE", str(blocker / "cache"))  # cannot be created, even by root
    with pytest.warns(UserWarning, match="not writable.*kept in memory"):
        assert cached("k/x", {}, lambda: {"rmse": 0.5}) == {"rmse": 0.5}


def test_a_grid_of_a_partial_recomputes_when_the_function_it_wraps_changes(package_copy):
    """Chapters 10 and 11 pass ``run_grid`` a ``functools.partial`` of a depthlib run function. The lambda
    that ``run_grid`` hands to the cache lives in ``depthlib.book.grids``: its references (the partial, and
    through it the run function's module) must be followed, not taken for book machinery that computes
    nothing, or an edited training module would keep returning the old numbers."""
    import functools

    from depthlib.book import run_grid
    from depthlib.train import ordinal

    calls = []

    def wrapped(seed, scale):
        calls.append(seed)
        return {"v": scale * seed, "uses": bool(ordinal.ordinal_run)}

    fn = functools.partial(wrapped, scale=2.0)
    grid_lambda = lambda: fn(seed=1)  # noqa: E731 - what run_grid builds
    roots = cache_module.roots_of(grid_lambda)
    assert "depthlib.train.ordinal" in roots and not roots & set(cache_module.NOT_DEPENDENCIES)

    def compute():
        return run_grid([{"seed": 1}], fn, cache_key="test/grid", cache_params={"n": 1}).table

    compute()
    compute()
    assert calls == [1]
    _edit(package_copy / "train" / "ordinal.py", "@torch.no_grad()\ndef relative_metrics(",
          "X_EDITED = 1\n\n\n@torch.no_grad()\ndef relative_metrics(")
    compute()
    assert calls == [1, 1]
