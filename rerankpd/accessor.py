"""``DataFrame.rerank``: the accessor. Argument handling only; the work is :func:`rerankpd.rerank`.

pandas may build a new accessor on every attribute access, so it holds nothing but the frame.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["cats purr", "dogs bark"]})
>>> df.rerank("cats", reranker="bm25", cache=False, progress=False)["rerank_rank"].tolist()
[1, 2]
"""

from __future__ import annotations

import functools
import inspect

import pandas as pd

from . import api
from .evaluation import evaluate as _evaluate
from .evaluation import fusion as _fusion
from .run import estimate as _estimate

__all__ = ["RerankAccessor"]


def _without_frame(func) -> inspect.Signature:
    signature = inspect.signature(func)
    params = [p for name, p in signature.parameters.items() if name != "df" and not name.startswith("_")]
    return signature.replace(parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])


@pd.api.extensions.register_dataframe_accessor("rerank")
class RerankAccessor:
    """``df.rerank(query, column="text", ...)`` ranks rows by relevance; see :func:`rerankpd.rerank`."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    @functools.wraps(api.rerank, assigned=("__doc__",))
    def __call__(self, query=None, column="text", **kwargs) -> pd.DataFrame:
        return api.rerank(self._df, query, column, **kwargs)

    def scores(self, query=None, column="text", **kwargs) -> pd.Series:
        """The scores alone, a float Series aligned to the frame's index; see :func:`rerankpd.scores`."""
        return api.scores(self._df, query, column, **kwargs)

    def estimate(self, query=None, column="text", **kwargs) -> _estimate.Estimate:
        """What ``df.rerank(...)`` with the same arguments would send, without sending anything; see
        :func:`rerankpd.estimate`."""
        return api.estimate(self._df, query, column, **kwargs)

    def evaluate(self, query=None, column="text", **kwargs) -> _evaluate.Evaluation:
        """Metrics, costs and significance of this frame's rankings against its labels; see
        :func:`rerankpd.evaluate`."""
        return _evaluate.evaluate(self._df, query, column, **kwargs)

    def fuse(self, rankings, query=None, column="text", **kwargs) -> pd.DataFrame:
        """Fuse score columns and rerankers into one ranking per query (RRF, normalised sums, weights); see
        :func:`rerankpd.fuse`."""
        return _fusion.fuse(self._df, rankings, query, column, **kwargs)

    # Show the real keyword arguments (for tab completion and help()), without the frame and private hooks.
    __call__.__signature__ = _without_frame(api.rerank)  # type: ignore[attr-defined]
    scores.__signature__ = _without_frame(api.scores)  # type: ignore[attr-defined]
    estimate.__signature__ = _without_frame(api.estimate)  # type: ignore[attr-defined]
    evaluate.__signature__ = _without_frame(_evaluate.evaluate)  # type: ignore[attr-defined]
    fuse.__signature__ = _without_frame(_fusion.fuse)  # type: ignore[attr-defined]

    def panel(self, column=None, **defaults):
        """An ipywidgets panel over this frame: query, columns, reranker, top_n, Run; see
        :class:`rerankpd.RerankPanel`."""
        from .notebook.panel import RerankPanel

        return RerankPanel(self._df, column, **defaults)

    def __repr__(self) -> str:
        return f"<rerankpd accessor over a frame of {len(self._df)} rows: call df.rerank(query, column=...)>"
