"""Paired significance tests over per-query metric values, and Holm's correction; pure numpy (scipy for t).

Each test takes the per-query differences ``delta = ranking - baseline`` (one per query, paired) and returns
a two-sided p-value for "the mean difference is 0":

``"randomization"``
    Fisher's paired randomization (sign-flip) test: each resample flips the sign of every query's delta at
    random; p = (1 + resamples whose |mean| reaches the observed |mean|) / (1 + resamples). Two identical
    rankings give p = 1; a ranking better on every query of 30 gives p near 1e-4.
``"bootstrap"``
    The paired bootstrap under the null: the deltas are centred on 0 and resampled with replacement;
    p counts resampled |means| reaching the observed |mean| the same way.
``"t"``
    Student's paired t-test (scipy's t distribution); p = 1 when every delta is 0.

The random draws come from ``numpy.random.default_rng(seed)``: the same seed gives the same p-values.

Examples
--------
>>> import numpy as np
>>> float(paired_p_value(np.zeros(30), "randomization", 1000, 0))
1.0
>>> bool(paired_p_value(np.full(30, 0.1), "randomization", 1000, 0) < 0.01)
True
>>> holm([0.01, 0.04, 0.03]).round(2).tolist()
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["TESTS", "holm", "paired_p_value"]

TESTS = ("randomization", "bootstrap", "t")
_CHUNK = 1_000  # resamples drawn at once (a chunk x queries matrix of float64)


def paired_p_value(delta: np.ndarray, test: str, n_resamples: int, seed: int | None) -> float:
    """Two-sided p-value that the mean of the paired per-query ``delta`` is 0 (see the module's notes)."""
    delta = np.asarray(delta, dtype=np.float64)
    n = len(delta)
    if n == 0:
        return float("nan")
    observed = abs(delta.mean())
    if test == "t":
        return _t_test(delta)
    tolerance = 1e-12 * max(1.0, float(np.abs(delta).max()))
    rng = np.random.default_rng(seed)
    reached, left = 0, n_resamples
    centred = delta - delta.mean()
    while left > 0:
        size = min(_CHUNK, left)
        if test == "randomization":
            signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
            means = signs @ delta / n
        else:
            means = centred[rng.integers(0, n, size=(size, n))].mean(axis=1)
        reached += int(np.count_nonzero(np.abs(means) >= observed - tolerance))
        left -= size
    return (1 + reached) / (1 + n_resamples)


def _t_test(delta: np.ndarray) -> float:
    from ..errors import MissingDependencyError

    n = len(delta)
    mean = delta.mean()
    sd = delta.std(ddof=1) if n > 1 else 0.0
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - scipy comes with the eval extra
        raise MissingDependencyError("test='t' needs scipy: pip install 'rerankpd[eval]'") from exc
    t = mean / (sd / np.sqrt(n))
    return float(2 * stats.t.sf(abs(t), df=n - 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the order given; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if len(valid) == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    steps = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    adjusted[order] = steps
    return adjusted
