"""depthlib book --check: what each chapter of a profile needs, and a stop before the first chapter."""

from __future__ import annotations

import pytest
import yaml

from depthlib.book import ParameterError, runner
from depthlib.book.preflight import blocked_chapters, format_preflight, preflight

PROFILE = {
    "description": "a GPU profile",
    "defaults": {"seeds": [0], "data": "synth", "device": "cpu"},
    "notebooks": {
        "ok": {"n_real": 1},
        "bad": {"train_data": "nyu_h5", "train_root": "data/nyudepthv2", "epochs": 1, "pretrained": "imagenet",
                "models": ["fastdepth"]},
    },
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "g.yaml").write_text(yaml.safe_dump(PROFILE))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n- file: book/ok\n- file: book/bad\n")
    (tmp_path / "notebooks").mkdir()
    for name in ("ok", "bad"):
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text("{}")
    monkeypatch.setenv("DEPTHLIB_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPTHLIB_WEIGHTS", str(tmp_path / "no-weights"))
    from depthlib.models import weights as weights_mod

    monkeypatch.setattr(weights_mod, "weights_dirs", lambda: [tmp_path / "no-weights"])
    return tmp_path


def test_check_lists_each_need_with_how_to_get_it(project):
    table = preflight("g", project)
    bad = table[table["chapter"] == "bad"].set_index("kind")
    assert not bad.loc["dataset", "present"] and bad.loc["dataset", "required"]
    assert "depthlib download nyudepthv2" in bad.loc["dataset", "get"]
    assert bad.loc["weights", "need"].startswith("mobilenet_v1: mobilenet_v1.tflite_imagenet")
    assert not bad.loc["weights", "present"] and "put mobilenet_v1_imagenet_from_tflite.pth" in bad.loc["weights", "get"]
    assert blocked_chapters(table) == ["bad"]
    text = format_preflight(table, "g")
    assert "MISSING" in text and "cannot run: bad" in text
    (project / "data" / "nyudepthv2").mkdir(parents=True)
    assert preflight("g", project).set_index(["chapter", "kind"]).loc[("bad", "dataset"), "present"]


def test_the_book_stops_before_the_first_chapter(project, monkeypatch):
    ran = []
    monkeypatch.setattr(runner, "execute_chapter", lambda root, name, profile, **kw: ran.append(name) or
                        runner.ChapterRun(name, "executed"))
    with pytest.raises(ParameterError, match=r"chapter\(s\) bad cannot run.*--skip-unavailable"):
        runner.run_book("g", root=project, build=False)
    assert ran == []  # nothing ran, not even the chapter that could
    runner.run_book("g", root=project, build=False, skip_unavailable=True)
    assert ran == ["ok"]


def test_check_command_exit_status(project, capsys):
    from depthlib.cli import main

    assert main(["book", "--profile", "g", "--check", "--root", str(project)]) == 1
    assert "cannot run: bad" in capsys.readouterr().out
