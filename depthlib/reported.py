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
    "chapter_card",
    "RUN_ROWS",
    "reported_key",
    "VERDICTS",
    "DEFAULT_RTOL",
    "is_like_for_like",
    "judge",
    "load_claims",
    "judge_claims",
    "verdict_counts",
]

REPORTED_DIR = pathlib.Path(__file__).with_name("reported")

#: Columns of ``results/<profile>/<notebook>.csv`` as the book's ``record_results`` writes them.
RESULT_COLUMNS = ("key", "value", "spread", "n_seeds", "profile", "data", "seeds", "notebook")

#: Allowed values of an entry's ``kind``.
KINDS = ("result", "setting", "architecture")

_REQUIRED = ("key", "source", "configuration", "metric", "value", "units")
_OPTIONAL = ("kind", "conditions", "notebook", "not_reproducible", "notes", "study")
_CONDITIONS = ("dataset", "resolution", "device")
_FILE_FIELDS = ("study", "title", "paper", "defaults", "entries", "claims")

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
        ``not run: ...``, or that the number is a setting rather than a measurement. ``verdict`` is one of
        :data:`VERDICTS` (:func:`judge` for a measured number; the status's class for a missing one).
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
    card["verdict"] = [_row_verdict(r) for r in card.to_dict("records")]
    columns = ["key", "study", "source", "configuration", "metric", "units", "reported", "ours", "spread",
               "n_seeds", "ours_text", "profile", "data", "seeds", "notebook", "dataset", "resolution", "device",
               "status", "verdict", "notes", "kind"]
    return card[columns]


# ------------------------------------------------------------------------------ verdicts
#: What a reader is told about a reported number (the scorecard's ``verdict``) or a claim (:func:`judge_claims`).
#: The first three are verdicts on a measurement of ours; the others say why there is none to judge.
VERDICTS = ("reproduced", "not resolved at this profile", "contradicted", "needs the paper profile",
            "not reproducible here", "no chapter yet", "input of the study", "not run")

#: Relative tolerance of "reproduced" when a claim gives none: 5 % of the paper's value (or its printed precision,
#: or two standard deviations over our seeds, whichever is wider; see :func:`judge`).
DEFAULT_RTOL = 0.05


def is_like_for_like(profile: Any, data: Any) -> bool:
    """Whether our number can be compared with the paper's as a measurement of the same thing.

    True for the ``paper`` profile (the paper's protocol and data) and for numbers a chapter recorded with a
    ``data`` that starts with ``"architecture"`` (parameter and MAC counts, sizes: properties of the network that
    no training data changes). A quick- or smoke-profile accuracy trained on procedural scenes is not: it can
    show a trend, never confirm or refute the paper's value.
    """
    return profile == "paper" or (isinstance(data, str) and data.startswith("architecture"))


def _printed_half_unit(value: float) -> float:
    """Half a unit of the last digit the paper printed: 0.0005 for 0.604, 50,000 for 3.1 M (as ``3100000``)."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = repr(float(value)).split("e")[0].replace("-", "").replace(".", "").strip("0") or "0"
    exponent = math.floor(math.log10(abs(value)))
    return 0.5 * 10 ** (exponent - len(digits) + 1)


def judge(reported: float, ours: float, spread: float = math.nan, *, like_for_like: bool,
          rtol: float = DEFAULT_RTOL) -> str:
    """The verdict on one of our numbers against the paper's.

    Args:
        reported: the paper's value.
        ours: our value (a mean over seeds).
        spread: our standard deviation over seeds (NaN for one seed).
        like_for_like: :func:`is_like_for_like` of our number.
        rtol: relative tolerance.

    Returns:
        ``"not resolved at this profile"`` when the comparison is not like for like; else ``"reproduced"`` when
        ``|ours - reported|`` is within the widest of ``rtol * |reported|``, half a unit of the paper's last
        printed digit and ``2 * spread``, and ``"contradicted"`` when it is not.
    """
    if not (math.isfinite(reported) and math.isfinite(ours)):
        raise ValueError(f"judge: reported {reported!r} and ours {ours!r} must be finite numbers")
    if rtol < 0:
        raise ValueError(f"judge: rtol must be >= 0, got {rtol!r}")
    if not like_for_like:
        return "not resolved at this profile"
    tolerance = max(rtol * abs(reported), _printed_half_unit(reported),
                    2 * spread if spread is not None and math.isfinite(spread) else 0.0)
    return "reproduced" if abs(ours - reported) <= tolerance else "contradicted"


def _row_verdict(row: dict) -> str:
    if _text(row["not_reproducible"]):
        return "not reproducible here"
    if row["ours"] is not None and not pd.isna(row["ours"]):
        return judge(float(row["reported"]), float(row["ours"]), float(row["spread"]) if not pd.isna(row["spread"])
                     else math.nan, like_for_like=is_like_for_like(row["profile"], row["data"]))
    if row["kind"] != "result":
        return "input of the study"
    status = str(row["status"])
    if status.startswith("needs the paper profile") or status.startswith("not recorded"):
        return "needs the paper profile"
    if status.startswith("no chapter"):
        return "no chapter yet"
    return "not run"


def verdict_counts(card: pd.DataFrame) -> pd.DataFrame:
    """How many reported results of each study have each verdict: a study x :data:`VERDICTS` table of counts
    (settings and architecture inputs left out), for the book's front page and the scorecard."""
    results = card[card["kind"] == "result"]
    counts = results.pivot_table(index="study", columns="verdict", values="key", aggfunc="count", fill_value=0)
    return counts.reindex(columns=[v for v in VERDICTS if v != "input of the study"], fill_value=0).astype(int)


_CLAIM_FIELDS = ("id", "chapter", "claim", "keys", "better", "worse", "higher_is_better", "rtol", "margin",
                 "measured_by", "notes")


def load_claims(directory: str | os.PathLike | None = None) -> pd.DataFrame:
    """The studies' headline claims, from the ``claims`` list of each ``reported/<study>.yaml``.

    A claim is what a chapter sets out to check, in one sentence of the paper's, and how to check it from
    recorded results, in one of two forms:

    - ``keys: [k1, k2, ...]``: reported numbers the chapter measures; the claim holds when every one is
      ``reproduced`` (:func:`judge`, with the claim's ``rtol`` or :data:`DEFAULT_RTOL`);
    - ``better: k1``, ``worse: k2`` (and ``higher_is_better``, default true): the paper found k1 better than
      k2; ours are tested with Welch's t-test over seeds (:func:`judge_claims`). A measurement without seeds
      (a latency, the median of interleaved repeats) gives a ``margin`` instead: the relative difference beyond
      which one of ours counts as really larger than the other.

    ``measured_by: {reported key: our key}`` compares a reported number with a result a chapter recorded under
    a key of its own (FastDepth's released model scored on one sample, beside the paper's test-set mean).

    Returns:
        DataFrame indexed by ``id`` with columns ``id study chapter claim keys better worse higher_is_better
        rtol notes``.

    Raises:
        ValueError: an unknown field, a missing ``id``/``chapter``/``claim``, neither or both forms, a key
            that is not a reported key, or an id used twice (each naming the file and the claim).
    """
    directory = pathlib.Path(directory) if directory is not None else REPORTED_DIR
    reported = load_reported(directory)
    rows = []
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for i, claim in enumerate(doc.get("claims") or []):
            where = f"{path} claim {i}"
            if not isinstance(claim, dict):
                raise ValueError(f"{where}: a claim must be a mapping, got {claim!r}")
            unknown = set(claim) - set(_CLAIM_FIELDS)
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(_CLAIM_FIELDS)}")
            missing = [f for f in ("id", "chapter", "claim") if not isinstance(claim.get(f), str) or not claim[f]]
            if missing:
                raise ValueError(f"{where}: claim {claim.get('id')!r} lacks field(s) {missing}")
            by_keys = claim.get("keys") is not None
            by_pair = claim.get("better") is not None or claim.get("worse") is not None
            if by_keys == by_pair:
                raise ValueError(f"{where}: claim {claim['id']!r} needs either 'keys' or 'better' and 'worse'")
            keys = list(claim["keys"]) if by_keys else [claim.get("better"), claim.get("worse")]
            for key in keys:
                if key not in reported.index:
                    raise ValueError(f"{where}: claim {claim['id']!r} names {key!r}, which is not a reported key")
            measured_by = claim.get("measured_by") or {}
            if not isinstance(measured_by, dict) or not set(measured_by) <= set(keys) or \
                    not all(isinstance(v, str) and v for v in measured_by.values()):
                raise ValueError(f"{where}: claim {claim['id']!r}: measured_by must map some of its keys {keys} "
                                 f"to the keys of our results, got {measured_by!r}")
            margin = claim.get("margin")
            if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0
                                       or by_keys):
                raise ValueError(f"{where}: claim {claim['id']!r}: margin must be a number >= 0 of a better/worse "
                                 f"claim, got {margin!r}")
            rtol = claim.get("rtol", DEFAULT_RTOL)
            if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or rtol < 0:
                raise ValueError(f"{where}: claim {claim['id']!r} has rtol {rtol!r}; expected a number >= 0")
            rows.append({"id": claim["id"], "study": doc["study"], "chapter": claim["chapter"], "claim": claim["claim"],
                         "keys": keys if by_keys else None, "better": claim.get("better"),
                         "worse": claim.get("worse"), "higher_is_better": bool(claim.get("higher_is_better", True)),
                         "rtol": float(rtol), "margin": None if margin is None else float(margin),
                         "measured_by": measured_by, "notes": claim.get("notes")})
    frame = pd.DataFrame(rows, columns=list(_CLAIM_FIELDS[:3]) + ["study"] + list(_CLAIM_FIELDS[3:]))
    twice = frame["id"][frame["id"].duplicated()].tolist()
    if twice:
        raise ValueError(f"claims: id(s) {twice} used twice")
    return frame.set_index("id", drop=False)


def _value_text(value: float, spread: float = math.nan, n: float = 1, units: Any = None) -> str:
    """A number as a claim box prints it: counts of weights and MACs in millions, the rest by :func:`mean_spread`
    (four significant digits without a spread), with its units."""
    if value is None or pd.isna(value):
        return "–"
    units = units if _text(units) and units != "fraction" else ""
    if units in ("weights", "parameters", "FLOPs", "MACs") and abs(value) >= 1e5:
        value, spread, units = value / 1e6, spread / 1e6, f"M {units}"
    text = mean_spread(value, spread, n, digits=4)
    return f"{text} {units}".strip()


_REASONS = {
    "reproduced": "within {rtol:.0%} of the paper (or its printed precision, or two standard deviations over our seeds)",
    "contradicted": "farther from the paper than {rtol:.0%}, its printed precision and two standard deviations over "
                    "our seeds, on a like-for-like measurement",
    "not resolved at this profile": "measured on this profile's data, not with the paper's protocol and data: only "
                                    "the paper profile compares like for like",
    "needs the paper profile": "only the paper profile measures it",
    "not reproducible here": "it needs hardware or data this project cannot have",
    "no chapter yet": "no chapter measures it yet",
    "not run": "the chapter that measures it has not run with this profile",
}


def _labels(keys: pd.Series, metrics: pd.Series) -> list[str]:
    """Short names of a claim's numbers: the metric, or where two share one, the parts of their keys that differ
    (``size-fp32``, ``sparsity-0.50 params``)."""
    if metrics.is_unique:
        return list(metrics)
    parts = [k.split("/") for k in keys]
    width = min(len(p) for p in parts)
    differ = [i for i in range(width) if len({p[i] for p in parts}) > 1]
    labels = []
    for p, metric in zip(parts, metrics):
        label = " ".join(p[i] for i in differ)
        labels.append(label if differ and differ[-1] == len(p) - 1 else f"{label} {metric}".strip())
    return labels


def judge_claims(card: pd.DataFrame, claims: pd.DataFrame | None = None, *, chapter: str | None = None,
                 results: pd.DataFrame | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Each claim's verdict from a :func:`scorecard`: what the paper claimed, what we found, and whether it holds.

    Args:
        card: a :func:`scorecard` table (every reported key, with ours where recorded).
        claims: :func:`load_claims` (default).
        chapter: only the claims of this chapter.
        results: :func:`load_results` of the card's profiles; needed only by claims with ``measured_by``.
        alpha: significance level of the test of a ``better``/``worse`` claim.

    Returns:
        One row per claim: ``id study chapter claim paper ours profile seeds data verdict why``. ``paper`` and ``ours``
        are the numbers as text (ours with its spread over seeds); ``verdict`` is one of :data:`VERDICTS`:

        - ``keys`` claims: ``contradicted`` when any number is, ``reproduced`` when all are, else the most
          telling reason none could be judged (not like for like, needs the paper profile, ...);
        - ``better``/``worse`` claims: ``reproduced`` when our difference has the paper's sign and Welch's
          t-test (from our means, spreads and seed counts) gives p < ``alpha``; ``contradicted`` when it has
          the other sign at p < ``alpha``; ``not resolved at this profile`` otherwise. With a ``margin``, the
          larger of ours must exceed the smaller by more than it instead of the test.
    """
    from scipy import stats

    claims = load_claims() if claims is None else claims
    if chapter is not None:
        claims = claims[claims["chapter"] == chapter]
    rows_by_key = card.set_index("key")
    out = []
    for claim in claims.to_dict("records"):
        keys = claim["keys"] or [claim["better"], claim["worse"]]
        missing = [k for k in keys if k not in rows_by_key.index]
        if missing:
            raise KeyError(f"judge_claims: claim {claim['id']!r} names {missing}, not in the scorecard")
        rows = rows_by_key.loc[keys].reset_index()
        for i, key in enumerate(keys):
            ours_key = (claim.get("measured_by") or {}).get(key)
            if ours_key is None:
                continue
            if results is None:
                raise ValueError(f"judge_claims: claim {claim['id']!r} is measured by {ours_key!r}: pass results=")
            found = results[results["key"] == ours_key]
            for column in ("ours", "spread", "n_seeds", "profile", "data", "seeds"):
                rows.loc[i, column] = found.iloc[0]["value" if column == "ours" else column] if len(found) else \
                    (math.nan if column in ("ours", "spread", "n_seeds") else None)
            rows.loc[i, "ours_text"] = mean_spread(rows.loc[i, "ours"], rows.loc[i, "spread"], rows.loc[i, "n_seeds"])
            if not len(found):
                rows.loc[i, "verdict"] = "not run"
        profiles = sorted({str(p) for p in rows["profile"].dropna()})
        rows["metric"] = _labels(rows["key"], rows["metric"])
        result = {"id": claim["id"], "study": claim["study"], "chapter": claim["chapter"], "claim": claim["claim"],
                  "paper": "; ".join(f"{r['metric']} {_value_text(r['reported'], units=r['units'])}"
                                     for _, r in rows.iterrows()),
                  "ours": "; ".join(f"{r['metric']} {_value_text(r['ours'], r['spread'], r['n_seeds'], r['units'])}"
                                    for _, r in rows.iterrows()),
                  "profile": ", ".join(profiles) or "–",
                  "seeds": "; ".join(sorted({str(v) for v in rows["seeds"].dropna()})) or "–",
                  "data": "; ".join(sorted({str(v) for v in rows["data"].dropna()})) or "–"}
        if claim["keys"] is not None:
            verdicts = [judge(r["reported"], r["ours"], r["spread"], like_for_like=is_like_for_like(r["profile"], r["data"]),
                              rtol=claim["rtol"]) if pd.notna(r["ours"]) and r["verdict"] != "not reproducible here"
                        else r["verdict"] for _, r in rows.iterrows()]
            if "contradicted" in verdicts:
                verdict = "contradicted"
            elif all(v == "reproduced" for v in verdicts):
                verdict = "reproduced"
            else:
                verdict = next(v for v in VERDICTS if v in verdicts and v != "reproduced")
            ratios = [f"{r['metric']} {r['ours'] / r['reported']:.2f}x the paper's" for _, r in rows.iterrows()
                      if pd.notna(r["ours"]) and r["reported"] != 0]
            why = _REASONS[verdict].format(rtol=claim["rtol"]) + (f" (ours: {', '.join(ratios)})" if ratios else "")
        else:
            a, b = rows.iloc[0], rows.iloc[1]
            sign = 1.0 if claim["higher_is_better"] else -1.0
            result["paper"] = f"{_value_text(a['reported'], units=a['units'])} against " \
                              f"{_value_text(b['reported'], units=b['units'])}"
            result["ours"] = f"{_value_text(a['ours'], a['spread'], a['n_seeds'], a['units'])} against " \
                             f"{_value_text(b['ours'], b['spread'], b['n_seeds'], b['units'])}"
            if pd.isna(a["ours"]) or pd.isna(b["ours"]):
                verdict = a["verdict"] if pd.isna(a["ours"]) else b["verdict"]
                why = "not measured: " + ", ".join(r["key"] for r in (a, b) if pd.isna(r["ours"]))
            elif claim.get("margin") is not None and not pd.isna(claim["margin"]):
                low, high = sorted([abs(a["ours"]), abs(b["ours"])])
                diff = sign * (a["ours"] - b["ours"])
                beyond = low > 0 and high / low - 1 > claim["margin"]
                verdict = ("reproduced" if diff > 0 else "contradicted") if beyond else "not resolved at this profile"
                why = (f"ours are {high / low:.2f}x apart " if low > 0 else "ours differ ") + \
                      ("in the paper's direction" if diff > 0 else "against the paper's direction") + \
                      f" (a difference counts beyond {claim['margin']:.0%})"
                if any(r["verdict"] == "not reproducible here" for r in (a, b)):
                    why += "; measured on this machine, not on the paper's device"
            elif min(a["n_seeds"], b["n_seeds"]) < 2 or pd.isna(a["spread"]) or pd.isna(b["spread"]):
                verdict, why = "not resolved at this profile", "one seed per arm: no test possible"
            else:
                diff = sign * (a["ours"] - b["ours"])
                if a["spread"] == 0 and b["spread"] == 0:
                    p = 0.0 if diff != 0 else 1.0
                else:
                    p = float(stats.ttest_ind_from_stats(a["ours"], a["spread"], int(a["n_seeds"]), b["ours"],
                                                         b["spread"], int(b["n_seeds"]), equal_var=False).pvalue)
                if p < alpha:
                    verdict = "reproduced" if diff > 0 else "contradicted"
                else:
                    verdict = "not resolved at this profile"
                why = (f"our difference has the paper's sign{'' if diff > 0 else ' reversed'}; Welch p = {p:.2g} "
                       f"over {int(a['n_seeds'])} and {int(b['n_seeds'])} seeds")
                if not all(is_like_for_like(r["profile"], r["data"]) for r in (a, b)):
                    why += f"; a ranking on this profile's data ({result['profile']}), not the paper's"
        if _text(claim.get("notes")):
            why += f"; {claim['notes']}"
        result.update(verdict=verdict, why=why)
        out.append(result)
    return pd.DataFrame(out, columns=["id", "study", "chapter", "claim", "paper", "ours", "profile", "seeds", "data",
                                      "verdict", "why"])


def study_card(card: pd.DataFrame, study: str, *, show_inputs: bool = False) -> pd.DataFrame:
    """One study's rows of a :func:`scorecard`, as the scorecard chapter shows them (indexed by the key without the
    study's prefix).

    The columns a reader compares come first and the detail last, so the table fits a laptop's page: ``source``,
    ``reported`` and ``ours`` (each with its units; ours with its spread over seeds), ``verdict``, and ``run``
    (profile, seeds and data behind our number, or why there is none).

    Args:
        card: a :func:`scorecard` table.
        study: a study key of ``card["study"]``.
        show_inputs: also list the study's settings and architecture numbers, not only its results.
    """
    if study not in set(card["study"]):
        raise KeyError(f"study_card: no study {study!r}; studies: {sorted(set(card['study']))}")
    rows = card[(card["study"] == study) & (show_inputs | (card["kind"] == "result"))]
    return _card_view(rows, prefix=f"{study}/")


def chapter_card(card: pd.DataFrame, notebook: str, *, keys: Iterable[str] = ()) -> pd.DataFrame:
    """The rows of a :func:`scorecard` that chapter ``notebook`` recorded (plus ``keys``, reported numbers it
    discusses without measuring), laid out like :func:`study_card`, indexed by the full key."""
    keys = list(keys)
    missing = [k for k in keys if k not in set(card["key"])]
    if missing:
        raise KeyError(f"chapter_card: {missing} are not reported keys")
    rows = card[(card["notebook"] == notebook) | card["key"].isin(keys)]
    return _card_view(rows, prefix="")


def _card_view(rows: pd.DataFrame, *, prefix: str) -> pd.DataFrame:
    run = [(f"{r['profile']} profile" + (f", seeds {r['seeds']}" if _text(r["seeds"]) and r["seeds"] != "-" else "")
            + f"; {r['data']}") if pd.notna(r["ours"]) else r["status"] for r in rows.to_dict("records")]
    return pd.DataFrame({
        "source": rows["source"].to_numpy(),
        "reported": [_value_text(v, units=u) for v, u in zip(rows["reported"], rows["units"])],
        "ours (mean ± std over seeds)": [_value_text(v, s, n, u) for v, s, n, u in
                                         zip(rows["ours"], rows["spread"], rows["n_seeds"], rows["units"])],
        "verdict": rows["verdict"].to_numpy(),
        "run": run,
    }, index=pd.Index(rows["key"].str.removeprefix(prefix).to_numpy(), name="number"))


def unreported_results(profile: str | Sequence[str], results_dir: str | os.PathLike, *,
                       reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Recorded results whose key matches no reported number.

    Chapters may record numbers of their own (a check on one sample, a measurement on this machine); they are
    listed beside the scorecard rather than dropped. A key that starts with a study's name yet matches no
    reported key is flagged ``suspect``: usually a typo that would otherwise silently leave a paper's number
    without our value.

    Returns:
        The rows of :func:`load_results` whose key is not reported, plus a bool column ``suspect`` and
        ``ours_text`` (the value by :func:`depthlib.stats.mean_spread`).
    """
    rep = load_reported() if reported is None else reported
    res = load_results(profile, results_dir)
    extra = res[~res["key"].isin(rep["key"])].reset_index(drop=True)
    studies = tuple(f"{s}/" for s in rep["study"].unique())
    extra["suspect"] = extra["key"].str.startswith(studies) & ~extra["key"].str.contains("/ours/")
    extra["ours_text"] = [mean_spread(v, s, n) for v, s, n in zip(extra["value"], extra["spread"], extra["n_seeds"])]
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


def reported_rows(table: str, *, reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """A reported table laid out as the paper prints it: one row per configuration, one column per metric.

    Keys ``<table>/<row>/<metric>`` (``"zhang2021/table1/ours/si-rmse"``) give row ``ours`` and column
    ``si-rmse``; deeper keys keep the rest of their path in the row name.

    Args:
        table: the key prefix, e.g. ``"zhang2021/table2"``.
        reported: the reported table (default :func:`load_reported`).

    Returns:
        DataFrame of values indexed by row, in the YAML's order; a metric a row lacks is NaN.

    Raises:
        KeyError: no reported key starts with ``table + "/"``.
    """
    rep = load_reported() if reported is None else reported
    keys = [k for k in rep.index if k.startswith(f"{table}/")]
    if not keys:
        raise KeyError(f"reported_rows: no reported key starts with {table + '/'!r}")
    cells: dict[str, dict[str, float]] = {}
    for key in keys:
        row, metric = key[len(table) + 1:].rsplit("/", 1) if "/" in key[len(table) + 1:] else (key[len(table) + 1:], "value")
        cells.setdefault(row, {})[metric] = float(rep.loc[key, "value"])
    frame = pd.DataFrame.from_dict(cells, orient="index")
    frame.index.name = "row"
    return frame


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
