"""Rich display of a ranked frame: score bars and a score histogram in a notebook, plain text elsewhere.

:func:`show` is the one call a user needs; :func:`to_html` and :func:`to_text` are what it renders (the
notebook panel reuses :func:`to_html`). Nothing here scores anything: it only draws the
``rerank_score`` / ``rerank_rank`` columns that :func:`rerankpd.rerank` added.

Examples
--------
>>> import pandas as pd
>>> out = pd.DataFrame({"text": ["wash hands", "weather"], "rerank_score": [0.9, 0.1],
...                     "rerank_rank": [1, 2]})
>>> print(to_text(out))
rank   score  text
   1  0.9000  wash hands
   2  0.1000  weather
>>> "<svg" in to_html(out)
True
"""

from __future__ import annotations

import html
import logging
import math
import sys
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import pandas as pd

from ..run.pipeline import RANK, SCORE

__all__ = ["SCORE_NOTES", "RankedView", "histogram_svg", "score_note", "show", "to_html", "to_text"]

logger = logging.getLogger(__name__)


_TABLE_STYLE = (
    "border-collapse:collapse;font-size:13px;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:4px 0"
)
_TH_STYLE = "text-align:left;padding:3px 8px;border-bottom:2px solid #999;white-space:nowrap"
_TD_STYLE = "text-align:left;padding:3px 8px;border-bottom:1px solid #ddd;vertical-align:top"
_BAR_COLOUR = "#4c78a8"


def _check_ranked(df: pd.DataFrame) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if SCORE not in df.columns:
        raise KeyError(f"column {SCORE!r} not found: pass the frame returned by df.rerank(...)")


def _run_info(df: pd.DataFrame) -> dict:
    info = df.attrs.get("rerank") if isinstance(df.attrs, dict) else None
    return info if isinstance(info, dict) else {}


def _query_column(df: pd.DataFrame, query_column: str | None) -> str | None:
    if query_column is not None:
        if query_column not in df.columns:
            raise KeyError(f"query_column {query_column!r} not found; columns are {list(df.columns)}")
        return query_column
    qc = _run_info(df).get("query_column")
    return qc if isinstance(qc, str) and qc in df.columns else None


def _truncate(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 1)] + "\u2026"


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _plain(value: Any, max_chars: int) -> str:
    if isinstance(value, str):
        return _truncate(value, max_chars)
    if _missing(value):
        return ""
    return str(value)


def _cell_html(value: Any, max_chars: int) -> str:
    if isinstance(value, str):
        short = _truncate(value, max_chars)
        if short != value:
            return f'<span title="{html.escape(value, quote=True)}">{html.escape(short)}</span>'
        return html.escape(value)
    if _missing(value):
        return '<span style="color:#999">\u2014</span>'
    return html.escape(str(value))


#: What a reranker's scores are, said under the bars and in the panel so nobody reads them as probabilities.
SCORE_NOTES = {
    "e5": "e5 scores are cosine similarities, squeezed into about 0.72\u20130.94: compare them with each "
    "other; they are not probabilities",
    "bm25": "BM25 scores are unbounded term-weight sums: compare them within one query; they are not probabilities",
}


def score_note(reranker: str | None) -> str | None:
    """What ``reranker``'s scores mean, when they are easy to misread (see :data:`SCORE_NOTES`).

    >>> score_note("e5").startswith("e5 scores are cosine similarities")
    True
    """
    return SCORE_NOTES.get(reranker) if isinstance(reranker, str) else None


def _bar_scale(scores: np.ndarray, score_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """The score range the bars span: ``score_range`` when given, else the lowest to the highest score shown
    (scores of one reranker are comparable with each other, not with a fixed scale: e5 cosines sit near
    0.8, BM25 is unbounded)."""
    if score_range is not None:
        lo, hi = (float(v) for v in score_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"score_range must be (low, high) with low < high, got {score_range!r}")
        return lo, hi
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo = hi - 1.0
    return lo, hi


def _scale_caption(lo: float, hi: float, fixed: bool, reranker: Any) -> str:
    """The line above the table saying what a bar's length means (and what the scores are)."""
    if fixed:
        text = f"bars span the scores {lo:.4g} to {hi:.4g}"
    else:
        text = f"bars are relative: from the lowest ({lo:.4g}) to the highest ({hi:.4g}) score shown"
    note = score_note(reranker)
    if note:
        text += f". {note}"
    return f'<div class="rerankpd-scale" style="color:#777;font-size:12px">{html.escape(text)}</div>'


def _score_html(score: float, lo: float, hi: float) -> str:
    if score is None or not math.isfinite(score):
        return '<span style="color:#999" title="no text to score">\u2014</span>'
    pct = 4.0 + 96.0 * max(0.0, min(1.0, (score - lo) / (hi - lo)))  # the lowest still shows a sliver
    return (
        '<div style="display:flex;align-items:center;gap:6px">'
        f'<div class="rerankpd-bar" style="width:120px;height:10px;background:#eee;flex:none">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{_BAR_COLOUR}"></div></div>'
        f'<span class="rerankpd-score" style="font-variant-numeric:tabular-nums">{score:.4f}</span></div>'
    )


def histogram_svg(
    scores: Sequence[float] | np.ndarray,
    *,
    bins: int = 20,
    width: int = 260,
    height: int = 70,
    title: str | None = None,
) -> str:
    """A small SVG histogram of ``scores`` (missing and infinite values left out).

    Parameters
    ----------
    scores
        The scores to count.
    bins
        Number of equal-width bins between the smallest and largest score.
    width, height
        Size of the drawing in pixels.
    title
        Caption drawn above the bars (escaped).

    Examples
    --------
    >>> svg = histogram_svg([0.1, 0.2, 0.9], bins=4, title="q")
    >>> svg.startswith("<svg") and svg.count("<rect") == 4
    True
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1, got {bins!r}")
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    caption_h = 14 if title else 0
    axis_h = 12
    plot_h = max(height - caption_h - axis_h, 10)
    parts = [
        f'<svg class="rerankpd-hist" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" style="font:10px sans-serif">'
    ]
    if title:
        parts.append(f'<text x="0" y="10" fill="#333">{html.escape(_truncate(title, 48))}</text>')
    if values.size == 0:
        parts.append(f'<text x="0" y="{caption_h + plot_h // 2}" fill="#999">no scores</text></svg>')
        return "".join(parts)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:  # one score (a single-row group), or all equal: no distribution to draw, no axis
        what = "one score" if values.size == 1 else f"all {values.size} scores"
        parts.append(f'<text x="0" y="{caption_h + 12}" fill="#555">{what}: {lo:.4g}</text></svg>')
        return "".join(parts)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    bar_w = width / bins
    for i, count in enumerate(counts):
        h = plot_h * int(count) / top
        y = caption_h + plot_h - h
        parts.append(
            f'<rect x="{i * bar_w:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
            f'fill="{_BAR_COLOUR}"><title>{edges[i]:.4g} to {edges[i + 1]:.4g}: {int(count)}</title></rect>'
        )
    base = caption_h + plot_h + axis_h - 2
    parts.append(f'<text x="0" y="{base}" fill="#555">{lo:.3g}</text>')
    parts.append(f'<text x="{width}" y="{base}" fill="#555" text-anchor="end">{hi:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histograms(df: pd.DataFrame, query_column: str | None, max_histograms: int) -> str:
    scores = df[SCORE].to_numpy(dtype=np.float64, na_value=np.nan)
    if query_column is None:
        query = _run_info(df).get("query")
        title = f"scores for {query!r}" if isinstance(query, str) else "score distribution"
        return histogram_svg(scores, title=title)
    groups = df.groupby(query_column, sort=False, dropna=True)[SCORE]
    svgs = []
    for i, (query, group) in enumerate(groups):
        if i >= max_histograms:
            svgs.append(f'<span style="color:#777">\u2026 and {groups.ngroups - max_histograms} more queries</span>')
            break
        svgs.append(histogram_svg(group.to_numpy(dtype=np.float64, na_value=np.nan), title=str(query)))
    return "".join(f'<div style="flex:none">{s}</div>' for s in svgs)


def to_html(
    df: pd.DataFrame,
    *,
    query_column: str | None = None,
    max_rows: int = 50,
    max_chars: int = 120,
    histogram: bool = True,
    max_histograms: int = 6,
    score_range: tuple[float, float] | None = None,
    explain_scores: bool = True,
) -> str:
    """HTML of a ranked frame: rank, the score drawn as a bar, the other columns with long text cut.

    Parameters
    ----------
    df
        A frame returned by :func:`rerankpd.rerank` (has ``rerank_score``; ``rerank_rank`` if present).
    query_column
        The per-row query column, to draw one histogram per query; default: the one the run used.
    max_rows
        Rows shown; the rest are counted in a footer.
    max_chars
        Text cells longer than this are cut; the full text shows on hover.
    histogram
        Draw the score distribution (one small histogram per query) above the table.
    max_histograms
        At most this many per-query histograms.
    score_range
        ``(low, high)``: the scores a bar spans from empty to full (e.g. ``(0, 1)`` for a service whose
        scores are documented as 0 to 1). Default: relative, from the lowest to the highest score shown;
        a caption above the table says which.
    explain_scores
        Add what the reranker's scores are to that caption when they are easy to misread (e5's cosines,
        BM25's unbounded sums: :data:`SCORE_NOTES`).

    Examples
    --------
    >>> import pandas as pd
    >>> out = pd.DataFrame({"text": ["a" * 300], "rerank_score": [0.5], "rerank_rank": [1]})
    >>> 'title="' + "a" * 300 in to_html(out, max_chars=20)
    True
    """
    _check_ranked(df)
    if not isinstance(max_rows, int) or max_rows < 0:
        raise ValueError(f"max_rows must be a whole number >= 0, got {max_rows!r}")
    if not isinstance(max_chars, int) or max_chars < 2:
        raise ValueError(f"max_chars must be a whole number >= 2, got {max_chars!r}")
    qc = _query_column(df, query_column)
    shown = df.head(max_rows)
    lo, hi = _bar_scale(df[SCORE].to_numpy(dtype=np.float64, na_value=np.nan), score_range)
    others = [c for c in df.columns if c not in (SCORE, RANK)]
    head = [f'<th style="{_TH_STYLE}"></th>']
    if RANK in df.columns:
        head.append(f'<th style="{_TH_STYLE}">rank</th>')
    head.append(f'<th style="{_TH_STYLE}">score</th>')
    head += [f'<th style="{_TH_STYLE}">{html.escape(str(c))}</th>' for c in others]
    rows = []
    for idx, row in zip(shown.index, shown.itertuples(index=False, name=None)):
        record = dict(zip(df.columns, row))
        cells = [f'<td style="{_TD_STYLE};color:#777">{html.escape(str(idx))}</td>']
        if RANK in df.columns:
            cells.append(f'<td class="rerankpd-rank" style="{_TD_STYLE}">{_cell_html(record[RANK], max_chars)}</td>')
        score = record[SCORE]
        score = float(score) if score is not None and not pd.isna(score) else float("nan")
        cells.append(f'<td style="{_TD_STYLE}">{_score_html(score, lo, hi)}</td>')
        cells += [f'<td style="{_TD_STYLE}">{_cell_html(record[c], max_chars)}</td>' for c in others]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    footer = ""
    if len(df) > len(shown):
        footer = f'<div style="color:#777;font-size:12px">{len(df) - len(shown)} more rows not shown</div>'
    table = (
        f'<table class="rerankpd-table" style="{_TABLE_STYLE}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    hist = ""
    if histogram and len(df):
        hist = (
            f'<div class="rerankpd-histograms" style="display:flex;flex-wrap:wrap;gap:16px;margin:4px 0">'
            f"{_histograms(df, qc, max_histograms)}</div>"
        )
    reranker = _run_info(df).get("reranker") if explain_scores else None
    caption = _scale_caption(lo, hi, score_range is not None, reranker) if len(df) else ""
    return f'<div class="rerankpd-result">{hist}{caption}{table}{footer}</div>'


def to_text(df: pd.DataFrame, *, max_rows: int = 50, max_chars: int = 60) -> str:
    """Plain text of a ranked frame for a terminal: rank, score, then the other columns, text cut.

    Examples
    --------
    >>> import pandas as pd
    >>> out = pd.DataFrame({"text": ["x" * 100], "rerank_score": [0.25], "rerank_rank": [1]})
    >>> print(to_text(out, max_chars=10))
    rank   score  text
       1  0.2500  xxxxxxxxx\u2026
    """
    _check_ranked(df)
    if not isinstance(max_rows, int) or max_rows < 0:
        raise ValueError(f"max_rows must be a whole number >= 0, got {max_rows!r}")
    if not isinstance(max_chars, int) or max_chars < 2:
        raise ValueError(f"max_chars must be a whole number >= 2, got {max_chars!r}")
    others = [c for c in df.columns if c not in (SCORE, RANK)]
    shown = df.head(max_rows)
    columns: list[tuple[str, list[str], bool]] = []  # header, cells, right-aligned
    if RANK in df.columns:
        columns.append(("rank", [_plain(v, max_chars) for v in shown[RANK]], True))
    columns.append(("score", ["\u2014" if pd.isna(s) else f"{float(s):.4f}" for s in shown[SCORE]], True))
    for c in others:
        values = shown[c]
        right = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        columns.append((str(c), [_plain(v, max_chars) for v in values], right))
    widths = [max([len(h)] + [len(x) for x in cells]) for h, cells, _ in columns]

    def line(cells: list[str]) -> str:
        out = [cell.rjust(w) if right else cell.ljust(w) for cell, w, (_, _, right) in zip(cells, widths, columns)]
        return "  ".join(out).rstrip()

    lines = [line([h for h, _, _ in columns])]
    lines += [line([cells[i] for _, cells, _ in columns]) for i in range(len(shown))]
    if len(df) > max_rows:
        lines.append(f"... {len(df) - max_rows} more rows")
    return "\n".join(lines)


class RankedView:
    """A ranked frame drawn for people: HTML in a notebook (score bars, histogram), text in a terminal.

    Examples
    --------
    >>> import pandas as pd
    >>> view = RankedView(pd.DataFrame({"text": ["a"], "rerank_score": [1.0], "rerank_rank": [1]}))
    >>> "rerankpd-table" in view._repr_html_()
    True
    """

    def __init__(self, df: pd.DataFrame, **options: Any) -> None:
        _check_ranked(df)
        self.df = df
        self.options = options

    def _repr_html_(self) -> str:
        return to_html(self.df, **self.options)

    def __repr__(self) -> str:
        text_opts = {k: v for k, v in self.options.items() if k in ("max_rows",)}
        return to_text(self.df, **text_opts)


def _in_ipython() -> bool:
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    try:
        return ipython_module.get_ipython() is not None
    except Exception:  # pragma: no cover - a broken IPython install
        return False


def show(df: pd.DataFrame, *, file: IO[str] | None = None, **options: Any) -> None:
    """Show a ranked frame: score bars and a histogram in a notebook, plain text in a terminal.

    Parameters
    ----------
    df
        A frame returned by :func:`rerankpd.rerank` / ``df.rerank(...)``.
    file
        Write plain text here instead (default: notebook display if running under IPython, else stdout).
    **options
        ``max_rows``, ``max_chars``, ``histogram``, ``query_column``, ``max_histograms``: see :func:`to_html`.

    Examples
    --------
    >>> import io, pandas as pd
    >>> buf = io.StringIO()
    >>> show(pd.DataFrame({"text": ["a"], "rerank_score": [1.0], "rerank_rank": [1]}), file=buf)
    >>> buf.getvalue().splitlines()[1].split()
    ['1', '1.0000', 'a']
    """
    view = RankedView(df, **options)
    if file is None and _in_ipython():
        from IPython.display import display

        display(view)
        return
    stream = file if file is not None else sys.stdout
    text_opts = {k: v for k, v in options.items() if k in ("max_rows", "max_chars")}
    stream.write(to_text(df, **text_opts) + "\n")
