"""The pictures of :class:`rerankpd.evaluation.evaluate.Evaluation` and
:class:`rerankpd.evaluation.cascade_curve.CascadeCurve` (matplotlib, from the ``eval`` extra). Both return a
matplotlib ``Figure``, with metric axes from 0.

An evaluation's figure has three panels. Left: each metric's mean per ranking. Middle: each ranking's mean
difference against the baseline per metric, with the confidence interval of that paired difference (normal
approximation over queries: mean +/- z * sd(delta) / sqrt(n)); an interval clear of 0 is a difference the
paired tests of :meth:`~rerankpd.evaluation.evaluate.Evaluation.compare` usually call real. Right: for one metric, each
ranking's per-query difference against the baseline, sorted from best to worst. Each ranking keeps one
colour, line style and marker in every panel, so six rankings stay apart.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["cascade_figure", "evaluation_figure", "pyplot"]

_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def pyplot(what: str):
    """``(matplotlib, matplotlib.pyplot)``; without matplotlib a MissingDependencyError naming ``what`` (the
    method that needs it) and the ``pip install`` that fixes it: the one place for that rule."""
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs matplotlib: pip install 'rerankpd[eval]'") from exc
    return matplotlib, plt


def _look(i: int, colors: list) -> dict:
    """Ranking ``i``'s colour, line style and marker (the same in every panel)."""
    return {
        "color": colors[i % len(colors)],
        "linestyle": _STYLES[i % len(_STYLES)],
        "marker": _MARKERS[i % len(_MARKERS)],
    }


def _colors() -> list:
    import matplotlib

    return list(matplotlib.color_sequences["tab10"])  # the colours of the tab10 colormap


def evaluation_figure(evaluation: Any, metric: str, baseline: str, confidence: float = 0.95):
    """Draw the three panels and return the Figure (not shown; Jupyter displays a returned figure)."""
    pyplot("Evaluation.plot")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rankings, metrics = evaluation.rankings, evaluation.metrics
    n_queries = len(evaluation.queries)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    bars, paired, deltas = fig.subplots(1, 3, width_ratios=[1.2, 1.2, 1])
    width = 0.8 / max(1, len(rankings))
    x = np.arange(len(metrics))
    colors = _colors()
    for i, name in enumerate(rankings):
        mean = np.array([evaluation.values(name, m).mean() if n_queries else 0.0 for m in metrics])
        bars.bar(
            x + (i - (len(rankings) - 1) / 2) * width,
            mean,
            width,
            label=name,
            color=colors[i % len(colors)],
            edgecolor="black",
            linewidth=0.5,
        )
    bars.set_xticks(x, metrics)
    bars.set_ylabel(f"mean over {n_queries} queries")
    bars.set_ylim(0, 1.05)
    bars.legend(loc="upper right", fontsize="small")
    bars.set_title("metrics per ranking")

    others = [(i, name) for i, name in enumerate(rankings) if name != baseline]
    step = 0.8 / max(1, len(others))
    for j, (i, name) in enumerate(others):
        delta = np.stack([evaluation.values(name, m) - evaluation.values(baseline, m) for m in metrics], axis=1)
        mean = delta.mean(axis=0) if n_queries else np.zeros(len(metrics))
        half = z * delta.std(axis=0, ddof=1) / np.sqrt(n_queries) if n_queries > 1 else np.zeros(len(metrics))
        look = _look(i, colors)
        paired.errorbar(
            x + (j - (len(others) - 1) / 2) * step,
            mean,
            yerr=half,
            capsize=3,
            linestyle="none",
            marker=look["marker"],
            color=look["color"],
            label=name,
        )
    paired.axhline(0, color="grey", linewidth=0.8)
    paired.set_xticks(x, metrics)
    paired.set_ylabel(f"mean difference ({confidence:.0%} CI, paired over queries)")
    paired.set_title(f"difference against {baseline}")
    if others:
        paired.legend(loc="best", fontsize="small")

    base = evaluation.values(baseline, metric)
    for i, name in others:
        delta = np.sort(evaluation.values(name, metric) - base)[::-1]
        wins, losses = int((delta > 1e-12).sum()), int((delta < -1e-12).sum())
        look = _look(i, colors)
        deltas.step(
            np.arange(1, len(delta) + 1),
            delta,
            where="mid",
            color=look["color"],
            linestyle=look["linestyle"],
            label=f"{name}: {wins} better, {losses} worse",
        )
        deltas.plot(
            np.arange(1, len(delta) + 1),
            delta,
            linestyle="none",
            marker=look["marker"],
            color=look["color"],
            markersize=3,
        )
    deltas.axhline(0, color="grey", linewidth=0.8)
    deltas.xaxis.set_major_locator(MaxNLocator(integer=True))
    deltas.set_xlabel("queries, sorted by difference")
    deltas.set_ylabel(f"{metric} - {baseline}")
    deltas.set_title(f"per-query {metric} against {baseline}")
    if others:
        deltas.legend(loc="upper right", fontsize="small")
    _inline_display()
    return fig


def cascade_figure(curve: Any, metric: str, ax: Any = None):
    """Draw ``metric`` against the pairs sent, one point per candidate count, the prefilter alone as a dashed
    line, the y-axis from 0; returns the Figure (``ax``'s own when given)."""
    pyplot("CascadeCurve.plot")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        fig = Figure(figsize=(6.5, 4.2), layout="constrained")
        ax = fig.subplots()
    table = curve.table
    ax.plot(table["pairs_sent"], table[metric], marker="o", label=f"{curve.prefilter} -> {curve.reranker}")
    for _, row in table.iterrows():
        ax.annotate(
            f"{int(row['candidates'])}",
            (row["pairs_sent"], row[metric]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    if metric in curve.prefilter_only:
        ax.axhline(curve.prefilter_only[metric], linestyle="--", color="grey", label=f"{curve.prefilter} alone")
    top = max([1.0, *np.nan_to_num(table[metric].to_numpy(dtype=float))])
    ax.set_ylim(0, top * 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("pairs sent to the reranker")
    ax.set_ylabel(metric)
    ax.set_title(f"cascade {curve.prefilter} -> {curve.reranker}: cost and quality per candidate count")
    ax.legend()
    _inline_display()
    return ax.figure


def _inline_display() -> None:
    """In IPython, show a returned Figure as a PNG (what ``%matplotlib inline`` sets up for pyplot's own
    figures); nothing when a formatter for figures is already there or outside IPython."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    png = getattr(getattr(shell, "display_formatter", None), "formatters", {}).get("image/png")
    if png is None:
        return
    from matplotlib.figure import Figure

    try:
        png.lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import print_figure

        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))
