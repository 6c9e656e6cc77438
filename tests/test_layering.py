"""Layers point one way: nothing below the book imports depthlib.book, and the library works from an installed
wheel in a directory that is no project checkout (no profiles/, no _toc.yml, no ../shared)."""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "depthlib"


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        package = module.rsplit(".", 1)[0] if module.endswith(".__init__") else module
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


def test_nothing_below_the_book_imports_it():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "book" or rel.name == "cli.py":  # the book itself; the command collects subcommands
            continue
        bad = sorted(m for m in _imports(path) if m == "depthlib.book" or m.startswith("depthlib.book."))
        if bad:
            offenders[str(rel)] = bad
    assert not offenders, f"library modules importing the book machinery: {offenders}"


def test_the_scan_sees_lazy_and_relative_imports(tmp_path):
    # the check above must be able to fail: a lazy import inside a function is found
    probe = PACKAGE / "data" / "_probe_layering.py"
    probe.write_text("def f():\n    from depthlib.book import cached\n    from ..book import grids\n")
    try:
        found = _imports(probe)
    finally:
        probe.unlink()
    assert "depthlib.book" in found and "depthlib.book.grids" in found


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> pathlib.Path:
    """depthlib built as a wheel from a copy of the sources and installed into a bare folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(PACKAGE, src / "depthlib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("depthlib-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return site


def test_library_works_from_an_installed_wheel_outside_a_checkout(installed_wheel, tmp_path):
    shared_weights = REPO.parent / "shared" / "weights"
    expected = "mobilenet_v1.tflite_imagenet" if (shared_weights / "mobilenet_v1_imagenet_from_tflite.pth").is_file() \
        else "none"
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    script = textwrap.dedent(f"""
        import sys
        import depthlib
        assert depthlib.__file__.startswith({str(installed_wheel)!r}), depthlib.__file__
        from depthlib.data import chapter_data
        from depthlib.reported import load_reported
        from depthlib.train import TrainConfig, train_eval

        data = chapter_data("synth", size=(32, 32), n_train=2, n_val=2)
        out = train_eval("fastdepth", train=data["train"], evaluations=data["evaluations"], weights="auto",
                         config=TrainConfig(epochs=1, batch_size=2, progress=False))
        assert out["weights"] == {expected!r}, out["weights"]
        assert out["synth_rmse"] > 0
        assert len(load_reported()) > 100  # the YAML files travel in the wheel
        assert not any(m == "depthlib.book" or m.startswith("depthlib.book.") for m in sys.modules), \\
            sorted(m for m in sys.modules if m.startswith("depthlib.book"))
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPTHLIB_")}
    env["DEPTHLIB_WEIGHTS"] = str(shared_weights)  # how a user points an installed library at weights files
    # -S: no site processing, so the checkout's editable install (a .pth hook) cannot shadow the wheel
    env["PYTHONPATH"] = os.pathsep.join([str(installed_wheel), sysconfig.get_paths()["purelib"],
                                         sysconfig.get_paths()["platlib"]])
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=run_dir, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-4000:]
