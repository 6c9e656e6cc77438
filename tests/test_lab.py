"""The classroom: JupyterLab serving the chapters on the project's kernel, and handouts without solutions."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

from depthlib.book import lab

REPO = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "notebooks").glob("*.ipynb"))


# ------------------------------------------------------------------------------------------- handouts
def _count(nb, needle: str) -> int:
    return sum(needle in cell.source for cell in nb.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_handout_drops_every_solution_and_keeps_every_exercise(path):
    nb = nbformat.read(path, as_version=4)
    stripped = lab.strip_solutions(nb)
    assert _count(stripped, "{solution-start}") == 0 and _count(stripped, "{solution-end}") == 0
    assert _count(stripped, "{exercise}") == _count(nb, "{exercise}")
    # the chapter itself still has its parameters cell, and nothing but solutions went
    assert any("parameters" in c.metadata.get("tags", []) for c in stripped.cells)
    assert len(stripped.cells) < len(nb.cells) or _count(nb, "{solution-start}") == 0
    assert _count(nb, "{solution-start}") > 0, f"{path.name} has no exercise solutions to strip"


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if kind == "md" else nbformat.v4.new_code_cell(s)
                for kind, s in cells]
    return nb


def test_strip_solutions_removes_the_cells_between_start_and_end_only():
    nb = _nb(("md", "```{exercise} Q\n:label: q\nWhy?\n```"),
             ("md", "```{solution-start} q\n:class: dropdown\n```\nBecause."),
             ("code", "answer = 42"),
             ("md", "More.\n\n```{solution-end}\n```"),
             ("code", "kept = 1"))
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    out = lab.strip_solutions(nb)
    assert [c.source for c in out.cells] == [nb.cells[0].source, "kept = 1"]
    assert out.cells[1].outputs == [] and nb.cells[4].outputs          # outputs cleared in the copy only


def test_strip_solutions_names_an_unclosed_solution():
    nb = _nb(("md", "text"), ("md", "```{solution-start} q\n```"), ("code", "x = 1"))
    with pytest.raises(ValueError, match="cell 1 has no"):
        lab.strip_solutions(nb)


def test_write_handout_never_overwrites_unless_asked(tmp_path):
    out = tmp_path / "handout"
    written = lab.write_handout(CHAPTERS[:1], out)
    assert written == [out / CHAPTERS[0].name] and written[0].is_file()
    before = written[0].read_bytes()
    written[0].write_text("a student's answers")
    with pytest.raises(FileExistsError, match="--overwrite"):
        lab.write_handout(CHAPTERS[:1], out)
    assert written[0].read_text() == "a student's answers"
    lab.write_handout(CHAPTERS[:1], out, overwrite=True)
    assert written[0].read_bytes() == before
    with pytest.raises(FileNotFoundError, match="no notebook"):
        lab.write_handout([tmp_path / "nope.ipynb"], out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        lab.write_handout(CHAPTERS[:1], tmp_path / "file")


def test_handout_command_writes_every_chapter(tmp_path):
    from depthlib.cli import main

    assert main(["handout", "--root", str(REPO), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in CHAPTERS]


# ----------------------------------------------------------------------------------------- JupyterLab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


@pytest.mark.book
def test_jupyterlab_serves_a_chapter_and_runs_a_cell_on_the_project_kernel(tmp_path, monkeypatch):
    pytest.importorskip("jupyterlab", reason="jupyterlab is in the book extra: make install")
    from jupyter_client import BlockingKernelClient

    prefix = tmp_path / "prefix"
    spec_dir = lab.install_kernel_spec(prefix)
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec_dir.name == lab.KERNEL_NAME and spec["argv"][0] == sys.executable

    runtime = tmp_path / "runtime"
    env_vars = {"JUPYTER_PATH": str(prefix / "share" / "jupyter"), "JUPYTER_RUNTIME_DIR": str(runtime),
                "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    for key, value in env_vars.items():
        monkeypatch.setenv(key, value)
    port, token = _free_port(), "depthlib-test"
    server = subprocess.Popen(lab.lab_command(REPO, port=port, open_browser=False, token=token),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)

        status, body = _get(f"{base}/api/contents/notebooks/03_fastdepth.ipynb?token={token}")
        model = json.loads(body)
        assert status == 200 and model["type"] == "notebook"
        assert any("parameters" in c["metadata"].get("tags", []) for c in model["content"]["cells"])
        status, page = _get(f"{base}/lab/tree/notebooks/03_fastdepth.ipynb?token={token}")
        assert status == 200 and b"JupyterLab" in page
        specs = json.loads(_get(f"{base}/api/kernelspecs?token={token}")[1])
        assert specs["default"] == lab.KERNEL_NAME and lab.KERNEL_NAME in specs["kernelspecs"]

        # start the kernel through the server, as a student's notebook does, and run a cell on it
        request = urllib.request.Request(f"{base}/api/kernels?token={token}", method="POST",
                                         data=json.dumps({"name": lab.KERNEL_NAME}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            kernel_id = json.loads(response.read())["id"]
        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            outputs = []
            reply = client.execute_interactive(
                "import depthlib, pathlib, sys; print(pathlib.Path(depthlib.__file__).resolve().parent, sys.executable)",
                timeout=60, output_hook=lambda msg: outputs.append(msg["content"].get("text", "")))
        finally:
            client.stop_channels()
        import depthlib

        assert reply["content"]["status"] == "ok"
        printed = "".join(outputs).split()
        assert printed == [str(pathlib.Path(depthlib.__file__).resolve().parent), sys.executable]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
