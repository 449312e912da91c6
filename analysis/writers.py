"""Markdown / CSV / LaTeX writers for the result tables, in one fixed format.

Markdown, CSV and LaTeX are pandas' own writers (`DataFrame.to_markdown`, which needs tabulate;
`DataFrame.to_csv`; `Styler.to_latex`, which needs jinja2) fed cells this module formats.

Fixed formatting everywhere: floats (metric values in display units, ranks) with ONE decimal,
NaN as "-" (empty in CSV), strings as they are. Markdown and LaTeX hide the bookkeeping columns
`published` and `source`; a published row's method gets a dagger instead, and the caption
(`caption=` or `df.attrs["caption"]`) says where the dagger rows come from and what our rows ran
on. CSV keeps every column, so each row carries its own `published` flag and `source`.
Each writer returns the text and also writes it to `path` when given.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

HIDDEN = ("published", "source")
DAGGER = "\u2020"
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"$<$", ">": r"$>$", DAGGER: r"$^\dagger$",
}


def format_cell(value, nan: str = "-") -> str:
    """One table cell as text: floats with one decimal, NaN/None as `nan`, bools and str unchanged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return nan
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}"
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return format_cell(value.item(), nan)
    return str(value)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _display(df: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Visible header, cell text and right-alignment flags, with the dagger on published methods."""
    cols = [c for c in df.columns if c not in HIDDEN]
    published = df["published"].astype(bool).tolist() if "published" in df.columns else [False] * len(df)
    body = []
    for (_, row), pub in zip(df.iterrows(), published):
        cells = [format_cell(row[c]) for c in cols]
        if pub and "method" in cols:
            i = cols.index("method")
            cells[i] = f"{cells[i]} {DAGGER}"
        body.append(cells)
    return [str(c) for c in cols], body, [_is_numeric(df[c]) for c in cols]


def _finish(text: str, path) -> str:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def to_markdown(df: pd.DataFrame, caption: str | None = None, path: str | Path | None = None) -> str:
    """GitHub Markdown pipe table; numeric columns right-aligned; the caption as a line below it."""
    header, body, right = _display(df)
    esc = lambda s: s.replace("|", r"\|")
    cells = pd.DataFrame([[esc(c) for c in row] for row in body], columns=[esc(h) for h in header])
    text = cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=["right" if r else "left" for r in right])
    caption = caption if caption is not None else df.attrs.get("caption")
    return _finish(text + "\n" + (f"\n{caption}\n" if caption else ""), path)


def to_csv(df: pd.DataFrame, path: str | Path | None = None) -> str:
    """Every column (published and source included); floats one decimal, NaN empty, '\\n' line ends."""
    cells = df.map(lambda v: format_cell(v, nan=""))
    cells.columns = [str(c) for c in df.columns]
    return _finish(cells.to_csv(index=False, lineterminator="\n"), path)


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (and write '<', '>' and the dagger in math mode)."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, caption: str | None = None, path: str | Path | None = None,
             label: str | None = None) -> str:
    """A booktabs `table` environment: l columns for text, r for numbers, caption above the tabular."""
    header, body, right = _display(df)
    caption = caption if caption is not None else df.attrs.get("caption")
    cells = pd.DataFrame([[latex_escape(c) for c in row] for row in body],
                         columns=[latex_escape(h) for h in header])
    text = cells.style.hide(axis="index").to_latex(
        column_format="".join("r" if r else "l" for r in right), position="t", position_float="centering",
        hrules=True, caption=latex_escape(caption) if caption else None, label=label)
    return _finish(text, path)
