"""``depthlib book``: execute the chapters through papermill, then build the HTML with Jupyter Book 1.x.

For each chapter ``book/<name>`` of ``_toc.yml`` whose source ``notebooks/<name>.ipynb`` exists:

1. skip it when ``book/<name>.ipynb`` was produced by a successful run with the same notebook source,
   profile, parameters, data and depthlib code version (its ``metadata.depthlib.stamp``);
2. otherwise execute it with papermill (``-p profile <profile>``) and tag the injected parameters cell
   ``remove-cell``, so the page hides it (``setup()`` displays the parameters instead);
3. when it fails, report the notebook and the cell, keep going, and put a "not rebuilt" admonition at the
   top of its executed copy (the previous successful copy if any, else the partial run), so a page never
   shows old results silently.

Then ``jupyter-book build <root> -W -n --keep-going`` renders the stored outputs (``execute_notebooks:
off``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import yaml

from . import _paths
from .cache import code_version
from .params import ParameterError, load_profile

NOT_REBUILT_TAG = "depthlib-not-rebuilt"
_PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"


@dataclasses.dataclass
class ChapterRun:
    """What happened to one chapter: ``status`` is ``"executed"``, ``"skipped"`` or ``"failed"``."""

    name: str
    status: str
    seconds: float = 0.0
    cell: int | None = None          # 1-based index of the failing cell in the source notebook
    cell_source: str = ""            # its first line
    error: str = ""                  # "ValueError: ..."

    def where(self) -> str:
        """``"cell 4 ('1 / 0'): ZeroDivisionError: division by zero"`` for a failed run."""
        cell = f"cell {self.cell} ({self.cell_source!r})" if self.cell is not None else "before any cell ran"
        return f"{cell}: {self.error}"

    def describe(self) -> str:
        if self.status != "failed":
            return f"{self.name}: {self.status} ({self.seconds:.1f} s)"
        return f"{self.name}: FAILED at {self.where()}"


def toc_chapters(root: pathlib.Path) -> list[str]:
    """The names ``X`` of the toc entries ``book/X`` that have a source ``notebooks/X.ipynb``, in toc order."""
    toc_path = root / "_toc.yml"
    with open(toc_path, encoding="utf-8") as f:
        toc = yaml.safe_load(f)
    files: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    names = []
    for entry in files:
        path = pathlib.PurePosixPath(entry)
        name = path.stem if path.suffix == ".ipynb" else path.name
        if path.parent.as_posix() == "book" and (root / "notebooks" / f"{name}.ipynb").is_file():
            names.append(name)
    return names


def chapter_stamp(root: pathlib.Path, name: str, profile: str) -> str:
    """Hash of what a chapter's outputs depend on: source, profile values, data present, code version."""
    content = load_profile(profile)
    if name not in content["notebooks"]:
        raise ParameterError(f"notebook {name!r} has no section in profiles/{profile}.yaml")
    parts = {
        "source": hashlib.sha256((root / "notebooks" / f"{name}.ipynb").read_bytes()).hexdigest(),
        "profile": profile,
        "values": {**content["defaults"], **(content["notebooks"][name] or {})},
        # Whether the real samples are present changes what `data: auto` runs on.
        "nyu_data": str(_paths.find_nyu_data()),
        "code": code_version(),
    }
    # A chapter that reads other chapters' results (the scorecard) declares it in its notebook metadata,
    # ``{"depthlib": {"reads_results": true}}``; then those results are part of what it depends on.
    source_meta = json.loads((root / "notebooks" / f"{name}.ipynb").read_text()).get("metadata", {})
    if source_meta.get("depthlib", {}).get("reads_results"):
        results = sorted(p for p in (_paths.results_dir() / profile).glob("*.csv") if p.stem != name)
        parts["results"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in results}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _read_nb(path: pathlib.Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _read_nb_or_none(path: pathlib.Path, what: str):
    """The notebook at ``path``, or None (with a message) when it cannot be read: an executed copy in
    ``book/`` is a build output, so a corrupt one is executed again rather than stopping the book."""
    try:
        return _read_nb(path)
    except Exception as err:  # nbformat raises JSON, validation and Unicode errors alike
        print(f"[depthlib book] {path} is not a readable notebook ({type(err).__name__}: {_first_line(err)}); "
              f"{what}", flush=True)
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _write_nb(nb, path: pathlib.Path) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _finish(nb) -> None:
    """Hide papermill's injected cell and drop its error banners (the runner writes its own)."""
    nb.cells = [c for c in nb.cells if _PAPERMILL_ERROR_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        tags = _tags(cell)
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def _failure_location(nb) -> tuple[int | None, str, str]:
    """(1-based source cell index, its first line, "Ename: evalue") of the first cell with an error output."""
    index = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or _PAPERMILL_ERROR_TAG in tags:
            continue
        index += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = next((line for line in cell.source.splitlines() if line.strip()), "")
                return index, first.strip(), f"{output.get('ename')}: {output.get('evalue')}"
    return None, "", ""


def _banner(run: ChapterRun, profile: str, previous: dict | None):
    import nbformat

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "```{admonition} Not rebuilt",
        ":class: danger",
        # One line, no backticks: an error message must not be able to close the admonition's fence.
        f"The run of this chapter with profile `{profile}` on {when} failed at "
        f"{' '.join(run.where().replace('`', chr(39)).split())}",
        "",
    ]
    if previous:
        lines.append(
            f"What follows is the previous successful run (profile `{previous.get('profile')}`, "
            f"{previous.get('finished')}), not the current code and parameters."
        )
    else:
        lines.append("What follows is the failed run, up to the failing cell; later cells did not run.")
    lines.append("```")
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.metadata["tags"] = [NOT_REBUILT_TAG]
    return cell


def execute_chapter(root: pathlib.Path, name: str, profile: str, *, force: bool = False,
                    timeout: int | None = None) -> ChapterRun:
    """Execute ``notebooks/<name>.ipynb`` into ``book/<name>.ipynb`` (see the module docstring).

    A source notebook that cannot be read fails this chapter only (its page gets the "not rebuilt"
    banner); an executed copy that cannot be read is executed again.
    """
    import papermill

    source = root / "notebooks" / f"{name}.ipynb"
    target = root / "book" / f"{name}.ipynb"
    try:
        _read_nb(source)
    except Exception as err:
        run = ChapterRun(name, "failed", error=f"{source} is not a readable notebook "
                                               f"({type(err).__name__}: {_first_line(err)})")
        old = _read_nb_or_none(target, "it is left as it is") if target.is_file() else None
        meta = old.metadata.get("depthlib", {}) if old is not None else {}
        previous = meta if meta.get("status") == "ok" else None
        _write_failed(target, old, run, profile, previous)
        return run
    stamp = chapter_stamp(root, name, profile)
    previous = None
    if target.is_file():
        old = _read_nb_or_none(target, "executing the chapter again")
        meta = old.metadata.get("depthlib", {}) if old is not None else {}
        if meta.get("status") == "ok":
            previous = meta
            if meta.get("stamp") == stamp and not force:
                return ChapterRun(name, "skipped")

    start = time.perf_counter()
    env_before = {k: os.environ.get(k) for k in ("PYTHONPATH", "DEPTHLIB_ROOT", "MPLBACKEND")}
    # The kernel inherits this environment: it must import the depthlib running this (even when it is not
    # installed), find the profiles of `root`, and draw figures inline even under MPLBACKEND=Agg.
    package_parent = str(pathlib.Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env_before["PYTHONPATH"]]))
    os.environ["DEPTHLIB_ROOT"] = str(root)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    with tempfile.TemporaryDirectory(prefix=f"depthlib-{name}-") as tmp:
        out = pathlib.Path(tmp) / f"{name}.ipynb"
        error = None
        try:
            papermill.execute_notebook(
                str(source), str(out), parameters={"profile": profile}, kernel_name="python3",
                cwd=str(root / "notebooks"), progress_bar=False, request_save_on_cell_execute=False,
                execution_timeout=timeout,
            )
        except Exception as err:  # a failing chapter must not stop the others
            error = err
        finally:
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        seconds = time.perf_counter() - start
        nb = _read_nb(out) if out.is_file() else None

    if error is None and nb is not None:
        _finish(nb)
        nb.metadata["depthlib"] = {
            "status": "ok", "stamp": stamp, "profile": profile, "code_version": code_version()[:12],
            "seconds": round(seconds, 1),
            "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        _write_nb(nb, target)
        return ChapterRun(name, "executed", seconds)

    run = ChapterRun(name, "failed", seconds)
    if nb is not None:
        run.cell, run.cell_source, run.error = _failure_location(nb)
    if not run.error:
        run.error = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
    shown = _read_nb(target) if previous is not None else nb
    if shown is None:
        shown = _read_nb(source)
    _write_failed(target, shown, run, profile, previous)
    return run


def _write_failed(target: pathlib.Path, shown, run: ChapterRun, profile: str, previous: dict | None) -> None:
    """Write ``shown`` (or, when None, an empty page) to ``target`` under the "not rebuilt" banner."""
    import nbformat

    shown = copy.deepcopy(shown) if shown is not None else nbformat.v4.new_notebook()
    _finish(shown)
    shown.cells = [c for c in shown.cells if NOT_REBUILT_TAG not in c.get("metadata", {}).get("tags", [])]
    shown.cells.insert(0, _banner(run, profile, previous))
    shown.metadata["depthlib"] = {**(previous or {}), "status": "failed", "failed_profile": profile,
                                  "error": run.describe()}
    _write_nb(shown, target)


def build_html(root: pathlib.Path, *, strict: bool = True) -> int:
    """``jupyter-book build <root> -W -n --keep-going``; returns its exit status."""
    exe = pathlib.Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"), "build", str(root)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=root).returncode


def run_book(profile: str = "quick", *, root: str | os.PathLike | None = None, execute: bool = True,
             build: bool = True, only: Sequence[str] | None = None, force: bool = False,
             timeout: int | None = None, skip_unavailable: bool = False) -> tuple[list[ChapterRun], int | None]:
    """Execute the chapters of ``_toc.yml`` with ``profile`` and build the HTML.

    Args:
        profile: a profile of ``profiles/``.
        root: the project root (default: found from the working directory, see :func:`project_root`).
        execute: False renders the stored outputs only (``--no-execute``).
        build: False skips the HTML build.
        only: chapter names to execute (``["02_data"]``); the others keep their stored outputs.
        force: execute even chapters whose stamp is unchanged.
        timeout: seconds allowed per cell (None: no limit).
        skip_unavailable: run the chapters whose datasets, weights and device are there
            (:mod:`depthlib.book.preflight`) and skip the others, instead of stopping before the first chapter.

    Returns:
        ``(runs, build_status)``: one :class:`ChapterRun` per chapter executed, skipped or failed, and the
        exit status of ``jupyter-book build`` (None when not built).
    """
    root = pathlib.Path(root).resolve() if root is not None else _paths.project_root()
    os.environ.setdefault("DEPTHLIB_ROOT", str(root))
    load_profile(profile)  # an unknown profile fails here, before anything runs
    chapters = toc_chapters(root)
    if only:
        unknown = sorted(set(only) - set(chapters))
        if unknown:
            raise ParameterError(f"--only {', '.join(unknown)}: not a chapter of _toc.yml; chapters: "
                                 f"{', '.join(chapters)}")
        chapters = [c for c in chapters if c in only]
    runs: list[ChapterRun] = []
    if execute:
        from .preflight import blocked_chapters, format_preflight, preflight

        table = preflight(profile, root, chapters)
        print(format_preflight(table, profile), flush=True)
        blocked = blocked_chapters(table)
        if blocked and not skip_unavailable:
            raise ParameterError(
                f"profile {profile!r}: chapter(s) {', '.join(blocked)} cannot run (MISSING above); nothing was run. "
                "Provide what is missing, or pass --skip-unavailable to run the other chapters")
        chapters = [c for c in chapters if c not in blocked]
        for name in chapters:
            print(f"[depthlib book] {name} (profile {profile}) ...", flush=True)
            try:
                run = execute_chapter(root, name, profile, force=force, timeout=timeout)
            except Exception as err:  # one broken chapter must not stop the others
                run = ChapterRun(name, "failed", error=f"{type(err).__name__}: {_first_line(err)}")
            print(f"[depthlib book] {run.describe()}", flush=True)
            runs.append(run)
    if build:
        # A chapter never executed (e.g. with --only or --no-execute on a fresh clone) would only show up as
        # Sphinx's "nonexisting document" warning: say what to run instead.
        missing = [name for name in toc_chapters(root) if not (root / "book" / f"{name}.ipynb").is_file()]
        if missing:
            print(f"[depthlib book] not executed yet: {', '.join(missing)}; run `depthlib book --profile {profile}` "
                  "without --only/--no-execute to execute them", flush=True)
    status = build_html(root) if build else None
    return runs, status


def _main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.check:
        from .preflight import blocked_chapters, format_preflight, preflight

        root = pathlib.Path(args.root).resolve() if args.root else None
        table = preflight(args.profile, root, args.only)
        print(format_preflight(table, args.profile))
        return 1 if blocked_chapters(table) else 0
    try:
        runs, status = run_book(args.profile, root=args.root, execute=not args.no_execute, build=not args.no_build,
                                only=args.only, force=args.force, timeout=args.timeout,
                                skip_unavailable=args.skip_unavailable)
    except ParameterError as err:
        print(f"[depthlib book] {err}")
        return 1
    failed = [r for r in runs if r.status == "failed"]
    print(f"\n[depthlib book] profile {args.profile}: {len(runs)} chapter(s), "
          f"{sum(r.status == 'executed' for r in runs)} executed, {sum(r.status == 'skipped' for r in runs)} "
          f"skipped, {len(failed)} failed; {time.perf_counter() - start:.0f} s in all")
    for run in failed:
        print(f"[depthlib book]   {run.describe()}  (its page says 'Not rebuilt')")
    if status is not None:
        root = pathlib.Path(args.root).resolve() if args.root else _paths.project_root()
        index = root / "_build" / "html" / "index.html"
        if status == 0:
            print(f"[depthlib book] open {index.as_uri()}")
        else:
            print(f"[depthlib book] jupyter-book build failed (exit {status}); see the warnings above")
    return 1 if failed or status not in (0, None) else 0


def add_subcommands(subparsers) -> None:
    """``depthlib book --profile P [--no-execute] [--only NAME ...]``."""
    parser = subparsers.add_parser(
        "book", help="execute the chapters with a profile (papermill, cached) and build the HTML",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help="profile in profiles/ (smoke, quick, paper)")
    parser.add_argument("--no-execute", action="store_true", help="only build the HTML from the stored outputs")
    parser.add_argument("--no-build", action="store_true", help="only execute the notebooks")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="execute only these chapters (e.g. 02_data)")
    parser.add_argument("--force", action="store_true", help="execute even chapters that are up to date")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell")
    parser.add_argument("--root", default=None, help="project root (default: found from the working directory)")
    parser.add_argument("--check", action="store_true",
                        help="only list what each chapter needs (datasets, weights, device) and whether it is there")
    parser.add_argument("--skip-unavailable", action="store_true",
                        help="skip the chapters whose datasets, weights or device are missing instead of stopping")
    parser.set_defaults(func=_main)
