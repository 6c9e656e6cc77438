"""Statistics over seeds: which differences between configurations survive the seed-to-seed noise.

- :func:`summarize`: mean, spread and a t-interval over seeds of each metric, per configuration.
- :func:`compare`: Welch's t-test or a bootstrap interval for each difference, with the Benjamini-Hochberg
  correction over the comparisons of a table.
- :func:`mean_spread`: the one formatter of "mean ± std" used by the chapters and the scorecard.
- :func:`spread_table`: a chapter's table of "mean ± std" cells, one row per configuration.
- :func:`survival_text`: one sentence per table of :func:`compare` results: which claimed improvements
  survive the seeds, which go the other way, how many are within the noise.
- :func:`rank_agreement`: Kendall's tau between our ranking of configurations and a paper's, with its
  uncertainty over seeds (a bootstrap of the seeds within each configuration).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["summarize", "compare", "mean_spread", "spread_table", "survival_text", "rank_agreement"]


def _groups(df: pd.DataFrame, by: str | Sequence[str]) -> list[str]:
    cols = [by] if isinstance(by, str) else list(by)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"no column(s) {missing} to group by; columns: {list(df.columns)}")
    return cols


def summarize(df: pd.DataFrame, by: str | Sequence[str], metrics: str | Sequence[str], *,
              seed: str = "seed", confidence: float = 0.95) -> pd.DataFrame:
    """Mean and spread over seeds of each metric, per group.

    Args:
        df: one row per run (e.g. :attr:`GridResult.table`).
        by: the column(s) naming a configuration (everything but the seed).
        metrics: the metric column(s).
        seed: the seed column (its values are listed in ``seeds``).
        confidence: level of the t-interval of the mean.

    Returns:
        One row per (group, metric): the group columns, ``metric``, ``mean``, ``std`` (sample standard
        deviation, NaN for one seed), ``n``, ``ci_low``, ``ci_high`` (Student-t interval of the mean, NaN for
        one seed) and ``seeds`` (``"0,1,2"``).
    """
    from scipy import stats

    cols = _groups(df, by)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        if m not in df.columns:
            raise KeyError(f"summarize: no metric column {m!r}; columns: {list(df.columns)}")
    rows = []
    for key, part in df.groupby(cols, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        seeds = ",".join(str(s) for s in part[seed]) if seed in part else ""
        for m in metrics:
            values = part[m].astype(float).dropna().to_numpy()
            n = len(values)
            mean = float(values.mean()) if n else math.nan
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            if n > 1:
                half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
                low, high = mean - half, mean + half
            else:
                low = high = math.nan
            rows.append({**dict(zip(cols, key)), "metric": m, "mean": mean, "std": std, "n": n,
                         "ci_low": low, "ci_high": high, "seeds": seeds})
    return pd.DataFrame(rows)


def _welch(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float, float]:
    from scipy import stats

    if np.std(a) == 0 and np.std(b) == 0:
        # identical runs (a deterministic CPU run repeated): no noise to test against
        return math.nan, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
    return float(res.pvalue), float(ci.low), float(ci.high)


def _bootstrap(a: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int
               ) -> tuple[float, float, float]:
    from scipy import stats

    def diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.mean(axis=axis) - y.mean(axis=axis)

    # percentile intervals: BCa needs a jackknife, which is degenerate with 2-3 seeds per arm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap((a, b), diff, n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    # a two-sided bootstrap p-value: how often the resampled difference falls on the other side of zero
    dist = res.bootstrap_distribution
    p = float(min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean())))
    return p, low, high


def compare(df: pd.DataFrame, by: str | Sequence[str], metric: str, *, baseline: Any = None,
            pairs: Sequence[tuple[Any, Any]] | None = None, method: str = "welch", alpha: float = 0.05,
            confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Which differences between configurations survive the seed-to-seed noise.

    For each compared pair ``(a, b)`` of groups, the difference of the means of ``metric`` over seeds with a
    confidence interval and a p-value, by Welch's unequal-variance t-test (``method="welch"``) or a
    percentile bootstrap of the difference of means (``"bootstrap"``). The p-values of the table are
    corrected for multiple comparisons with Benjamini-Hochberg (:func:`scipy.stats.false_discovery_control`);
    a difference *survives* when its corrected p-value is below ``alpha`` (and, for the bootstrap, its
    interval excludes zero). With one seed in an arm nothing can be said: ``verdict`` says so.

    Args:
        df: one row per run.
        by: the configuration column(s); a group is a value (or tuple of values) of them.
        metric: the metric column.
        baseline: compare every other group with this one; default (and without ``pairs``): all pairs.
        pairs: explicit ``(a, b)`` pairs of group values.
        method: ``"welch"`` or ``"bootstrap"``.
        alpha: false-discovery rate of the correction.
        confidence: level of the intervals.
        n_resamples, seed: of the bootstrap.

    Returns:
        One row per pair: ``a``, ``b``, ``mean_a``, ``mean_b``, ``n_a``, ``n_b``, ``diff`` (``mean_a -
        mean_b``), ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted``, ``survives`` (bool) and ``verdict``
        (a sentence for the chapter's table).
    """
    from scipy import stats

    if method not in ("welch", "bootstrap"):
        raise ValueError(f"compare: method must be 'welch' or 'bootstrap', got {method!r}")
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise ValueError(f"compare: alpha and confidence must be in (0, 1), got {alpha!r}, {confidence!r}")
    cols = _groups(df, by)
    if metric not in df.columns:
        raise KeyError(f"compare: no metric column {metric!r}; columns: {list(df.columns)}")
    samples: dict[Any, np.ndarray] = {}
    for key, part in df.groupby(cols, sort=False, dropna=False):
        key = key[0] if isinstance(key, tuple) and len(cols) == 1 else key
        samples[key] = part[metric].astype(float).dropna().to_numpy()
    if pairs is None:
        names = list(samples)
        if baseline is not None:
            if baseline not in samples:
                raise KeyError(f"compare: baseline {baseline!r} is not a group; groups: {names}")
            pairs = [(g, baseline) for g in names if g != baseline]
        else:
            pairs = list(itertools.combinations(names, 2))
    rows = []
    for a, b in pairs:
        for g in (a, b):
            if g not in samples:
                raise KeyError(f"compare: {g!r} is not a group of {cols}; groups: {list(samples)}")
        xa, xb = samples[a], samples[b]
        row = {"a": a, "b": b, "mean_a": float(xa.mean()) if len(xa) else math.nan,
               "mean_b": float(xb.mean()) if len(xb) else math.nan, "n_a": len(xa), "n_b": len(xb)}
        row["diff"] = row["mean_a"] - row["mean_b"]
        if min(len(xa), len(xb)) < 2:
            p, low, high = math.nan, math.nan, math.nan
        elif method == "welch":
            p, low, high = _welch(xa, xb, confidence)
        else:
            p, low, high = _bootstrap(xa, xb, confidence, n_resamples, seed)
        row.update(ci_low=low, ci_high=high, p_value=p)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["a", "b", "mean_a", "mean_b", "n_a", "n_b", "diff", "ci_low", "ci_high",
                                      "p_value"])
    tested = out["p_value"].notna()
    out["p_adjusted"] = math.nan
    if tested.any():
        out.loc[tested, "p_adjusted"] = stats.false_discovery_control(out.loc[tested, "p_value"].to_numpy())
    excludes_zero = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    out["survives"] = tested & (out["p_adjusted"] < alpha) & (excludes_zero if method == "bootstrap" else True)
    verdicts = []
    for _, r in out.iterrows():
        if min(r["n_a"], r["n_b"]) < 2:
            verdicts.append("one seed in an arm: no test possible, run more seeds")
        elif pd.isna(r["p_value"]):
            verdicts.append("no spread between seeds (identical runs): the test is undefined")
        elif r["survives"]:
            verdicts.append(f"survives: {r['a']} {'higher' if r['diff'] > 0 else 'lower'} "
                            f"(adjusted p = {r['p_adjusted']:.2g})")
        else:
            verdicts.append(f"within seed noise (adjusted p = {r['p_adjusted']:.2g})")
    out["verdict"] = verdicts
    return out


def mean_spread(mean: float, std: float, n: int | float, digits: int = 3) -> str:
    """``"0.741 ± 0.012"``: the one way the book prints a mean over seeds (chapters' tables and the scorecard).

    With two seeds or more and a spread, the digits are the ones the spread justifies: the spread to two
    significant digits and the mean to the same decimal place (``0.3094 ± 0.0201`` is ``"0.309 ± 0.020"``,
    ``12.34 ± 1.2`` is ``"12.3 ± 1.2"``). Without a spread, ``digits`` significant digits for the mean (none after
    the point from ``10 ** digits`` up to a million, exponent notation beyond). ``""`` for a missing mean.

    Examples: ``mean_spread(0.7234, 0.0121, 2) == "0.723 ± 0.012"``; ``mean_spread(1234.5, nan, 1) == "1234"``;
    ``mean_spread(3.5e7, nan, 1) == "3.5e+07"``.
    """
    if mean is None or pd.isna(mean):
        return ""
    mean = float(mean)
    if n is not None and not pd.isna(n) and n > 1 and std is not None and not pd.isna(std) and math.isfinite(std):
        std = abs(float(std))
        if std > 0:
            decimals = max(0, 1 - math.floor(math.log10(std)))
            if decimals > 0 or abs(mean) < 1e6:
                return f"{mean:.{decimals}f} ± {std:.{decimals}f}"
        return f"{mean:.{digits}g} ± {std:.2g}"
    return f"{mean:.0f}" if 10 ** digits <= abs(mean) < 1e6 else f"{mean:.{digits}g}"


def spread_table(df: pd.DataFrame, by: str | Sequence[str], metrics: dict[str, str], *, seed: str = "seed"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`summarize` ``df`` and lay the result out as a chapter shows it: one row per configuration, one
    column per metric, cells formatted by :func:`mean_spread`.

    Args:
        df: one row per run.
        by: the configuration column(s).
        metrics: ``{column title: metric column}``, in the order of the table's columns.
        seed: the seed column.

    Returns:
        ``(summary, view)``: the :func:`summarize` table and the formatted view (indexed by ``by``).
    """
    cols = _groups(df, by)
    summary = summarize(df, by=cols, metrics=list(metrics.values()), seed=seed)
    titles = {column: title for title, column in metrics.items()}
    cells: dict[Any, dict[str, str]] = {}
    for r in summary.to_dict("records"):
        key = tuple(r[c] for c in cols)
        cells.setdefault(key if len(cols) > 1 else key[0], {})[titles[r["metric"]]] = mean_spread(r["mean"], r["std"],
                                                                                                 r["n"])
    view = pd.DataFrame.from_dict(cells, orient="index")[list(metrics)]
    view.index = pd.MultiIndex.from_tuples(view.index, names=cols) if len(cols) > 1 else view.index.rename(cols[0])
    return summary, view


def survival_text(verdicts: pd.DataFrame, *, metric: str = "metric", lower_is_better: bool = True) -> str:
    """What a table of :func:`compare` results says, in one Markdown sentence: the claimed improvements
    (``a`` better than ``b``) that survive the seeds, those that survive the *other* way (``a`` worse), and
    how many comparisons are within the noise or untested.

    Args:
        verdicts: rows of :func:`compare` (``a``, ``b``, ``diff``, ``survives``, ``p_adjusted``), optionally
            stacked over several metrics with the metric's name in column ``metric``.
        metric: the column naming each row's metric (absent: no metric is named).
        lower_is_better: the direction of an improvement (RMSE, WHDR: lower).

    Returns:
        e.g. ``"2 of 9 comparisons survive: **mc -> diw** better than **diw** on WHDR (adjusted p = 0.004)
        ...; 1 survives the other way: ...; the other 6 are within the seed noise."``

    Raises:
        KeyError: a column of :func:`compare`'s result is missing (names it).
    """
    missing = [c for c in ("a", "b", "diff", "survives", "p_adjusted") if c not in verdicts.columns]
    if missing:
        raise KeyError(f"survival_text: columns {missing} missing; pass the result of depthlib.stats.compare")
    total = len(verdicts)
    if total == 0:
        return "No comparison was made."
    better, worse = [], []
    for _, r in verdicts[verdicts["survives"].astype(bool)].iterrows():
        on = f" on {r[metric]}" if metric in verdicts.columns else ""
        improved = (r["diff"] < 0) == lower_is_better
        text = (f"**{r['a']}** {'better' if improved else 'worse'} than **{r['b']}**{on} "
                f"(adjusted p = {r['p_adjusted']:.2g})")
        (better if improved else worse).append(text)
    untested = int(verdicts["p_adjusted"].isna().sum())
    rest = total - len(better) - len(worse) - untested
    parts = [f"{len(better)} of {total} comparisons survive the seeds as the paper claims"
             + (": " + "; ".join(better) if better else "")]
    if worse:
        parts.append(f"{len(worse)} survive{'s' if len(worse) == 1 else ''} the other way: " + "; ".join(worse))
    if rest:
        parts.append(f"{'the other ' if better or worse else ''}{rest} "
                     f"{'is' if rest == 1 else 'are'} within the seed noise")
    if untested:
        parts.append(f"{untested} cannot be tested (one seed, or no spread)")
    return "; ".join(parts) + "."


def rank_agreement(df: pd.DataFrame, by: str, metric: str, reference: Any, *, higher_is_better: bool = False,
                   seed: str = "seed", n_resamples: int = 2000, confidence: float = 0.95, random_state: int = 0
                   ) -> tuple[dict[str, Any], pd.DataFrame]:
    """How well our ranking of configurations agrees with a reference ranking (a paper's table).

    Our ranking orders the configurations by their mean of ``metric`` over seeds; Kendall's tau-b
    (:func:`scipy.stats.kendalltau`) compares it with the order of ``reference``. Its uncertainty over seeds:
    each bootstrap resample draws, for every configuration independently, as many runs as it has with
    replacement, recomputes the means and tau; the interval is the percentile interval of those taus.

    Args:
        df: one row per run, with columns ``by``, ``metric`` and ``seed``.
        by: the configuration column.
        metric: the column ranked.
        reference: ``{configuration: the paper's value}`` (a dict or Series); only configurations present in
            both are ranked.
        higher_is_better: rank 1 is the largest value (delta1) instead of the smallest (RMSE).
        n_resamples: bootstrap resamples (0: no interval).
        confidence: of the interval.
        random_state: seed of the bootstrap's generator (the result is deterministic).

    Returns:
        ``(summary, ranks)``: ``summary`` has ``tau``, ``p_value`` (scipy's, no seeds involved), ``low``,
        ``high`` (the bootstrap interval; NaN without resamples or with one run per configuration),
        ``p_agree`` (fraction of resamples with tau > 0), ``n`` (configurations ranked) and ``n_runs``;
        ``ranks`` is indexed by configuration with ``mean``, ``std``, ``n`` (runs), ``ours`` (rank),
        ``paper`` (the reference's value) and ``paper_rank``, sorted by ``paper_rank``.

    Raises:
        KeyError: a missing column. ValueError: fewer than 3 configurations in both, a non-finite value, or
            ``n_resamples`` < 0, ``confidence`` outside (0, 1).
    """
    from scipy.stats import kendalltau

    cols = _groups(df, [by, metric, seed])
    if int(n_resamples) < 0 or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"rank_agreement: n_resamples must be >= 0 and confidence in (0, 1), got "
                         f"{n_resamples!r}, {confidence!r}")
    ref = pd.Series(dict(reference) if not isinstance(reference, pd.Series) else reference, dtype=float)
    runs = df[cols].dropna(subset=[metric])
    common = [c for c in ref.index if c in set(runs[by])]
    if len(common) < 3:
        raise ValueError(f"rank_agreement: {len(common)} configuration(s) in both our runs and the reference "
                         f"(ours: {sorted(map(str, set(runs[by])))}; reference: {sorted(map(str, ref.index))}); "
                         "a ranking needs at least 3")
    if not np.isfinite(ref[common].to_numpy()).all():
        raise ValueError(f"rank_agreement: non-finite reference values {ref[common].to_dict()}")
    values = [runs.loc[runs[by] == c, metric].to_numpy(dtype=float) for c in common]
    sign = -1.0 if higher_is_better else 1.0
    paper = ref[common].to_numpy() * sign

    def tau_of(means: np.ndarray) -> float:
        return float(kendalltau(means * sign, paper).statistic)

    means = np.array([v.mean() for v in values])
    tau = tau_of(means)
    p_value = float(kendalltau(means * sign, paper).pvalue)
    low = high = p_agree = math.nan
    if n_resamples and any(len(v) > 1 for v in values):
        rng = np.random.default_rng(random_state)
        taus = np.array([tau_of(np.array([rng.choice(v, size=len(v), replace=True).mean() for v in values]))
                         for _ in range(int(n_resamples))])
        taus = taus[np.isfinite(taus)]
        alpha = (1.0 - float(confidence)) / 2.0
        low, high = (float(q) for q in np.quantile(taus, [alpha, 1.0 - alpha]))
        p_agree = float(np.mean(taus > 0))
    ranks = pd.DataFrame({"mean": means, "std": [v.std(ddof=1) if len(v) > 1 else math.nan for v in values],
                          "n": [len(v) for v in values]}, index=pd.Index(common, name=by))
    ranks["ours"] = pd.Series(means * sign, index=ranks.index).rank(method="min").astype(int)
    ranks["paper"] = ref[common]
    ranks["paper_rank"] = pd.Series(paper, index=ranks.index).rank(method="min").astype(int)
    summary = {"tau": tau, "p_value": p_value, "low": low, "high": high, "p_agree": p_agree, "n": len(common),
               "n_runs": int(sum(len(v) for v in values))}
    return summary, ranks.sort_values(["paper_rank", "ours"])
