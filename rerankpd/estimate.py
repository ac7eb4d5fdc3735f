"""``df.rerank.estimate``: what a run would send, worked out without sending anything.

It runs the plan half of :func:`rerankpd.rerank` -- validate, build unique pairs, cut long documents when
the reranker chunks on the client, look the pairs up in the score cache, cut the misses into requests --
and counts: pairs after dedupe, chunks, pairs already cached, pairs and requests to send, and approximate
billed tokens (:func:`rerankpd.tokens.text_tokens`: about 4 ASCII characters per token, any other
character one, the count the rate limiter's ``tokens_per_minute`` budget uses; each pair counts its query
and its document, as cross-encoder services bill). No request is made and nothing is written to the cache.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["预防感冒应勤洗手", "预防感冒应勤洗手", "wash hands often", None]})
>>> est = rerankpd.estimate(df, "如何预防感冒", reranker="bm25", cache=False)
>>> est.pairs, est.to_score, est.requests, est.approx_tokens
(2, 2, 1, 24)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .arguments import check_arguments
from .pipeline import reranker_in_use
from .plan import plan_run
from .tokens import text_tokens

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True)
class Estimate:
    """What a run would cost.

    Attributes
    ----------
    reranker, model
        Which reranker would run.
    rows
        Rows in the frame.
    pairs
        Distinct (query, text) pairs with text to score (missing and blank texts are never sent).
    chunks
        With client-side chunking, the chunks those documents are cut into (else None).
    cached
        Pairs (or chunks) already in the score cache.
    to_score
        Pairs (or chunks) that would be sent.
    requests
        Requests they would take (the reranker's batch size, per query).
    approx_tokens
        Approximate billed tokens sent (:func:`rerankpd.tokens.text_tokens`): for every pair sent, its
        query's plus its document's.
    """

    reranker: str
    model: str | None
    rows: int
    pairs: int
    chunks: int | None
    cached: int
    to_score: int
    requests: int
    approx_tokens: int

    def to_dict(self) -> dict:
        """The figures as a plain dict (for JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        model = f" ({self.model})" if self.model else ""
        chunks = f", cut into {self.chunks} chunks" if self.chunks is not None else ""
        return (f"{self.reranker}{model}: {self.rows} rows -> {self.pairs} unique pairs{chunks}; "
                f"{self.cached} cached, {self.to_score} to score in {self.requests} "
                f"request{'' if self.requests == 1 else 's'}, "
                f"~{self.approx_tokens} tokens")


def estimate(
    df: pd.DataFrame,
    query: str | None = None,
    column: Any = "text",
    *,
    query_column: Any = None,
    top_n: int | None = None,
    reranker: Any = None,
    sort: bool = True,
    cache: bool | str | os.PathLike = True,
    progress: bool | None = None,
    errors: str = "raise",
) -> Estimate:
    """What :func:`rerankpd.rerank` with the same arguments would send, without sending anything.

    Takes every argument of :func:`rerankpd.rerank` (``top_n``, ``sort``, ``progress`` and ``errors`` do
    not change the cost and are only checked) and validates them the same way.

    Returns
    -------
    Estimate

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["a b", "c d e"]})
    >>> print(rerankpd.estimate(df, "q", reranker="bm25", cache=False))
    bm25 (bm25s-lucene): 2 rows -> 2 unique pairs; 0 cached, 2 to score in 1 request, ~5 tokens
    """
    check_arguments(df, query, column, query_column, top_n, errors)
    with reranker_in_use(reranker) as model:
        run = plan_run(df, query, column, query_column, model, cache, errors)
    try:
        pairs = run.pairs
        query_tokens = [text_tokens(q) for q in pairs.queries]
        tokens_of_text: dict[int, int] = {}
        tokens = 0
        for batch in run.batches:
            for p in batch:
                t = int(pairs.pair_text[p])
                if t not in tokens_of_text:
                    tokens_of_text[t] = text_tokens(pairs.texts[t])
                tokens += query_tokens[int(pairs.pair_group[p])] + tokens_of_text[t]
        doc_pairs = run.doc_pairs
        return Estimate(
            reranker=run.spec.name,
            model=run.spec.model,
            rows=len(df),
            pairs=doc_pairs.n_pairs,
            chunks=run.chunks.n_chunks if run.chunks is not None else None,
            cached=run.from_cache,
            to_score=run.to_score,
            requests=len(run.batches),
            approx_tokens=tokens,
        )
    finally:
        if run.cache is not None:
            run.cache.close()
