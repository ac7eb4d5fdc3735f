"""The picture of an :class:`rerankpd.evaluation.evaluate.Evaluation` (matplotlib, from the ``eval`` extra).

Left: each metric's mean per ranking, with a confidence interval from the normal approximation over queries
(mean +/- z * sd / sqrt(n)). Right: for one metric, each ranking's per-query difference against the
baseline, sorted from best to worst: how many queries it helps, leaves alone and hurts, and by how much.
"""
from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import MissingDependencyError

__all__ = ["evaluation_figure"]


def _pyplot():
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib comes with the eval extra
        raise MissingDependencyError("Evaluation.plot needs matplotlib: pip install 'rerankpd[eval]'") from exc
    return matplotlib, plt


def evaluation_figure(evaluation: Any, metric: str, baseline: str, confidence: float = 0.95):
    """Draw the two panels and return the Figure (not shown; Jupyter displays a returned figure)."""
    _, plt = _pyplot()
    from matplotlib.figure import Figure

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rankings, metrics = evaluation.rankings, evaluation.metrics
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    bars, deltas = fig.subplots(1, 2, width_ratios=[1.3, 1])
    width = 0.8 / max(1, len(rankings))
    x = np.arange(len(metrics))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for i, name in enumerate(rankings):
        values = np.stack([evaluation.values(name, m) for m in metrics], axis=1)
        n = len(values)
        mean = values.mean(axis=0) if n else np.zeros(len(metrics))
        half = z * values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(metrics))
        bars.bar(x + (i - (len(rankings) - 1) / 2) * width, mean, width, yerr=half, capsize=3, label=name,
                 color=colors[i % len(colors)])
    bars.set_xticks(x, metrics)
    bars.set_ylabel(f"mean over {len(evaluation.queries)} queries ({confidence:.0%} CI)")
    bars.set_ylim(0, 1.05)
    bars.legend(loc="upper right", fontsize="small")
    bars.set_title("metrics per ranking")

    base = evaluation.values(baseline, metric)
    for i, name in enumerate(rankings):
        if name == baseline:
            continue
        delta = np.sort(evaluation.values(name, metric) - base)[::-1]
        wins, losses = int((delta > 1e-12).sum()), int((delta < -1e-12).sum())
        deltas.step(np.arange(1, len(delta) + 1), delta, where="mid", color=colors[i % len(colors)],
                    label=f"{name}: {wins} better, {losses} worse")
    deltas.axhline(0, color="grey", linewidth=0.8)
    deltas.set_xlabel("queries, sorted by difference")
    deltas.set_ylabel(f"{metric} - {baseline}")
    deltas.set_title(f"per-query {metric} against {baseline}")
    if len(rankings) > 1:
        deltas.legend(loc="upper right", fontsize="small")
    _inline_display()
    return fig


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
