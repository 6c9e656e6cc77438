"""The book in the classroom: JupyterLab on the project's own kernel, and student handouts without solutions.

Two commands (``depthlib lab`` and ``depthlib handout``, also ``make lab``):

- :func:`install_kernel_spec` installs a Jupyter kernel spec named :data:`KERNEL_NAME` into a prefix (by
  default the running virtual environment, ``sys.prefix``) whose ``argv`` is this interpreter, so every
  notebook opened on it imports the ``depthlib`` of this environment; :func:`lab_command` is the JupyterLab
  command line that opens the project's ``notebooks/`` with that kernel as the default.
- :func:`strip_solutions` removes what lies between a ``{solution-start}`` and its ``{solution-end}`` (the
  sphinx-exercise directives every chapter's exercises use), and :func:`write_handout` writes the stripped
  chapters for students, never over an existing file unless asked.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
from collections.abc import Iterable, Sequence

from . import _paths

__all__ = ["KERNEL_NAME", "install_kernel_spec", "lab_command", "strip_solutions", "write_handout"]

#: The name of the project's kernel spec (what a notebook's ``kernelspec.name`` and ``make lab`` use).
KERNEL_NAME = "depthlib"
DISPLAY_NAME = "Python (depthlib)"

_START = re.compile(r"^\s*```\{solution-start\}", re.MULTILINE)
_END = re.compile(r"```\{solution-end\}\s*```", re.MULTILINE)


def install_kernel_spec(prefix: str | pathlib.Path | None = None) -> pathlib.Path:
    """Install (or refresh) the kernel spec :data:`KERNEL_NAME` that runs this Python interpreter.

    Args:
        prefix: where to install it (``<prefix>/share/jupyter/kernels/depthlib``); default ``sys.prefix``, the
            virtual environment ``make install`` created, which its own ``jupyter`` searches first.

    Returns:
        The directory of the installed kernel spec (holding ``kernel.json``).
    """
    from ipykernel.kernelspec import install

    where = install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME,
                    prefix=str(prefix if prefix is not None else sys.prefix))
    return pathlib.Path(where)


def lab_command(root: str | pathlib.Path | None = None, *, port: int | None = None,
                open_browser: bool = True, token: str | None = None) -> list[str]:
    """The command line that starts JupyterLab on the project's chapters.

    Args:
        root: the project root (default :func:`depthlib.book.project_root`); JupyterLab serves it and opens
            ``notebooks/``.
        port: the port (default: JupyterLab's, 8888 or the next free one).
        open_browser: open a browser tab (off for servers and tests).
        token: the access token (default: JupyterLab generates one and prints the URL).

    Returns:
        ``[python, "-m", "jupyterlab", ...]`` for :func:`subprocess.run`.
    """
    root = pathlib.Path(root) if root is not None else _paths.project_root()
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root.resolve()}",
            f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
            "--LabApp.default_url=/lab/tree/notebooks", f"--ServerApp.open_browser={open_browser}"]
    if os.name == "posix" and os.geteuid() == 0:
        # containers and CI run as root, which JupyterLab refuses without being told
        argv.append("--ServerApp.allow_root=True")
    if port is not None:
        argv.append(f"--ServerApp.port={int(port)}")
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    return argv


def strip_solutions(nb):
    """A copy of a notebook without its exercise solutions.

    Every cell from the one holding a ``{solution-start}`` directive up to the one holding its
    ``{solution-end}`` goes (the prose and the code of the solution); the ``{exercise}`` cells stay. Outputs
    are cleared, so an executed chapter becomes a clean handout too.

    Args:
        nb: an ``nbformat`` notebook.

    Returns:
        The stripped copy (``nb`` is not changed).

    Raises:
        ValueError: a ``{solution-start}`` without its ``{solution-end}`` (naming the cell index).
    """
    import copy

    out = copy.deepcopy(nb)
    cells, inside, opened_at = [], False, None
    for index, cell in enumerate(out.cells):
        source = cell.get("source", "")
        starts = cell.cell_type == "markdown" and _START.search(source)
        ends = cell.cell_type == "markdown" and _END.search(source)
        if starts and not inside:
            inside, opened_at = True, index
        if not inside:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            cells.append(cell)
        if inside and ends:
            inside = False
    if inside:
        raise ValueError(f"strip_solutions: the solution opened in cell {opened_at} has no {{solution-end}}")
    out.cells = cells
    return out


def write_handout(notebooks: Iterable[str | pathlib.Path], out_dir: str | pathlib.Path, *,
                  overwrite: bool = False) -> list[pathlib.Path]:
    """Write each notebook without its solutions into ``out_dir`` (same file names).

    Args:
        notebooks: chapter notebooks (``notebooks/03_fastdepth.ipynb``, ...).
        out_dir: the handout folder (created when missing).
        overwrite: replace handouts that exist already (default: refuse, naming the file).

    Returns:
        The paths written.

    Raises:
        FileNotFoundError: a notebook that does not exist. FileExistsError: a handout that exists and
        ``overwrite`` is off. ValueError: ``out_dir`` is a file, or a notebook's solutions are unbalanced.
    """
    import nbformat

    sources = [pathlib.Path(p) for p in notebooks]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"handout: no notebook {missing[0]}")
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"handout: --out {out_dir} is a file, not a folder")
    targets = [out_dir / p.name for p in sources]
    if not overwrite:
        taken = [str(t) for t in targets if t.exists()]
        if taken:
            raise FileExistsError(f"handout: {taken[0]} exists; pass --overwrite to replace it")
    # strip everything before writing anything: one unbalanced notebook writes no partial handout
    stripped = [strip_solutions(nbformat.read(p, as_version=4)) for p in sources]
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb, target in zip(stripped, targets):
        nbformat.write(nb, target)
    return targets


def _lab_main(args: argparse.Namespace) -> int:
    import subprocess

    spec = install_kernel_spec()
    print(f"[depthlib lab] kernel '{KERNEL_NAME}' -> {spec}", flush=True)
    if args.install_only:
        return 0
    return subprocess.call(lab_command(args.root, port=args.port, open_browser=not args.no_browser))


def _handout_main(args: argparse.Namespace) -> int:
    root = pathlib.Path(args.root) if args.root else _paths.project_root()
    names: Sequence[str] = args.chapters or sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))
    paths = [root / "notebooks" / (n if n.endswith(".ipynb") else f"{n}.ipynb") for n in names]
    for path in write_handout(paths, args.out, overwrite=args.overwrite):
        print(f"[depthlib handout] {path}")
    return 0


def add_subcommands(subparsers) -> None:
    """``depthlib lab`` and ``depthlib handout`` (collected by :mod:`depthlib.cli`)."""
    lab = subparsers.add_parser("lab", help="JupyterLab on the chapters, with the project's kernel")
    lab.add_argument("--port", type=int, default=None, help="port (default: JupyterLab's)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    lab.add_argument("--install-only", action="store_true", help="only install the kernel spec")
    lab.add_argument("--root", default=None, help="project root (default: found from the working directory)")
    lab.set_defaults(func=_lab_main)

    handout = subparsers.add_parser("handout", help="chapter notebooks without their exercise solutions")
    handout.add_argument("chapters", nargs="*", help="chapter names (default: every notebook in notebooks/)")
    handout.add_argument("--out", required=True, help="folder for the handouts")
    handout.add_argument("--overwrite", action="store_true", help="replace handouts that exist")
    handout.add_argument("--root", default=None, help="project root (default: found from the working directory)")
    handout.set_defaults(func=_handout_main)
