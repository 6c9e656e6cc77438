"""Verdicts: each reported number's, each chapter's claims, and the claim box the chapters open with."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import textwrap

import pandas as pd
import pytest

from depthlib.reported import (RESULT_COLUMNS, VERDICTS, is_like_for_like, judge, judge_claims, load_claims,
                               load_reported, load_results, scorecard, verdict_counts)
from depthlib.stats import mean_spread

REPO = pathlib.Path(__file__).resolve().parents[1]

TOY = """\
study: toy
entries:
- {key: toy/weights, source: T1, configuration: c, metric: params, value: 3100000.0, units: parameters, notebook: 03_x}
- {key: toy/macs, source: T1, configuration: c, metric: gmacs, value: 0.74, units: GMAC, notebook: 03_x}
- {key: toy/v2, source: T2, configuration: v2, metric: delta1, value: 0.8, units: fraction, notebook: 03_x}
- {key: toy/v1, source: T2, configuration: v1, metric: delta1, value: 0.7, units: fraction, notebook: 03_x}
- {key: toy/fast, source: T3, configuration: a, metric: latency, value: 90, units: ms, not_reproducible: a PC}
- {key: toy/slow, source: T3, configuration: b, metric: latency, value: 150, units: ms, not_reproducible: a PC}
- {key: toy/paper-only, source: T4, configuration: c, metric: rmse, value: 0.6, units: m, notebook: 03_x}
claims:
- {id: size, chapter: 03_x, claim: it is small, keys: [toy/weights, toy/macs]}
- {id: v2-better, chapter: 03_x, claim: v2 beats v1, better: toy/v2, worse: toy/v1}
- {id: faster, chapter: 03_x, claim: a is faster, better: toy/fast, worse: toy/slow, higher_is_better: false,
   margin: 0.1}
- {id: accuracy, chapter: 03_x, claim: accurate, keys: [toy/paper-only]}
- {id: sample, chapter: 02_x, claim: one sample, keys: [toy/paper-only], measured_by: {toy/paper-only: toy/ours/sample}}
"""


def _toy(tmp_path: pathlib.Path, results: list[dict], text: str = TOY):
    rep_dir = tmp_path / "rep"
    rep_dir.mkdir(exist_ok=True)
    (rep_dir / "toy.yaml").write_text(textwrap.dedent(text))
    results_dir = tmp_path / "results"
    (results_dir / "quick").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{"profile": "quick", "notebook": "03_x", "data": "synth", "seeds": "0,1", "spread": math.nan,
                           "n_seeds": 1, **r} for r in results], columns=list(RESULT_COLUMNS))
    frame.to_csv(results_dir / "quick" / "03_x.csv", index=False)
    reported = load_reported(rep_dir)
    card = scorecard("quick", results_dir, reported=reported)
    return card, load_claims(rep_dir), load_results("quick", results_dir)


def test_judge_by_hand():
    assert judge(0.74, 0.7367, like_for_like=True) == "reproduced"             # 0.4 % off
    assert judge(0.74, 0.90, like_for_like=True) == "contradicted"             # 22 % off
    assert judge(0.74, 0.7367, like_for_like=False) == "not resolved at this profile"
    # the printed precision: 3.1 M means 3.05-3.15 M, so 3.14 M is reproduced even without a relative tolerance
    assert judge(3.1e6, 3.14e6, like_for_like=True, rtol=0.0) == "reproduced"
    assert judge(3.1e6, 3.16e6, like_for_like=True, rtol=0.0) == "contradicted"
    # two standard deviations over seeds widen the tolerance
    assert judge(0.5, 0.56, 0.01, like_for_like=True, rtol=0.0) == "contradicted"
    assert judge(0.5, 0.56, 0.04, like_for_like=True, rtol=0.0) == "reproduced"
    with pytest.raises(ValueError, match="finite"):
        judge(0.5, math.nan, like_for_like=True)
    with pytest.raises(ValueError, match="rtol"):
        judge(0.5, 0.5, like_for_like=True, rtol=-1)


def test_like_for_like_is_the_paper_profile_or_an_architecture_count():
    assert is_like_for_like("paper", "nyu_h5")
    assert is_like_for_like("quick", "architecture at 224x224 (no training)")
    assert not is_like_for_like("quick", "train: synth indoor 96 @64x64")
    assert not is_like_for_like("smoke", None)


def test_scorecard_verdicts_and_counts(tmp_path):
    card, _, _ = _toy(tmp_path, [
        {"key": "toy/weights", "value": 3.12e6, "data": "architecture (no training)"},
        {"key": "toy/macs", "value": 0.9, "data": "architecture (no training)"},
        {"key": "toy/v2", "value": 0.41, "spread": 0.01, "n_seeds": 3},
        {"key": "toy/fast", "value": 7.0}])
    verdicts = card.set_index("key")["verdict"]
    assert verdicts["toy/weights"] == "reproduced"
    assert verdicts["toy/macs"] == "contradicted"
    assert verdicts["toy/v2"] == "not resolved at this profile"          # procedural data: cannot tell
    assert verdicts["toy/fast"] == "not reproducible here"               # measured, but on another device
    assert verdicts["toy/paper-only"] == "needs the paper profile"       # its chapter ran and did not record it
    assert set(verdicts) <= set(VERDICTS)
    counts = verdict_counts(card)
    assert counts.loc["toy", "reproduced"] == 1 and counts.loc["toy", "contradicted"] == 1
    assert counts.loc["toy"].sum() == len(card)


def test_claims_keys_tests_and_margins(tmp_path):
    card, claims, results = _toy(tmp_path, [
        {"key": "toy/weights", "value": 3.12e6, "data": "architecture (no training)"},
        {"key": "toy/macs", "value": 0.741, "data": "architecture (no training)"},
        # v2 beats v1 by many seed spreads over 3 seeds each: Welch's test says the paper's sign holds
        {"key": "toy/v2", "value": 0.45, "spread": 0.005, "n_seeds": 3},
        {"key": "toy/v1", "value": 0.30, "spread": 0.005, "n_seeds": 3},
        {"key": "toy/fast", "value": 7.0}, {"key": "toy/slow", "value": 15.0},
        {"key": "toy/ours/sample", "value": 0.61}])
    judged = judge_claims(card, claims, results=results).set_index("id")
    assert judged.loc["size", "verdict"] == "reproduced"
    assert judged.loc["size", "paper"] == "params 3.1 M parameters; gmacs 0.74 GMAC"
    assert judged.loc["v2-better", "verdict"] == "reproduced"
    assert "Welch p" in judged.loc["v2-better", "why"] and "not the paper's" in judged.loc["v2-better", "why"]
    assert judged.loc["faster", "verdict"] == "reproduced"
    assert "2.14x apart" in judged.loc["faster", "why"]
    assert judged.loc["accuracy", "verdict"] == "needs the paper profile"
    assert judged.loc["sample", "verdict"] == "not resolved at this profile"   # one sample of ours, other data
    assert judged.loc["sample", "ours"] == "rmse 0.61 m"
    assert judge_claims(card, claims, chapter="02_x", results=results)["id"].tolist() == ["sample"]


def test_claims_that_the_run_contradicts_or_cannot_tell(tmp_path):
    card, claims, results = _toy(tmp_path, [
        {"key": "toy/weights", "value": 3.12e6, "data": "architecture (no training)"},
        {"key": "toy/macs", "value": 0.9, "data": "architecture (no training)"},
        {"key": "toy/v2", "value": 0.30, "spread": 0.005, "n_seeds": 3},    # reversed, clearly
        {"key": "toy/v1", "value": 0.45, "spread": 0.005, "n_seeds": 3},
        {"key": "toy/fast", "value": 7.0}, {"key": "toy/slow", "value": 7.3}])  # 4 %: within the margin
    judged = judge_claims(card, claims, results=results).set_index("id")
    assert judged.loc["size", "verdict"] == "contradicted"
    assert judged.loc["v2-better", "verdict"] == "contradicted"
    assert judged.loc["faster", "verdict"] == "not resolved at this profile"
    # two seeds each, overlapping: the test cannot tell
    card, claims, results = _toy(tmp_path, [{"key": "toy/v2", "value": 0.31, "spread": 0.02, "n_seeds": 2},
                                            {"key": "toy/v1", "value": 0.30, "spread": 0.02, "n_seeds": 2}])
    judged = judge_claims(card, claims, results=results).set_index("id")
    assert judged.loc["v2-better", "verdict"] == "not resolved at this profile"
    assert judged.loc["size", "verdict"] == "needs the paper profile"
    with pytest.raises(ValueError, match="pass results="):
        judge_claims(card, claims)


@pytest.mark.parametrize("claim, message", [
    ("{id: a, chapter: c, claim: x}", "either 'keys' or 'better'"),
    ("{id: a, chapter: c, claim: x, keys: [toy/weights], better: toy/v2, worse: toy/v1}", "either 'keys'"),
    ("{id: a, chapter: c, claim: x, keys: [toy/nope]}", "'toy/nope', which is not a reported key"),
    ("{id: a, chapter: c, keys: [toy/weights]}", "lacks field"),
    ("{id: a, chapter: c, claim: x, keys: [toy/weights], verdict: reproduced}", "unknown field"),
    ("{id: a, chapter: c, claim: x, keys: [toy/weights], rtol: -0.1}", "rtol"),
    ("{id: a, chapter: c, claim: x, keys: [toy/weights], margin: 0.1}", "margin"),
    ("{id: a, chapter: c, claim: x, keys: [toy/weights], measured_by: {toy/macs: k}}", "measured_by"),
])
def test_malformed_claims_name_the_file_and_the_claim(tmp_path, claim, message):
    entries = TOY.split("claims:")[0]
    (tmp_path / "toy.yaml").write_text(textwrap.dedent(entries) + f"claims:\n- {claim}\n")
    with pytest.raises(ValueError, match=message) as info:
        load_claims(tmp_path)
    assert "toy.yaml" in str(info.value)


def test_the_studies_claims_load_and_name_chapters_of_the_book():
    from depthlib.book.runner import toc_chapters

    claims = load_claims()
    assert claims["id"].is_unique and len(claims) >= 10
    chapters = set(toc_chapters(REPO))
    assert set(claims["chapter"]) <= chapters, set(claims["chapter"]) - chapters
    # every chapter but the introduction and the scorecard (which show the whole book's state) checks a claim
    assert chapters - set(claims["chapter"]) == {"01_introduction", "05_scorecard"}


def test_mean_spread_prints_the_digits_the_spread_justifies():
    assert mean_spread(0.30937, 0.02007, 2) == "0.309 ± 0.020"
    assert mean_spread(12.34, 1.2, 3) == "12.3 ± 1.2"
    assert mean_spread(1234.5, 25.0, 3) == "1234 ± 25"
    assert mean_spread(0.7234, 0.0121, 2) == "0.723 ± 0.012"
    assert mean_spread(0.7234, 0.0121, 1) == "0.723"                     # one seed: no spread to print


def test_claim_box_markdown(tmp_path):
    from depthlib.book.claims import claims_markdown, state_html, state_markdown

    card, claims, results = _toy(tmp_path, [
        {"key": "toy/weights", "value": 3.12e6, "data": "architecture (no training)"},
        {"key": "toy/macs", "value": 0.741, "data": "architecture (no training)"}])
    judged = judge_claims(card, claims, results=results, chapter="03_x")
    text = claims_markdown(judged, profile="quick")
    assert text.startswith(":::{admonition} Claim and finding\n:class: claim-box note")
    assert text.rstrip().endswith(":::")
    for claim in judged.to_dict("records"):
        assert f"- **{claim['verdict']}**: {claim['claim']} (toy)" in text
    assert "ours (quick profile" in text and "- why: " in text
    only_reproduced = claims_markdown(judged[judged["verdict"] == "reproduced"], profile="quick")
    assert ":class: claim-box tip" in only_reproduced
    state = state_markdown(judged, profile="quick")
    assert "{doc}`03_x`" in state and f"The chapters check {len(judged)} claims" in state
    page = state_html(judged, profile="quick")     # what another page pastes: HTML only crosses pages
    assert page.startswith('<div class="admonition claim-box') and 'href="03_x.html"' in page
    assert f"The chapters check {len(judged)} claims" in page


def test_figure_style_and_colours():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthlib import plotting

    plotting.book_style()
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0] == plotting.BOOK_PALETTE[0]
    assert plotting.model_color("fastdepth") == plotting.model_color("fastdepth") == plotting.BOOK_PALETTE[0]
    assert plotting.model_color("some-config / add") in plotting.BOOK_PALETTE
    names = ["fastdepth", "mbv2-nnconv5-narrow", "a", "b", "c", "d"]
    palette = plotting.model_palette(names + ["a"])
    assert list(palette) == names and len(set(palette.values())) == len(names)   # no two models share a colour
    with pytest.raises(ValueError, match="non-empty string"):
        plotting.model_color("")
    counts = pd.DataFrame({"reproduced": [2, 0], "no chapter yet": [1, 5]}, index=["s1", "s2"])
    fig, ax = plt.subplots()
    plotting.plot_verdicts(ax, counts)
    assert ax.get_xlabel() == "reported results (count)" and ax.get_ylabel() == "study"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reproduced", "no chapter yet"]
    with pytest.raises(ValueError, match="unknown verdict"):
        plotting.plot_verdicts(ax, counts.rename(columns={"reproduced": "fine"}))
    plt.close(fig)


def _extension():
    spec = importlib.util.spec_from_file_location("depthlib_book_ext", REPO / "book" / "_ext" / "depthlib_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("remote, url", [
    ("git@github.com:someone/fast-depth-book.git", "https://github.com/someone/fast-depth-book"),
    ("https://github.com/someone/fast-depth-book.git", "https://github.com/someone/fast-depth-book"),
    ("ssh://git@gitlab.com/team/book", "https://gitlab.com/team/book"),
    ("/srv/git/book.git", ""),                     # a local remote: no launch buttons rather than wrong ones
    ("", ""),
])
def test_repository_url_for_the_launch_buttons(monkeypatch, remote, url):
    ext = _extension()
    monkeypatch.setenv("DEPTHLIB_REPOSITORY_URL", remote)
    monkeypatch.setattr(ext, "_git", lambda *args: "")
    assert ext.repository_url(".") == url


def test_launch_links_open_the_chapter_notebook():
    ext = _extension()
    context = {"header_buttons": [{"type": "group", "buttons": [
        {"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/book/03_fastdepth.ipynb"},
        {"url": "https://colab.research.google.com/github/o/r/blob/main/book/03_fastdepth.ipynb"}]},
        {"type": "group", "buttons": [{"url": "../_sources/book/03_fastdepth.ipynb"}]}]}
    ext.launch_the_chapter(None, "book/03_fastdepth", "page.html", context, None)
    urls = [b["url"] for b in context["header_buttons"][0]["buttons"]]
    assert all(u.endswith("/notebooks/03_fastdepth.ipynb") for u in urls)
    # the download button keeps the executed notebook of the page
    assert context["header_buttons"][1]["buttons"][0]["url"] == "../_sources/book/03_fastdepth.ipynb"


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_chapters_open_with_the_claim_box_and_collapse_their_code(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    pasted = "{glue} book-state" if path.stem == "01_introduction" else "{glue:md} claim-box"
    assert nb.cells[1].cell_type == "markdown" and pasted in nb.cells[1].source, \
        f"{path.name}: the second cell must paste the {pasted} box"
    if path.stem != "01_introduction":
        assert any(c.cell_type == "code" and f'claim_box("{path.stem}"' in c.source for c in nb.cells), \
            f"{path.name}: no depthlib.book.claim_box call"
    in_solution, shown = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            in_solution = ("{solution-start}" in cell.source) or (in_solution and "{solution-end}" not in cell.source)
            continue
        if in_solution or "hide-input" in cell.metadata.get("tags", []):
            continue
        shown.append(cell.source)
    assert all("depthlib.book.setup(" in s or "claim_box(" in s for s in shown), \
        f"{path.name}: code cells shown in full besides the setup and claim_box calls: {shown}"


def test_study_and_chapter_cards_put_what_a_reader_compares_first(tmp_path):
    from depthlib.reported import chapter_card, study_card

    card, _, _ = _toy(tmp_path, [
        {"key": "toy/weights", "value": 3.12e6, "data": "architecture (no training)", "seeds": "-"},
        {"key": "toy/v2", "value": 0.41, "spread": 0.0123, "n_seeds": 3}])
    view = study_card(card, "toy")
    assert list(view.columns) == ["source", "reported", "ours (mean ± std over seeds)", "verdict", "run"]
    assert view.index.name == "number" and "weights" in view.index          # the study's prefix is dropped
    assert view.loc["weights", "reported"] == "3.1 M parameters"
    assert view.loc["weights", "ours (mean ± std over seeds)"] == "3.12 M parameters"
    assert view.loc["weights", "run"] == "quick profile; architecture (no training)"
    assert view.loc["v2", "ours (mean ± std over seeds)"] == "0.410 ± 0.012"
    assert view.loc["v2", "run"] == "quick profile, seeds 0,1; synth"
    assert view.loc["fast", "run"].startswith("not reproducible here")      # why there is no number of ours
    mine = chapter_card(card, "03_x", keys=["toy/fast"])
    assert "toy/weights" in mine.index and "toy/fast" in mine.index
    with pytest.raises(KeyError, match="toy/nope"):
        chapter_card(card, "03_x", keys=["toy/nope"])
    with pytest.raises(KeyError, match="no study 'other'"):
        study_card(card, "other")


def test_tables_print_four_significant_digits():
    from depthlib.book.style import format_number, table_style

    assert format_number(20.67) == "20.67" and format_number(3.78) == "3.78"
    assert format_number(3933090.0) == "3,933,090" and format_number(3933090) == "3,933,090"
    assert format_number(0.000123456) == "0.0001235" and format_number(float("nan")) == "–"
    assert format_number("x") == "x" and format_number(True) == "True"
    options = ("display.float_format", "styler.format.formatter", "styler.format.na_rep", "display.max_colwidth")
    try:
        table_style()
        html = pd.DataFrame({"a": [20.670000, 3.78]}).round(2).style.to_html()
        assert ">20.67<" in html and "20.670000" not in html
    finally:
        for option in options:   # the rest of the test session prints pandas' way
            pd.reset_option(option)
