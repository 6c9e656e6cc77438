"""The reported numbers of the five studies and the scorecard join."""

from __future__ import annotations

import pathlib
import textwrap

import pandas as pd
import pytest

from depthlib.reported import (KINDS, REPORTED_DIR, RESULT_COLUMNS, load_reported, load_results,
                               reported_value, scorecard, unreported_results)

STUDIES = {"sagar2021", "fastdepth", "zhang2021", "yucel2021", "haly"}


@pytest.fixture(scope="module")
def reported() -> pd.DataFrame:
    return load_reported()


def test_every_study_has_a_file_and_keys_are_unique(reported):
    assert {p.stem for p in REPORTED_DIR.glob("*.yaml")} == STUDIES
    assert set(reported["study"]) == STUDIES
    assert reported["key"].is_unique
    assert (reported["key"].str.split("/").str[0] == reported["study"]).all()
    assert reported["kind"].isin(KINDS).all()
    assert pd.api.types.is_float_dtype(reported["value"])


@pytest.mark.parametrize("key, value", [
    # spot checks against the papers' text, one per study and table kind
    ("fastdepth/rmse", 0.604), ("fastdepth/delta1", 0.771), ("fastdepth/gpu-latency", 5.6),
    ("fastdepth/cpu-latency", 37), ("fastdepth/recreation/rmse", 0.827),
    ("sagar2021/table3/mobilenetv2-sgd-searched/delta1", 0.815), ("sagar2021/table3/mobilenet-adam-searched/loss", 0.926),
    ("sagar2021/table4/batch64/delta1", 0.61), ("sagar2021/setting/edge-loss-lambda", 12),
    ("sagar2021/deployment/size-fp16", 5.9), ("sagar2021/table2/row1/out", 512),
    ("zhang2021/table1/ours/score", 129.41), ("zhang2021/table2/model3-dist/si-rmse", 0.3141),
    ("zhang2021/table2/model1/flops", 27.7e6),
    ("yucel2021/table1/mobilenetv2/rmse", 0.583), ("yucel2021/table2/mbv2-fbnet-x112/delta1", 0.790),
    ("yucel2021/table6/no-wi-hard-easy-fip/whdr", 0.1156), ("yucel2021/table8/s21/ours/gpu", 27),
    ("haly/section2.2/midas-v21-small/params", 16600929), ("haly/table2/sparsity-0.99/rmse", 0.58),
])
def test_spot_values(reported, key, value):
    assert reported.loc[key, "value"] == pytest.approx(value)
    assert reported_value(key) == pytest.approx(value)


def test_every_result_says_how_it_is_reproduced_or_why_not(reported):
    results = reported[reported["kind"] == "result"]
    # a result may lack both (no chapter yet), but never claim both a chapter and impossibility
    both = results["notebook"].notna() & results["not_reproducible"].notna()
    assert not both.any(), results.loc[both, "key"].tolist()
    # the chapters of this book that reproduce numbers; a typo here would hide a row from its chapter
    assert set(reported["notebook"].dropna()) <= {"03_fastdepth", "04_mobilenetv2_recreation", "05_scorecard",
                                                   "07_pruning_fastdepth", "08_pruning_midas", "09_mai2021",
                                                   "10_yucel_architecture", "11_yucel_ordinal"}


def test_unknown_key_names_close_keys():
    with pytest.raises(KeyError, match="fastdepth/rmse"):
        reported_value("fastdepth/rmsee")


def _write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
study: toy
defaults:
  conditions: {dataset: nyu, resolution: 224x224, device: null}
entries:
- {key: toy/a, source: Table 1, configuration: c, metric: rmse, value: 0.5, units: m, notebook: 03_fastdepth}
- {key: toy/b, source: Table 1, configuration: c, metric: rmse, value: 7, units: ms, not_reproducible: a phone,
   conditions: {device: phone}}
- {key: toy/c, source: Table 2, configuration: c, metric: delta1, value: 0.8, units: '', notebook: 04_x}
- {key: toy/d, source: Sec 3, configuration: c, metric: lr, value: 0.01, units: '', kind: setting}
- {key: toy/e, source: Sec 4, configuration: c, metric: rmse, value: 1.0, units: m}
"""


def test_defaults_merge_and_conditions_override(tmp_path):
    _write(tmp_path, "toy.yaml", GOOD)
    rep = load_reported(tmp_path)
    assert rep.loc["toy/b", "device"] == "phone"
    assert rep.loc["toy/b", "dataset"] == "nyu"  # inherited while device is overridden
    assert rep.loc["toy/a", "kind"] == "result" and rep.loc["toy/d", "kind"] == "setting"


@pytest.mark.parametrize("entry, message", [
    ("{key: toy/a, source: s, configuration: c, metric: m, value: 'about 5', units: ''}", "finite numbers"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: .nan, units: ''}", "finite numbers"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: true, units: ''}", "finite numbers"),
    ("{key: other/a, source: s, configuration: c, metric: m, value: 1, units: ''}", "starting with 'toy/'"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: 1}", "lacks required"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: 1, units: '', kind: guess}", "kind"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: 1, units: '', valeu: 2}", "unknown field"),
    ("{key: toy/a, source: s, configuration: c, metric: m, value: 1, units: '', conditions: {gpu: x}}", "conditions"),
])
def test_malformed_entries_name_file_and_field(tmp_path, entry, message):
    path = _write(tmp_path, "toy.yaml", f"study: toy\nentries:\n- {entry}\n")
    with pytest.raises(ValueError, match=message) as info:
        load_reported(tmp_path)
    assert str(path) in str(info.value)


def test_duplicate_keys_across_files_are_rejected(tmp_path):
    _write(tmp_path, "a.yaml", "study: toy\nentries:\n- {key: toy/x, source: s, configuration: c, metric: m, value: 1, units: ''}\n")
    _write(tmp_path, "b.yaml", "study: toy\nentries:\n- {key: toy/x, source: s, configuration: c, metric: m, value: 2, units: ''}\n")
    with pytest.raises(ValueError, match=r"duplicate reported key 'toy/x' in a.yaml and b.yaml"):
        load_reported(tmp_path)


def _results(results_dir: pathlib.Path, profile: str, notebook: str, rows: list[dict]) -> None:
    (results_dir / profile).mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{"profile": profile, "notebook": notebook, "data": "synth", "seeds": "0,1",
                           "spread": 0.01, "n_seeds": 2, **r} for r in rows], columns=list(RESULT_COLUMNS))
    frame.to_csv(results_dir / profile / f"{notebook}.csv", index=False)


def test_scorecard_joins_on_key_and_explains_missing_values(tmp_path):
    (tmp_path / "rep").mkdir()
    _write(tmp_path / "rep", "toy.yaml", GOOD)
    rep = load_reported(tmp_path / "rep")
    results = tmp_path / "results"
    _results(results, "quick", "03_fastdepth", [{"key": "toy/a", "value": 0.61, "spread": 0.02},
                                                {"key": "ours/extra", "value": 3.0}])
    card = scorecard("quick", results, reported=rep).set_index("key")
    assert len(card) == len(rep)  # every reported number appears, whether we have it or not
    assert card.loc["toy/a", "reported"] == 0.5 and card.loc["toy/a", "ours"] == 0.61
    assert card.loc["toy/a", "ours_text"] == "0.610 ± 0.020"   # the digits a spread of 0.02 justifies
    assert card.loc["toy/a", ["profile", "data", "seeds"]].tolist() == ["quick", "synth", "0,1"]
    assert card.loc["toy/a", "status"] == "measured: quick profile"
    assert card.loc["toy/b", "status"] == "not reproducible here: a phone"
    assert card.loc["toy/c", "status"].startswith("not run: results/quick/04_x.csv")
    assert card.loc["toy/d", "status"].startswith("setting")
    assert card.loc["toy/e", "status"] == "no chapter reproduces this yet"
    assert pd.isna(card.loc["toy/e", "ours"])

    # the chapter ran but did not record toy/c: in the quick profile that means it needs the paper profile
    _results(results, "quick", "04_x", [{"key": "ours/other", "value": 1.0}])
    card = scorecard("quick", results, reported=rep).set_index("key")
    assert card.loc["toy/c", "status"] == "needs the paper profile"


def test_profile_preference_order(tmp_path):
    _write(tmp_path, "toy.yaml", GOOD)
    rep = load_reported(tmp_path)
    results = tmp_path / "results"
    _results(results, "quick", "03_fastdepth", [{"key": "toy/a", "value": 0.9}])
    _results(results, "paper", "03_fastdepth", [{"key": "toy/a", "value": 0.55}])
    assert scorecard(("paper", "quick"), results, reported=rep).set_index("key").loc["toy/a", "ours"] == 0.55
    assert scorecard(("quick", "paper"), results, reported=rep).set_index("key").loc["toy/a", "ours"] == 0.9


def test_results_validation(tmp_path):
    (tmp_path / "quick").mkdir()
    pd.DataFrame({"key": ["toy/a"], "value": [1.0]}).to_csv(tmp_path / "quick" / "03_a.csv", index=False)
    with pytest.raises(ValueError, match="missing column"):
        load_results("quick", tmp_path)
    _results(tmp_path, "quick", "03_a", [{"key": "toy/a", "value": 1.0}, {"key": "toy/a", "value": 2.0}])
    with pytest.raises(ValueError, match="more than once"):
        load_results("quick", tmp_path)
    _results(tmp_path, "quick", "03_a", [{"key": "toy/a", "value": 1.0}])
    _results(tmp_path, "quick", "04_b", [{"key": "toy/a", "value": 1.0}])
    with pytest.raises(ValueError, match=r"more than once \(notebook\(s\) \['03_a', '04_b'\]\)"):
        load_results("quick", tmp_path)
    assert load_results("quick", tmp_path / "absent").empty


def test_unreported_results_catch_typos(tmp_path):
    _write(tmp_path, "toy.yaml", GOOD)
    rep = load_reported(tmp_path)
    _results(tmp_path / "results", "quick", "03_fastdepth",
             [{"key": "toy/a", "value": 1.0}, {"key": "toy/aa", "value": 1.0}, {"key": "ours/x", "value": 1.0},
              {"key": "toy/ours/latency", "value": 1.0}])
    extra = unreported_results("quick", tmp_path / "results", reported=rep).set_index("key")
    assert sorted(extra.index) == ["ours/x", "toy/aa", "toy/ours/latency"]
    assert extra["suspect"].to_dict() == {"toy/aa": True, "ours/x": False, "toy/ours/latency": False}
    assert extra.loc["ours/x", "ours_text"] == "1.000 ± 0.010"   # the fixture's spread 0.01, to two digits


def test_every_run_mapping_names_a_reported_key(monkeypatch):
    """Chapter 04 records through RUN_ROWS: a missing or misspelled row must fail here, not vanish from the
    scorecard."""
    from depthlib import reported as R

    rep = load_reported()
    metrics = {"sagar2021/table3": ("delta1", "loss"), "sagar2021/table4": ("delta1",)}
    for table, rows in R.RUN_ROWS.items():
        for run in rows:
            for metric in metrics[table]:
                assert R.reported_key(table, run, metric, reported=rep) in rep.index
    for model in ("fastdepth", "mbv2-nnconv5-narrow"):
        for optimizer in ("sgd", "adam"):
            assert R.reported_key("sagar2021/table3", (model, optimizer, "searched"), "searched-lr", reported=rep)
        assert R.reported_key("sagar2021/table3", (model, "adam", "fixed"), "delta1", reported=rep) is None
    monkeypatch.setitem(R.RUN_ROWS, "sagar2021/table4", {64: "batch-64"})
    with pytest.raises(KeyError, match="'sagar2021/table4/batch-64/delta1' is not a reported key"):
        R.reported_key("sagar2021/table4", 64, "delta1", reported=rep)
    with pytest.raises(KeyError, match="no run mapping for table 'sagar2021/table9'"):
        R.reported_key("sagar2021/table9", 64, "delta1", reported=rep)
