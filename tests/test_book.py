"""The book's machinery: parameter checks, the results cache, recorded results, the runner, the built pages.

Unit tests run on a temporary project (its own profiles/ and _toc.yml, pointed to by DEPTHLIB_ROOT). The
tests marked ``book`` execute notebooks with papermill: every chapter under the smoke profile in a copy of
the project, the HTML build with -W -n, and a headless-Chromium check of every chapter page.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import threading

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import depthlib.book as book
from depthlib.book import cache as cache_module
from depthlib.book import runner
from depthlib.reported import load_results

REPO = pathlib.Path(__file__).resolve().parents[1]

PROFILE = {
    "description": "test profile",
    "defaults": {"seeds": [0, 1], "data": "synth", "num_threads": 1},
    "notebooks": {
        "nb": {"epochs": 3, "lr": 0.01, "size": [8, 12], "name": "a", "flag": False, "anything": None},
        "ok": {},
        "bad": {},
    },
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A minimal project root with profiles/t.yaml, an empty results dir and cache."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "t.yaml").write_text(yaml.safe_dump(PROFILE))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n- file: book/ok\n- file: book/bad\n")
    monkeypatch.setenv("DEPTHLIB_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTHLIB_RESULTS", str(tmp_path / "results"))
    return tmp_path


# ---------------------------------------------------------------- setup()

def test_setup_fills_none_from_profile_and_applies_overrides(project):
    P = book.setup("nb", "t", epochs=None, lr=1, size=[4, 6], show=False)
    assert P.epochs == 3 and P["epochs"] == 3                  # None -> the profile's value
    assert P.lr == 1.0 and isinstance(P.lr, float)              # an int is a valid float
    assert P.size == [4, 6] and P.overridden == {"lr", "size"}
    assert P.seeds == [0, 1] and P.data == "synth" and P.profile == "t" and P.notebook == "nb"
    assert P.to_dict()["profile"] == "t"


@pytest.mark.parametrize("name, value, expected", [
    ("epochs", "3", "must be int"),           # papermill -r passes strings
    ("epochs", 2.5, "must be int"),
    ("epochs", True, "must be int"),          # bool is an int subclass, but not a count
    ("lr", "0.1", "must be float"),
    ("flag", 1, "must be bool"),
    ("size", "8x12", "must be list[int]"),
    ("size", [8, "12"], "must be list[int]"),
    ("name", 3, "must be str"),
])
def test_setup_rejects_wrong_types_naming_the_parameter(project, name, value, expected):
    with pytest.raises(book.ParameterError, match=re.escape(f"parameter '{name}' of notebook 'nb' {expected}")):
        book.setup("nb", "t", show=False, **{name: value})


def test_setup_null_in_profile_accepts_any_type(project):
    assert book.setup("nb", "t", anything={"k": 1}, show=False).anything == {"k": 1}


def test_setup_unknown_parameter_profile_and_notebook(project):
    with pytest.raises(book.ParameterError, match=r"unknown parameter\(s\) 'epoch'.*known: anything, data, epochs"):
        book.setup("nb", "t", epoch=3, show=False)
    with pytest.raises(book.ParameterError, match=r"unknown profile 'quik' \(parameter 'profile'\).*profiles: t"):
        book.setup("nb", "quik", show=False)
    with pytest.raises(book.ParameterError, match=r"notebook 'other' has no section in profiles/t.yaml"):
        book.setup("other", "t", show=False)


def test_setup_seeds_generators_with_first_seed(project):
    book.setup("nb", "t", show=False)
    a = torch.rand(3)
    book.setup("nb", "t", show=False)
    assert torch.equal(a, torch.rand(3))


def test_params_are_read_only_and_render_every_value(project):
    P = book.setup("nb", "t", epochs=5, show=False)
    with pytest.raises(AttributeError, match="read-only"):
        P.epochs = 4
    with pytest.raises(AttributeError, match="no parameter 'epoch'"):
        P.epoch
    text = P._repr_markdown_()
    for expected in ("profile `t`", "Seeds: `0,1`", "Data: `synth`", "| `epochs` | `5` | override |",
                     "| `lr` | `0.01` | profile t |"):
        assert expected in text


def test_data_auto_resolves_to_what_is_present(project, monkeypatch):
    profile = dict(PROFILE, defaults={"seeds": [0], "data": "auto"})
    (project / "profiles" / "t.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("DEPTHLIB_SHARED", str(project / "shared"))
    monkeypatch.setattr(book._paths, "find_nyu_data", lambda: None)
    P = book.setup("ok", "t", show=False)
    assert P.data == "synth" and P.data_root is None
    nyu = project / "data" / "nyu_data"
    (nyu / "data").mkdir(parents=True)
    (nyu / "data" / "nyu2_test.csv").write_text("")
    monkeypatch.setattr(book._paths, "find_nyu_data", lambda: nyu)
    P = book.setup("ok", "t", show=False)
    assert P.data == "nyu_data" and P.data_root == nyu
    with pytest.raises(book.ParameterError, match=r"parameter 'data' must be one of \['auto', 'nyu_data', "):
        book.setup("ok", "t", data="nyu", show=False)


def test_repository_profiles_agree_on_notebooks_names_and_types():
    """smoke, quick and paper must offer the same parameters with the same types, or a -p that works
    under one profile would fail under another."""
    profiles = {name: yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
                for name in ("smoke", "quick", "paper")}
    notebooks = {name: set(p["notebooks"]) for name, p in profiles.items()}
    assert notebooks["smoke"] == notebooks["quick"] == notebooks["paper"], notebooks
    for nb in notebooks["quick"]:
        merged = {name: {**p["defaults"], **(p["notebooks"][nb] or {})} for name, p in profiles.items()}
        assert merged["smoke"].keys() == merged["quick"].keys() == merged["paper"].keys(), nb
        for key, value in merged["quick"].items():
            for other in ("smoke", "paper"):
                if value is not None and merged[other][key] is not None:
                    assert type(merged[other][key]) is type(value), (nb, key, other)
    assert len(merged["paper"]["seeds"]) >= 3 and len(merged["quick"]["seeds"]) >= 2


def test_every_source_notebook_follows_the_parameters_contract():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert code[0].source.splitlines()[0].startswith('profile = "quick"'), path.name
        assert f'setup("{path.stem}", profile, globals())' in code[1].source, path.name
        assert all(not c.get("outputs") for c in code), f"{path.name}: source notebooks are stored without outputs"
        # parameters are written once, in the parameters cell: setup reads them from globals(), so a name the
        # profile does not know would be silently ignored
        names = [line.split("=")[0].strip() for line in code[0].source.splitlines() if "=" in line.split("#")[0]]
        known = set(book.profile_values(path.stem, "quick")) | {"profile"}
        assert set(names) <= known, f"{path.name}: parameters {sorted(set(names) - known)} are not in the profiles"
        # thin chapters: logic lives in depthlib, with tests
        defs = [c.source.split("def ")[1].split("(")[0] for c in code if re.search(r"^\s*def ", c.source, re.M)]
        assert not defs, f"{path.name}: functions {defs} belong in depthlib"


def test_setup_reads_the_parameters_from_the_notebook_namespace(project):
    P = book.setup("nb", "t", {"epochs": 5, "lr": None, "unrelated": 1, "profile": "t"}, show=False)
    assert P.epochs == 5 and P.lr == 0.01
    assert book.setup("nb", "t", {"epochs": 5}, epochs=7, show=False).epochs == 7


# ---------------------------------------------------------------- cached()

def test_cached_computes_once_per_params_and_code_version(project, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"table": pd.DataFrame({"rmse": [0.5, 0.25]}, index=pd.Index(["a", "b"], name="model")),
                "pred": torch.arange(6, dtype=torch.float32).reshape(1, 2, 3),
                "hist": np.arange(4, dtype=np.int64), "n": np.int64(7), "pair": (1, 2.5), "note": None}

    params = {"epochs": 3, "seeds": [0, 1]}
    first = book.cached("chapter/result", params, compute)
    second = book.cached("chapter/result", params, compute)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first["table"], second["table"])
    assert first["table"].loc["b", "rmse"] == 0.25 and first["table"].index.name == "model"
    assert torch.equal(second["pred"], torch.arange(6, dtype=torch.float32).reshape(1, 2, 3))
    assert second["hist"].dtype == np.int64 and second["n"] == 7 and second["pair"] == [1, 2.5]
    assert second["note"] is None
    book.cached("chapter/result", {**params, "epochs": 4}, compute)
    assert len(calls) == 2
    monkeypatch.setattr(cache_module, "code_version", lambda roots=None: "edited")
    book.cached("chapter/result", params, compute)
    assert len(calls) == 3
    book.cached("chapter/result", params, compute, refresh=True)
    assert len(calls) == 4


def test_cached_survives_a_code_change_during_the_computation(project, monkeypatch):
    version = {"now": "v1"}
    monkeypatch.setattr(cache_module, "code_version", lambda roots=None: version["now"])

    def compute():
        version["now"] = "v2"   # someone edits depthlib while a long computation runs
        return [1, 2]

    assert book.cached("k", {}, compute) == [1, 2]
    manifest = json.loads(next((project / "cache" / "k").glob("*/manifest.json")).read_text())
    assert manifest["code_version"] == "v1"   # stored under the version it was computed with


def test_cached_is_pickle_free(project):
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"result\['obj'\] has type Opaque"):
        book.cached("x", {}, lambda: {"obj": Opaque()})
    with pytest.raises(TypeError, match="object arrays"):
        book.cached("y", {}, lambda: np.array([{}], dtype=object))
    book.cached("z", {}, lambda: {"t": torch.ones(2)})
    files = [p for p in (project / "cache").rglob("*") if p.is_file()]
    assert files and all(p.suffix in {".json", ".pt", ".npy"} for p in files)
    # A failed computation leaves no entry (nor temp directory) behind.
    assert not list((project / "cache").glob("x/*")) and not list((project / "cache").glob("y/*"))


def test_a_profile_can_keep_its_own_cache(project, monkeypatch):
    """The paper profile caches into results/paper/cache, committed with its results."""
    monkeypatch.delenv("DEPTHLIB_CACHE")
    (project / "profiles" / "t.yaml").write_text(yaml.safe_dump({**PROFILE, "cache": "results/t/cache"}))
    P = book.setup("nb", "t", show=False)
    assert P.cache_dir == project / "results" / "t" / "cache"
    assert book.cached("k", P, lambda: {"rmse": 0.5}) == {"rmse": 0.5}
    assert list((project / "results" / "t" / "cache" / "k").glob("*/manifest.json"))
    (project / "profiles" / "t.yaml").write_text(yaml.safe_dump({**PROFILE, "cache": 3}))
    with pytest.raises(book.ParameterError, match="'cache' must be a directory"):
        book.setup("nb", "t", show=False)


def test_cached_rejects_bad_keys_and_params(project):
    with pytest.raises(ValueError, match="cache key '../x'"):
        book.cached("../x", {}, dict)
    with pytest.raises(TypeError, match="cache params must be JSON"):
        book.cached("k", {"t": torch.ones(1)}, dict)


def test_code_version_changes_with_the_source(monkeypatch, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(book._paths, "package_dir", lambda: tmp_path)
    assert book._paths.code_files() == [tmp_path / "a.py"]
    v1 = book.code_version()
    assert book.code_version() == v1
    (tmp_path / "a.py").write_text("x = 2\n")
    assert book.code_version() != v1


# ---------------------------------------------------------------- record_results()

def test_record_results_writes_the_contract_columns(project):
    P = book.setup("nb", "t", show=False)
    df = pd.DataFrame({"key": ["s/t1/rmse", "s/t1/delta1"], "value": [0.6, 0.77], "spread": [0.01, np.nan]})
    out = book.record_results(df, "nb", P)
    path = project / "results" / "t" / "nb.csv"
    written = pd.read_csv(path, dtype={"seeds": str})
    assert list(written.columns) == list(book.RESULT_COLUMNS)
    assert written["seeds"].tolist() == ["0,1", "0,1"] and written["n_seeds"].tolist() == [2, 2]
    assert written["profile"].unique().tolist() == ["t"] and written["data"].unique().tolist() == ["synth"]
    assert written.loc[0, "value"] == pytest.approx(0.6) and np.isnan(written.loc[1, "spread"])
    assert out.shape == (2, 8)
    back = load_results("t", project / "results")
    assert back["key"].tolist() == ["s/t1/rmse", "s/t1/delta1"] and back["seeds"].tolist() == ["0,1", "0,1"]
    assert np.isnan(back.loc[1, "spread"]) and load_results("other", project / "results").columns.tolist() == list(book.RESULT_COLUMNS)


def test_record_results_rejects_bad_frames(project):
    P = book.setup("nb", "t", show=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['value'\]"):
        book.record_results(pd.DataFrame({"key": ["a"]}), "nb", P)
    with pytest.raises(ValueError, match=r"duplicated key\(s\) \['a'\]"):
        book.record_results(pd.DataFrame({"key": ["a", "a"], "value": [1, 2]}), "nb", P)
    with pytest.raises(ValueError, match="'value' must be numeric"):
        book.record_results(pd.DataFrame({"key": ["a"], "value": ["high"]}), "nb", P)
    with pytest.raises(ValueError, match="differs from params.notebook 'nb'"):
        book.record_results({"a": 1.0}, "other", P)


# ---------------------------------------------------------------- the runner

def _notebook(path: pathlib.Path, name: str, body: list[str]) -> None:
    cells = [nbformat.v4.new_code_cell('profile = "quick"'),
             nbformat.v4.new_code_cell(f'import depthlib.book\nP = depthlib.book.setup("{name}", profile)'),
             *[nbformat.v4.new_code_cell(src) for src in body]]
    cells[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.book
def test_runner_reports_the_failing_notebook_and_cell_and_keeps_going(project, capsys):
    (project / "notebooks").mkdir()
    _notebook(project / "notebooks" / "bad.ipynb", "bad", ["x = 1", "1 / 0", "print('never')"])
    _notebook(project / "notebooks" / "ok.ipynb", "ok", ["print('ran with', P.profile, P.seeds)"])
    runs, status = runner.run_book("t", root=project, build=False)
    assert status is None
    by_name = {r.name: r for r in runs}
    assert [r.name for r in runs] == ["ok", "bad"]           # toc order, the failure does not stop the rest
    assert by_name["ok"].status == "executed"
    bad = by_name["bad"]
    assert bad.status == "failed" and bad.cell == 4 and bad.cell_source == "1 / 0"
    assert bad.error.startswith("ZeroDivisionError")
    assert "bad: FAILED at cell 4 ('1 / 0'): ZeroDivisionError" in capsys.readouterr().out

    ok = nbformat.read(project / "book" / "ok.ipynb", as_version=4)
    injected = [c for c in ok.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata.tags
    assert "profile = \"t\"" in injected[0].source
    shown = "".join(o.get("text", "") for c in ok.cells for o in c.get("outputs", []))
    assert "ran with t [0, 1]" in shown
    table = [o for c in ok.cells for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert "Parameters of this run" in table[0]["data"]["text/markdown"]
    assert ok.metadata.depthlib["status"] == "ok"

    failed = nbformat.read(project / "book" / "bad.ipynb", as_version=4)
    assert "Not rebuilt" in failed.cells[0].source and "cell 4" in failed.cells[0].source
    assert failed.metadata.depthlib["status"] == "failed"

    # Nothing changed: the good chapter is skipped, the failed one runs (and fails) again.
    runs, _ = runner.run_book("t", root=project, build=False)
    assert [(r.name, r.status) for r in runs] == [("ok", "skipped"), ("bad", "failed")]

    # A later failure of a chapter that had succeeded keeps its last good outputs, marked not rebuilt.
    _notebook(project / "notebooks" / "ok.ipynb", "ok", ["raise RuntimeError('broken now')"])
    runs, _ = runner.run_book("t", root=project, build=False, only=["ok"])
    assert [(r.name, r.status) for r in runs] == [("ok", "failed")]
    stale = nbformat.read(project / "book" / "ok.ipynb", as_version=4)
    assert "Not rebuilt" in stale.cells[0].source and "previous successful run" in stale.cells[0].source
    assert "RuntimeError: broken now" in stale.cells[0].source
    assert "ran with t [0, 1]" in "".join(o.get("text", "") for c in stale.cells for o in c.get("outputs", []))


@pytest.mark.book
def test_papermill_overrides_a_profile_value_and_wrong_types_fail_in_the_setup_cell(tmp_path):
    """`papermill notebooks/01_introduction.ipynb out.ipynb -p profile smoke -p scene outdoor`, as a reader would."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = str(REPO / "notebooks" / "01_introduction.ipynb")
    out = tmp_path / "out.ipynb"

    def run(**parameters):
        papermill.execute_notebook(source, str(out), parameters=parameters, kernel_name="python3", cwd=str(REPO),
                                   progress_bar=False)

    run(profile="smoke", scene="outdoor")
    nb = nbformat.read(out, as_version=4)
    table = next(o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
                 if "Parameters of this run" in o.get("data", {}).get("text/markdown", ""))
    assert "profile `smoke`" in table and "| `scene` | `'outdoor'` | override |" in table
    assert "| `size` | `[96, 128]` | profile smoke |" in table

    for parameters, message in (({"profile": "smoke", "size": "96x128"}, "parameter 'size' of notebook"),
                                ({"profile": "fast"}, "unknown profile 'fast'")):
        with pytest.raises(PapermillExecutionError) as info:
            run(**parameters)
        assert info.value.ename == "ParameterError" and message in info.value.evalue
        assert "depthlib.book.setup(" in info.value.source       # the cell right after the parameters


@pytest.mark.book
def test_data_chapter_uses_the_real_samples_when_present(shared_nyu_data, shared_fastdepth_sample, tmp_path,
                                                        monkeypatch):
    """The smoke run of the book (in a temporary copy) has no ../shared beside it; this one has."""
    import papermill

    monkeypatch.setenv("DEPTHLIB_SHARED", str(shared_nyu_data.parents[1]))
    monkeypatch.setenv("DEPTHLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEPTHLIB_RESULTS", str(tmp_path / "results"))
    out = tmp_path / "02_data.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "02_data.ipynb"), str(out), parameters={"profile": "smoke"},
                               kernel_name="python3", cwd=str(REPO), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    table = next(o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
                 if "Parameters of this run" in o.get("data", {}).get("text/markdown", ""))
    assert "Data: `nyu_data`" in table
    results = load_results("smoke", tmp_path / "results").set_index("key")
    # FastDepth's own prediction on its deploy sample: RMSE 0.618 m, delta1 0.777 (data/README.md).
    assert results.loc["fastdepth/ours/deploy-sample/rmse", "value"] == pytest.approx(0.618, abs=1e-3)
    assert results.loc["fastdepth/ours/deploy-sample/delta1", "value"] == pytest.approx(0.777, abs=1e-3)
    assert set(results["profile"]) == {"smoke"} and set(results["notebook"]) == {"02_data"}


def test_runner_rejects_unknown_profile_and_chapter(project):
    with pytest.raises(book.ParameterError, match="unknown profile 'nope'"):
        runner.run_book("nope", root=project, build=False)
    (project / "notebooks").mkdir()
    _notebook(project / "notebooks" / "ok.ipynb", "ok", [])
    with pytest.raises(book.ParameterError, match="--only missing: not a chapter"):
        runner.run_book("t", root=project, build=False, only=["missing"])


# ---------------------------------------------------------------- the whole book, smoke profile

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMEDRIVER = pathlib.Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """Every chapter executed with the smoke profile in a copy of the project, then built with -W -n."""
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("notebooks", "profiles"):
        shutil.copytree(REPO / folder, root / folder)
    # book/ pages and static files, without executed notebooks or a previous build.
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("*.ipynb", "_build"))
    mp = pytest.MonkeyPatch()
    mp.setenv("DEPTHLIB_ROOT", str(root))
    mp.setenv("DEPTHLIB_CACHE", str(root / ".cache"))
    mp.setenv("DEPTHLIB_RESULTS", str(root / "results"))
    try:
        runs, status = runner.run_book("smoke", root=root)
    finally:
        mp.undo()
    return root, runs, status


@pytest.mark.book
def test_every_notebook_runs_with_the_smoke_profile_and_the_book_builds(built_book):
    root, runs, status = built_book
    chapters = runner.toc_chapters(REPO)
    assert sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb")) == sorted(chapters), \
        "every notebook must be a chapter of _toc.yml"
    assert [r.name for r in runs] == chapters
    assert [r.describe() for r in runs if r.status != "executed"] == []
    assert status == 0, "jupyter-book build -W -n --keep-going failed: see the captured output"
    for name in chapters:
        assert (root / "_build" / "html" / "book" / f"{name}.html").is_file()
        nb = nbformat.read(root / "book" / f"{name}.ipynb", as_version=4)
        assert any("Parameters of this run" in o.get("data", {}).get("text/markdown", "")
                   for c in nb.cells for o in c.get("outputs", [])), f"{name}: setup() did not display the parameters"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test output should show failures, not every request
        pass


#: Screenshots of the top of every page at 1280x800, kept after the test (CI can collect them).
ARTIFACTS = pathlib.Path(os.environ.get("DEPTHLIB_TEST_ARTIFACTS", REPO / "test-artifacts")) / "screenshots"

# What a reader at a 1280x800 window sees: sideways scrolling (the page, or a table inside its scrolling box; code
# blocks may scroll), figures without captions, and whether the claim box comes before any visible code.
LAYOUT_SCRIPT = """
const doc = document.documentElement;
const article = document.querySelector('article') || document.body || document.documentElement;
function scroller(el) {
  for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll') return p;
  }
  return null;
}
const wideTables = [];
for (const t of article.querySelectorAll('table')) {
  if (t.offsetParent === null) continue;            // collapsed (a drop-down, a hidden input): not seen
  const box = scroller(t);
  const tooWide = box ? box.scrollWidth > box.clientWidth + 1
                      : t.getBoundingClientRect().right > article.getBoundingClientRect().right + 1;
  if (tooWide) wideTables.push(t.innerText.slice(0, 80));
}
const uncaptioned = [];
for (const img of article.querySelectorAll('.cell_output img')) {
  if (!img.closest('figure') || !img.closest('figure').querySelector('figcaption')) uncaptioned.push(img.getAttribute('src'));
}
const claim = article.querySelector('.admonition.claim-box');
let codeBeforeClaim = false;
if (claim) {
  const top = claim.getBoundingClientRect().top;
  for (const c of article.querySelectorAll('.cell_input')) {
    if (c.offsetParent !== null && c.getBoundingClientRect().top < top) { codeBeforeClaim = true; break; }
  }
}
return {pageOverflow: Math.max(0, doc.scrollWidth - doc.clientWidth), wideTables: wideTables,
        uncaptioned: uncaptioned, claimBox: !!claim, codeBeforeClaim: codeBeforeClaim};
"""


@pytest.mark.book
def test_search_finds_parameters_and_pages_offer_the_executed_notebook(built_book):
    root, _, status = built_book
    if status != 0:
        pytest.fail("the book did not build")
    html = root / "_build" / "html"
    index = (html / "searchindex.js").read_text(encoding="utf-8")
    from sphinx.search.en import SearchEnglish

    stem = SearchEnglish({}).stem   # the index holds stemmed words, and the search stems the query alike
    for name in ("n_train", "latency_threads", "transfer_epochs"):   # parameters of chapters 03, 03 and 02
        assert f'"{stem(name)}"' in index, f"the search index lacks the parameter name {name} ({stem(name)})"
    for name in runner.toc_chapters(REPO):
        assert (html / "_sources" / "book" / f"{name}.ipynb").is_file(), f"{name}: no executed notebook to download"
        page = (html / "book" / f"{name}.html").read_text(encoding="utf-8")
        assert f"_sources/book/{name}.ipynb" in page, f"{name}: no download button for the executed notebook"


@pytest.mark.book
def test_chapter_pages_load_with_figures_and_no_console_errors(built_book):
    root, _, status = built_book
    if status != 0:
        pytest.fail("the book did not build")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are missing: run `bash scripts/ensure_chromium.sh`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    html = root / "_build" / "html"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,800",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never tries to download a browser or a driver.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    problems = []
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        # the root index.html only redirects to the front page
        assert 'url=book/index.html' in (html / "index.html").read_text(encoding="utf-8")
        pages = ["book/index.html"] + [f"book/{name}.html" for name in runner.toc_chapters(REPO)]
        for page in pages:
            driver.get(f"{base}/{page}")
            driver.execute_async_script(
                "const done = arguments[0];"
                "if (document.readyState === 'complete') done(); else window.addEventListener('load', () => done());")
            images = driver.execute_script(
                "return Array.from(document.querySelectorAll('main img, article img'))"
                ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
            if page != "book/index.html" and not images:
                problems.append(f"{page}: no figures")
            problems += [f"{page}: image {src} did not load" for src, complete, width in images
                         if not complete or width == 0]
            title = driver.title
            if "Not rebuilt" in driver.page_source:
                problems.append(f"{page}: marked 'Not rebuilt'")
            layout = driver.execute_script(LAYOUT_SCRIPT)
            if layout["pageOverflow"]:
                problems.append(f"{page}: the page scrolls sideways at 1280 px ({layout['pageOverflow']} px too wide)")
            problems += [f"{page}: table needs sideways scrolling at 1280 px: {t!r}" for t in layout["wideTables"]]
            problems += [f"{page}: figure {src} has no caption" for src in layout["uncaptioned"]]
            if page != "book/index.html":
                if not layout["claimBox"]:
                    problems.append(f"{page}: no claim box")
                elif layout["codeBeforeClaim"]:
                    problems.append(f"{page}: code shown before the claim box")
            elif not layout["claimBox"]:
                problems.append("book/index.html: no state of the reproduction")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / (page.replace("/", "_").removesuffix(".html") + ".png")))
            problems += [f"{page}: console {entry['level']}: {entry['message']}"
                         for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert title, f"{page}: empty title"
    finally:
        driver.quit()
        server.shutdown()
    assert problems == [], "\n".join(problems)
