"""rerankpd: rerank the rows of a pandas DataFrame by relevance to a query, in one line.

>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["预防感冒应勤洗手、戴口罩", "今天天气很好"]})
>>> df.rerank("如何预防感冒", reranker="bm25", cache=False, progress=False)["rerank_rank"].tolist()
[1, 2]

``import rerankpd`` registers the ``DataFrame.rerank`` accessor and imports no optional dependency.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers DataFrame.rerank)
from .api import estimate, rerank, scores
from .cache import CacheSettings, cache_info, clear_cache
from .errors import RerankError
from .evaluation.agreement import Agreement, agreement
from .evaluation.cascade_curve import Cascade, CascadeCurve, cascade_curve
from .evaluation.evaluate import Evaluation, evaluate
from .evaluation.fusion import Fusion, fuse
from .evaluation.fusion_fit import fit_fusion
from .notebook.display import show
from .notebook.panel import RerankPanel
from .rerankers import Reranker, available_rerankers, get_reranker
from .run.estimate import Estimate

__version__ = "0.1.0"

__all__ = [
    "Agreement",
    "CacheSettings",
    "Cascade",
    "CascadeCurve",
    "Estimate",
    "Evaluation",
    "Fusion",
    "RerankError",
    "RerankPanel",
    "Reranker",
    "__version__",
    "agreement",
    "available_rerankers",
    "cache_info",
    "cascade_curve",
    "clear_cache",
    "estimate",
    "evaluate",
    "fit_fusion",
    "fuse",
    "get_reranker",
    "rerank",
    "scores",
    "show",
]
