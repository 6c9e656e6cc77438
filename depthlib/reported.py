"""The numbers the five studies report, and the scorecard that puts ours beside them.

Every number printed in the five papers (tables, figures with stated values, claims in the text, settings of
their protocols) is one entry of ``depthlib/reported/<study>.yaml``. An entry has

``key``             ``<study>/<source>/<configuration>/<metric>``, unique across all files, e.g.
                    ``sagar2021/table3/mobilenetv2-sgd/delta1``;
``source``          where in the paper (table, figure, section);
``configuration``   the model / recipe the number belongs to;
``metric``, ``value``, ``units``   the number itself (``value`` is always numeric);
``kind``            ``result`` (a measurement), ``setting`` (a protocol choice) or ``architecture``;
``conditions``      ``dataset``, ``resolution``, ``device`` (``null`` when not applicable);
``notebook``        the chapter that reproduces it, when one does;
``not_reproducible`` why it cannot be reproduced on this project's machines, when it cannot;
``notes``           ambiguities and inconsistencies of the paper.

A file may give ``defaults`` that every entry inherits (``conditions`` merge key by key).

Our values are never typed in: :func:`scorecard` reads only what the book's ``record_results`` wrote to
``results/<profile>/<notebook>.csv`` (columns ``key, value, spread, n_seeds, profile, data, seeds, notebook``;
:func:`load_results`) and joins it with the reported entries on ``key``. Which of our runs re-runs which
row of a paper's table is :data:`RUN_ROWS`, read through :func:`reported_key`.

Example:
    >>> from depthlib.reported import load_reported, scorecard
    >>> rep = load_reported()                      # DataFrame, one row per reported number
    >>> rep.loc["fastdepth/rmse", "value"]
    0.604
    >>> card = scorecard("quick", "results")       # every reported number with ours or the reason it is missing
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import yaml

from depthlib.stats import mean_spread

__all__ = [
    "REPORTED_DIR",
    "RESULT_COLUMNS",
    "KINDS",
    "load_reported",
    "reported_value",
    "load_results",
    "scorecard",
    "unreported_results",
    "results_frame",
    "study_card",
    "RUN_ROWS",
    "reported_key",
]

REPORTED_DIR = pathlib.Path(__file__).with_name("reported")

#: Columns of ``results/<profile>/<notebook>.csv`` as the book's ``record_results`` writes them.
RESULT_COLUMNS = ("key", "value", "spread", "n_seeds", "profile", "data", "seeds", "notebook")

#: Allowed values of an entry's ``kind``.
KINDS = ("result", "setting", "architecture")

_REQUIRED = ("key", "source", "configuration", "metric", "value", "units")
_OPTIONAL = ("kind", "conditions", "notebook", "not_reproducible", "notes", "study")
_CONDITIONS = ("dataset", "resolution", "device")
_FILE_FIELDS = ("study", "title", "paper", "defaults", "entries")

# The columns of load_reported(), in order; conditions are flattened into dataset/resolution/device.
_REPORTED_COLUMNS = ("key", "study", "source", "configuration", "metric", "value", "units", "kind",
                     "dataset", "resolution", "device", "notebook", "not_reproducible", "notes", "file")


def _merge_entry(defaults: dict, entry: dict) -> dict:
    merged = {**defaults, **entry}
    # conditions merge key by key so that an entry can override one condition and inherit the others
    merged["conditions"] = {**(defaults.get("conditions") or {}), **(entry.get("conditions") or {})}
    return merged


def _check_entry(entry: dict, study: str, where: str) -> dict:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: an entry must be a mapping, got {type(entry).__name__}: {entry!r}")
    unknown = set(entry) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)} in entry {entry.get('key')!r}; "
                         f"allowed: {sorted(_REQUIRED + _OPTIONAL)}")
    missing = [f for f in _REQUIRED if f not in entry or entry[f] is None]
    if missing:
        raise ValueError(f"{where}: entry {entry.get('key')!r} lacks required field(s) {missing}")
    key = entry["key"]
    if not isinstance(key, str) or not key.startswith(f"{study}/") or key != key.strip() or " " in key:
        raise ValueError(f"{where}: key {key!r} must be a string without spaces starting with '{study}/'")
    if entry.get("study", study) != study:
        raise ValueError(f"{where}: entry {key!r} says study {entry['study']!r} in the file of study {study!r}")
    value = entry["value"]
    # bool is an int subclass in Python; a YAML 'yes' must not pass as the number 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: entry {key!r} has value {value!r}; values must be finite numbers "
                         "(put non-numeric remarks in 'notes')")
    kind = entry.get("kind", "result")
    if kind not in KINDS:
        raise ValueError(f"{where}: entry {key!r} has kind {kind!r}; expected one of {KINDS}")
    conditions = entry.get("conditions") or {}
    if not isinstance(conditions, dict) or set(conditions) - set(_CONDITIONS):
        raise ValueError(f"{where}: entry {key!r} has conditions {conditions!r}; allowed keys: {_CONDITIONS}")
    for field in ("source", "configuration", "metric", "units", "notebook", "not_reproducible", "notes"):
        if entry.get(field) is not None and not isinstance(entry[field], str):
            raise ValueError(f"{where}: entry {key!r} field {field!r} must be a string, got {entry[field]!r}")
    row = {
        "key": key, "study": study, "source": entry["source"], "configuration": entry["configuration"],
        "metric": entry["metric"], "value": float(value), "units": entry["units"], "kind": kind,
        "notebook": entry.get("notebook"), "not_reproducible": entry.get("not_reproducible"),
        "notes": entry.get("notes"),
    }
    row.update({c: conditions.get(c) for c in _CONDITIONS})
    return row


def _load_file(path: pathlib.Path) -> list[dict]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping with fields {_FILE_FIELDS}, got {type(doc).__name__}")
    unknown = set(doc) - set(_FILE_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown top-level field(s) {sorted(unknown)}; allowed: {_FILE_FIELDS}")
    study = doc.get("study")
    if not isinstance(study, str) or not study:
        raise ValueError(f"{path}: top-level 'study' must be a non-empty string, got {study!r}")
    defaults = doc.get("defaults") or {}
    entries = doc.get("entries")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: 'entries' must be a non-empty list")
    rows = []
    for i, entry in enumerate(entries):
        row = _check_entry(_merge_entry(defaults, entry if isinstance(entry, dict) else {"key": entry}),
                           study, f"{path} entry {i}")
        row["file"] = path.name
        rows.append(row)
    return rows


def load_reported(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load and validate every ``*.yaml`` of ``directory`` (default: the package's ``reported/``).

    Returns:
        DataFrame indexed by ``key`` (also kept as a column), one row per reported number, with columns
        ``key study source configuration metric value units kind dataset resolution device notebook
        not_reproducible notes file``; ``value`` is float.

    Raises:
        FileNotFoundError: the directory is missing or holds no YAML file.
        ValueError: a malformed file or entry (naming the file, the entry and the field), or a key that
            appears twice (naming both files).
    """
    directory = pathlib.Path(directory) if directory is not None else REPORTED_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"reported-numbers directory {directory} does not exist")
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no *.yaml file in reported-numbers directory {directory}")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for path in paths:
        for row in _load_file(path):
            if row["key"] in seen:
                raise ValueError(f"duplicate reported key {row['key']!r} in {seen[row['key']]} and {path.name}")
            seen[row["key"]] = path.name
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(_REPORTED_COLUMNS))
    return frame.set_index("key", drop=False)


def reported_value(key: str, directory: str | os.PathLike | None = None) -> float:
    """The value one study reports under ``key``; a ``KeyError`` names close keys when it is unknown."""
    table = load_reported(directory)
    if key not in table.index:
        prefix = key.rsplit("/", 1)[0]
        close = [k for k in table.index if k.startswith(prefix)][:10]
        raise KeyError(f"no reported number under key {key!r}; keys starting with {prefix!r}: {close}")
    return float(table.loc[key, "value"])


def _as_profiles(profile: str | Sequence[str]) -> list[str]:
    profiles = [profile] if isinstance(profile, str) else list(profile)
    if not profiles or not all(isinstance(p, str) and p for p in profiles):
        raise ValueError(f"profile must be a profile name or a non-empty sequence of names, got {profile!r}")
    return profiles


def load_results(profile: str | Sequence[str], results_dir: str | os.PathLike) -> pd.DataFrame:
    """The numbers the book's ``record_results`` wrote, one row per key, checked for the scorecard.

    Args:
        profile: a profile name, or several in order of preference (``("paper", "quick")``: a key recorded by
            the paper profile wins over the same key recorded by the quick profile).
        results_dir: the ``results/`` directory (the book's is ``depthlib.book.results_dir()``).

    Returns:
        DataFrame with :data:`RESULT_COLUMNS`, at most one row per key (the most preferred profile's), empty
        when nothing was recorded yet.

    Raises:
        ValueError: a csv lacks columns, has non-numeric values, or one profile records a key twice
            (in one notebook or in two).
    """
    root = pathlib.Path(results_dir)
    frames = []
    for rank, name in enumerate(_as_profiles(profile)):
        # seeds ("0,1") and data are text; empty value/spread cells are NaN.
        parts = [pd.read_csv(p, dtype={"seeds": str, "data": str, "key": str, "notebook": str, "profile": str},
                             keep_default_na=False,
                             na_values={"value": ["", "nan", "NaN"], "spread": ["", "nan", "NaN"]})
                 for p in sorted(root.glob(f"{name}/*.csv"))]
        if not parts:
            continue
        frame = pd.concat(parts, ignore_index=True)
        missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"results of profile {name!r} in {results_dir}: missing column(s) {missing}; "
                             f"record_results writes {RESULT_COLUMNS}")
        for col in ("value", "spread", "n_seeds"):
            converted = pd.to_numeric(frame[col], errors="coerce")
            bad = converted.isna() & frame[col].notna() & (frame[col].astype(str) != "")
            if bad.any():
                raise ValueError(f"results of profile {name!r}: non-numeric {col!r} for key(s) "
                                 f"{frame.loc[bad, 'key'].tolist()}")
            frame[col] = converted
        twice = frame[frame["key"].duplicated(keep=False)]
        if not twice.empty:
            key = twice["key"].iloc[0]
            where = sorted(set(twice.loc[twice["key"] == key, "notebook"].astype(str)))
            raise ValueError(f"results of profile {name!r}: key {key!r} recorded more than once "
                             f"(notebook(s) {where})")
        frame = frame[list(RESULT_COLUMNS)].copy()
        frame["_rank"] = rank
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    allres = pd.concat(frames, ignore_index=True)
    best = allres.sort_values("_rank", kind="stable").drop_duplicates("key", keep="first")
    return best[list(RESULT_COLUMNS)].reset_index(drop=True)


def _text(value: Any) -> str | None:
    # pandas turns the YAML's missing optional fields into NaN after a merge; treat them as absent
    return value if isinstance(value, str) and value else None


def _missing_status(row: pd.Series, results_dir: pathlib.Path, profiles: list[str]) -> str:
    if _text(row["not_reproducible"]):
        return f"not reproducible here: {row['not_reproducible']}"
    if row["kind"] != "result":
        return f"{row['kind']}: an input of the study, not a measurement"
    notebook = _text(row["notebook"])
    if not notebook:
        return "no chapter reproduces this yet"
    ran = [p for p in profiles if (results_dir / p / f"{notebook}.csv").is_file()]
    if not ran:
        return "not run: " + " and ".join(f"results/{p}/{notebook}.csv" for p in profiles) + " missing"
    if "paper" in ran:
        return f"not recorded by {notebook} under the paper profile"
    return "needs the paper profile"


def scorecard(profile: str | Sequence[str], results_dir: str | os.PathLike, *,
              reported: pd.DataFrame | None = None, kinds: Iterable[str] = KINDS) -> pd.DataFrame:
    """Every reported number beside our value, or the reason we have none.

    Args:
        profile: the profile whose results to use, or several in order of preference.
        results_dir: the ``results/`` directory the book's ``record_results`` writes to
            (``depthlib.book.results_dir()``).
        reported: the reported table (default :func:`load_reported`).
        kinds: which kinds of reported numbers to list (default all).

    Returns:
        DataFrame, one row per reported number, columns ``key study source configuration metric units
        reported ours spread n_seeds ours_text profile data seeds notebook dataset resolution device status
        notes kind``. ``reported`` is the paper's value; ``ours``/``spread``/``n_seeds``/``profile``/``data``/``seeds``
        come only from the results csv files; ``status`` is ``measured: <profile> profile``, or says why there is
        no value:
        ``needs the paper profile``, ``not reproducible here: <why>``, ``no chapter reproduces this yet``,
        ``not run: ...``, or that the number is a setting rather than a measurement.
    """
    profiles = _as_profiles(profile)
    results_dir = pathlib.Path(results_dir)
    rep = load_reported() if reported is None else reported
    kinds = set(kinds)
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"kinds {sorted(unknown)} unknown; expected a subset of {KINDS}")
    rep = rep[rep["kind"].isin(kinds)].reset_index(drop=True)
    res = load_results(profiles, results_dir).rename(columns={"value": "ours", "notebook": "result_notebook"})
    card = rep.rename(columns={"value": "reported"}).merge(res, on="key", how="left", validate="one_to_one")
    has = card["ours"].notna()
    status = pd.Series("", index=card.index, dtype=object)
    # "measured", not "reproduced": a quick-profile value comes from other data than the paper's, and the
    # profile and data columns beside it say which
    status[has & card["not_reproducible"].isna()] = "measured: " + card.loc[has, "profile"].astype(str) + " profile"
    # a chapter may still measure a hardware-bound number on this machine: show it, but say it is not like for like
    other = has & card["not_reproducible"].notna()
    status[other] = "measured here under other conditions; not reproducible as reported: " + \
        card.loc[other, "not_reproducible"].astype(str)
    for i in card.index[~has]:
        status[i] = _missing_status(card.loc[i], results_dir, profiles)
    card["status"] = status
    card["notebook"] = card["result_notebook"].where(has, card["notebook"])
    card["ours_text"] = [mean_spread(v, s, n) for v, s, n in zip(card["ours"], card["spread"], card["n_seeds"])]
    columns = ["key", "study", "source", "configuration", "metric", "units", "reported", "ours", "spread",
               "n_seeds", "ours_text", "profile", "data", "seeds", "notebook", "dataset", "resolution", "device",
               "status", "notes", "kind"]
    return card[columns]


def study_card(card: pd.DataFrame, study: str, *, show_inputs: bool = False) -> pd.DataFrame:
    """One study's rows of a :func:`scorecard`, as the scorecard chapter shows them (indexed by key).

    Args:
        card: a :func:`scorecard` table.
        study: a study key of ``card["study"]``.
        show_inputs: also list the study's settings and architecture numbers, not only its results.
    """
    if study not in set(card["study"]):
        raise KeyError(f"study_card: no study {study!r}; studies: {sorted(set(card['study']))}")
    rows = card[(card["study"] == study) & (show_inputs | (card["kind"] == "result"))]
    columns = ["key", "source", "configuration", "reported", "units", "ours_text", "profile", "data", "seeds",
               "status"]
    return rows[columns].rename(columns={"ours_text": "ours (mean ± std over seeds)"}).set_index("key")


def unreported_results(profile: str | Sequence[str], results_dir: str | os.PathLike, *,
                       reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Recorded results whose key matches no reported number.

    Chapters may record numbers of their own (a check on one sample, a measurement on this machine); they are
    listed beside the scorecard rather than dropped. A key that starts with a study's name yet matches no
    reported key is flagged ``suspect``: usually a typo that would otherwise silently leave a paper's number
    without our value.

    Returns:
        The rows of :func:`load_results` whose key is not reported, plus a bool column ``suspect``.
    """
    rep = load_reported() if reported is None else reported
    res = load_results(profile, results_dir)
    extra = res[~res["key"].isin(rep["key"])].reset_index(drop=True)
    studies = tuple(f"{s}/" for s in rep["study"].unique())
    extra["suspect"] = extra["key"].str.startswith(studies) & ~extra["key"].str.contains("/ours/")
    return extra


# ------------------------------------------------------------------------------ our runs -> reported keys
#: Which of our runs re-runs which row of a paper's table: ``{table: {run: row}}``; the reported key of a
#: metric is ``f"{table}/{row}/{metric}"`` (:func:`reported_key`). ``sagar2021/table3`` runs are
#: ``(preset, optimizer, "fixed" | "searched")``: FastDepth's MobileNet and sagar2021's MobileNetV2 preset,
#: trained at the fixed LR or at the LR the range test suggests; ``sagar2021/table4`` runs are batch sizes.
RUN_ROWS: dict[str, dict[Any, str]] = {
    "sagar2021/table3": {
        ("fastdepth", "sgd", "fixed"): "mobilenet-sgd",
        ("mbv2-nnconv5-narrow", "sgd", "fixed"): "mobilenetv2-sgd",
        ("fastdepth", "sgd", "searched"): "mobilenet-sgd-searched",
        ("mbv2-nnconv5-narrow", "sgd", "searched"): "mobilenetv2-sgd-searched",
        ("fastdepth", "adam", "searched"): "mobilenet-adam-searched",
        ("mbv2-nnconv5-narrow", "adam", "searched"): "mobilenetv2-adam-searched",
    },
    "sagar2021/table4": {64: "batch64", 128: "batch128"},
}


def reported_key(table: str, run: Any, metric: str, *, reported: pd.DataFrame | None = None) -> str | None:
    """The reported key our ``run`` of ``table`` is compared with for ``metric``, or ``None`` when the paper
    has no such row (a run of ours the paper did not make).

    Example: ``reported_key("sagar2021/table3", ("fastdepth", "sgd", "fixed"), "delta1")`` is
    ``"sagar2021/table3/mobilenet-sgd/delta1"``.

    Raises:
        KeyError: an unknown ``table``, or a mapped row whose key is not in the reported YAML (a typo in
            :data:`RUN_ROWS` or a metric the paper does not report for that row), naming the key.
    """
    if table not in RUN_ROWS:
        raise KeyError(f"reported_key: no run mapping for table {table!r}; tables: {sorted(RUN_ROWS)}")
    row = RUN_ROWS[table].get(run if not isinstance(run, list) else tuple(run))
    if row is None:
        return None
    key = f"{table}/{row}/{metric}"
    rep = load_reported() if reported is None else reported
    if key not in rep.index:
        close = [k for k in rep.index if k.startswith(f"{table}/{row}/")]
        raise KeyError(f"reported_key: {key!r} is not a reported key; keys of that row: {close}")
    return key


def results_frame(summary: pd.DataFrame, keys: Mapping[Any, str], *, by: str | Sequence[str]) -> pd.DataFrame:
    """Rows for the book's ``record_results`` from a :func:`depthlib.stats.summarize` table.

    Args:
        summary: output of :func:`summarize`.
        keys: ``{(group value(s), metric): reported key}``, e.g.
            ``{("MobileNetV2", "val_delta1"): reported_key("sagar2021/table3", ("mbv2-nnconv5-narrow", "sgd",
            "fixed"), "delta1")}``; a group of
            several columns is a tuple of their values followed by the metric.
        by: the group column(s) used in :func:`summarize`.

    Returns:
        DataFrame with ``key``, ``value`` (the mean), ``spread`` (the std over seeds), ``n_seeds`` and
        ``seeds``, one row per entry of ``keys``.

    Raises:
        KeyError: a ``keys`` entry that matches no summary row (naming it).
    """
    cols = [by] if isinstance(by, str) else list(by)
    index = {}
    for _, r in summary.iterrows():
        index[tuple(r[c] for c in cols) + (r["metric"],)] = r
    rows = []
    for sel, key in keys.items():
        sel = sel if isinstance(sel, tuple) else (sel,)
        if sel not in index:
            raise KeyError(f"results_frame: no summary row for {sel}; rows: {list(index)[:10]}")
        r = index[sel]
        rows.append({"key": key, "value": r["mean"], "spread": r["std"], "n_seeds": int(r["n"]),
                     "seeds": r["seeds"]})
    return pd.DataFrame(rows, columns=["key", "value", "spread", "n_seeds", "seeds"])
