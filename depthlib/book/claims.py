"""The "Claim and finding" box that opens every chapter, and the state of the reproduction on the front page.

A chapter ends with::

    depthlib.book.claim_box("03_fastdepth", P)

which judges the chapter's claims (the ``claims`` of ``depthlib/reported/<study>.yaml``) against what this run
recorded (:func:`depthlib.reported.judge_claims`) and *glues* the box under the name ``claim-box``. The
chapter's first cell pastes it, so a reader sees the paper's claim, our number with its spread and profile,
and the verdict before any code::

    ```{glue:md} claim-box
    :format: myst
    ```

Nothing in the box is typed in: it is built from the results CSVs at the end of the chapter's run. The
scorecard chapter glues ``book-state`` (every chapter's claims) and ``reproduction-state`` (a figure of the
scorecard's verdicts per study), which the introduction and the front page paste with ``:doc:``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from depthlib.reported import VERDICTS, judge_claims, load_results, scorecard

from . import _paths

__all__ = ["BOOK_STATE", "CLAIM_BOX", "claim_box", "claims_markdown", "glue", "judged_claims", "state_html",
           "state_markdown"]

#: The studies' keys as the book names them (the reported YAML files of FastDepth and of Haly & Malcarne are keyed
#: ``fastdepth`` and ``haly``).
STUDY_KEYS = {"fastdepth": "wofk2019", "haly": "haly2021"}

#: The glue name of a chapter's box (the first cell of every chapter pastes it).
CLAIM_BOX = "claim-box"
#: The glue name of the book's state (glued by the scorecard chapter, pasted by the introduction).
BOOK_STATE = "book-state"



def glue(name: str, obj: Any, *, display: bool = False) -> None:
    """Store ``obj`` (a figure, a ``Markdown``, a DataFrame) in the notebook's outputs under ``name`` for the book
    to paste elsewhere (myst-nb's ``glue``); without myst-nb (a notebook run outside the book's environment)
    it is displayed in place instead."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        from IPython.display import display as _display

        _display(obj)
        return
    _glue(name, obj, display=display)


def judged_claims(notebook: str | None, params: Any, *, results_dir: str | os.PathLike | None = None
                  ) -> pd.DataFrame:
    """The verdicts on the claims of chapter ``notebook`` (every chapter's with ``None``) from the results of
    ``params.profile`` (:func:`depthlib.reported.judge_claims`)."""
    results_dir = _paths.results_dir() if results_dir is None else results_dir
    card = scorecard(params.profile, results_dir)
    return judge_claims(card, chapter=notebook, results=load_results(params.profile, results_dir))


def _verdict_class(verdicts: Sequence[str]) -> str:
    if "contradicted" in verdicts:
        return "warning"
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "tip"
    return "note"


def claims_markdown(judged: pd.DataFrame, *, profile: str, title: str = "Claim and finding",
                    source: str = "") -> str:
    """The MyST of a claim box: one item per claim (the paper's claim and numbers, ours with the profile, the
    verdict and why), in an admonition of class ``claim-box`` coloured by the verdicts (tip: all reproduced,
    warning: one contradicted, note: otherwise)."""
    lines = [f":::{{admonition}} {title}", f":class: claim-box {_verdict_class(list(judged['verdict']))}", ""]
    if judged.empty:
        lines.append("This chapter checks no claim of a paper on its own; see its sections.")
    for r in judged.to_dict("records"):
        seeds = f", seeds {r['seeds']}" if r["seeds"] not in ("-", "–", "") else ""
        lines += [
            f"- **{r['verdict']}**: {r['claim']} ({STUDY_KEYS.get(r['study'], r['study'])})",
            f"  - the paper: {r['paper']}; ours ({r['profile']} profile{seeds}): {r['ours']}",
            f"  - why: {r['why']}",
        ]
    lines += ["", f"Profile `{profile}`; numbers read back from the results this run recorded{source}. The verdict "
              "rules: `depthlib.reported.judge_claims`. \"not resolved at this profile\" means this run cannot tell, "
              "not that the claim fails.", ":::"]
    return "\n".join(lines)


def claim_box(notebook: str, params: Any, *, everything: bool = False,
              results_dir: str | os.PathLike | None = None, name: str = CLAIM_BOX) -> pd.DataFrame:
    """Judge chapter ``notebook``'s claims on this run's results and glue the box for its first cell.

    Args:
        notebook: the chapter (``params.notebook``).
        params: the :class:`~depthlib.book.Params` of the run.
        everything: judge every chapter's claims (the scorecard's box).
        results_dir: default ``depthlib.book.results_dir()``.
        name: the glue name (default :data:`CLAIM_BOX`).

    Returns:
        The judged claims (:func:`depthlib.reported.judge_claims`), for a chapter to show or test.

    Raises:
        ValueError: ``notebook`` differs from ``params.notebook``.
    """
    from IPython.display import Markdown

    if getattr(params, "notebook", notebook) != notebook:
        raise ValueError(f"claim_box: notebook {notebook!r} differs from params.notebook {params.notebook!r}")
    judged = judged_claims(None if everything else notebook, params, results_dir=results_dir)
    where = f" (`results/{params.profile}/`)" if everything else f" (`results/{params.profile}/{notebook}.csv`)"
    glue(name, Markdown(claims_markdown(judged, profile=params.profile, source=where)))
    if everything:
        glue(BOOK_STATE, _Rich(state_markdown(judged, profile=params.profile),
                               state_html(judged, profile=params.profile)))
    return judged


class _Rich:
    """A glued object with a MyST and an HTML form: pasting into another page (``{glue}`` with ``:doc:``) only
    carries HTML, pasting into the same page or showing it in JupyterLab uses the Markdown."""

    def __init__(self, markdown: str, html_text: str) -> None:
        self.markdown, self.html = markdown, html_text

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.markdown


def _counts_text(judged: pd.DataFrame, bold: tuple[str, str] = ("**", "**")) -> str:
    counts = judged["verdict"].value_counts()
    return ", ".join(f"{bold[0]}{counts[v]}{bold[1]} {v}" for v in VERDICTS if v in counts)


def state_html(judged: pd.DataFrame, *, profile: str) -> str:
    """:func:`state_markdown` as HTML (an admonition of the book's theme), with links to the chapters relative to
    ``book/`` (where the front page and the chapters are)."""
    items = []
    for chapter, part in judged.groupby("chapter", sort=True):
        verdicts = ", ".join(f"{html.escape(r['id'])}: <strong>{html.escape(r['verdict'])}</strong>"
                             for r in part.to_dict("records"))
        items.append(f'<li><a class="reference internal" href="{html.escape(chapter)}.html">{html.escape(chapter)}</a>: '
                     f"{verdicts}</li>")
    return (f'<div class="admonition claim-box {_verdict_class(list(judged["verdict"]))}">'
            '<p class="admonition-title">The state of the reproduction</p>'
            f"<p>The chapters check {len(judged)} claims of the five studies. With the <code>{html.escape(profile)}"
            f"</code> profile: {_counts_text(judged, ('<strong>', '</strong>'))}.</p>"
            f"<ul>{''.join(items)}</ul>"
            "<p>Every verdict is computed from the results the chapters recorded (the scorecard chapter lists "
            "them all); none is typed in.</p></div>")


def state_markdown(judged: pd.DataFrame, *, profile: str) -> str:
    """The short box of the book's state (the introduction pastes it): how many of the chapters' claims have
    each verdict under ``profile``, and which chapter checks each."""
    summary = _counts_text(judged)
    lines = [":::{admonition} The state of the reproduction",
             f":class: claim-box {_verdict_class(list(judged['verdict']))}", "",
             f"The chapters check {len(judged)} claims of the five studies. With the `{profile}` profile: {summary}.",
             ""]
    for chapter, part in judged.groupby("chapter", sort=True):
        verdicts = ", ".join(f"{r['id']}: {r['verdict']}" for r in part.to_dict("records"))
        lines.append(f"- {{doc}}`{chapter}`: {verdicts}")
    lines += ["", "Every verdict is computed from the results the chapters recorded (the scorecard chapter lists "
              "them all); none is typed in.", ":::"]
    return "\n".join(lines)
