"""One table style for every chapter: how pandas prints numbers in the book.

``depthlib.book.setup`` calls :func:`table_style`, so a chapter's plain ``DataFrame`` and its ``.style`` tables
print at most four significant digits (``20.67``, not ``20.670000``), counts with thousands separators, and a
dash for a missing value. A mean over seeds is printed by :func:`depthlib.stats.mean_spread`, with the digits its
spread justifies; a chapter's explicit ``.style.format`` still wins.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["format_number", "table_style"]


def format_number(value: Any) -> str:
    """A table cell as the book prints it: floats with four significant digits (whole numbers from 10,000 with
    thousands separators and no decimals), integers with separators, NaN as "–", anything else as ``str``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e4 and abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def table_style() -> None:
    """Make pandas print the book's way (:func:`format_number`) in plain and styled tables."""
    import pandas as pd

    pd.set_option("display.float_format", format_number)
    pd.set_option("styler.format.formatter", format_number)
    pd.set_option("styler.format.na_rep", "–")
    pd.set_option("display.max_colwidth", 120)
