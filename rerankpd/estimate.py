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

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Any, ContextManager

import pandas as pd

from . import config
from .arguments import check_arguments
from .errors import RerankError, warn_user
from .pipeline import reranker_in_use
from .rerankers import get_reranker, reranker_class
from .rerankers.base import Reranker
from .plan import plan_run
from .tokens import text_tokens

__all__ = ["Estimate", "estimate", "reranker_for_estimate"]


@dataclass(frozen=True)
class Estimate:
    """What a run would cost.

    A reranker with an ``estimate_requests(query, documents) -> (requests, tokens)`` method (the ``llm``
    one) counts the requests and the prompt tokens of each planned call itself.

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
    mode
        The LLM reranker's mode, ``"pointwise"`` or ``"listwise"`` (None for other rerankers).
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
    mode: str | None = None

    def to_dict(self) -> dict:
        """The figures as a plain dict (for JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        model = f" ({self.model}{', ' + self.mode if self.mode else ''})" if self.model or self.mode else ""
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
    prefilter: Any = None,
    candidates: int = 100,
) -> Estimate:
    """What :func:`rerankpd.rerank` with the same arguments would send, without sending anything.

    Takes every argument of :func:`rerankpd.rerank` (``top_n``, ``sort``, ``progress`` and ``errors`` do
    not change the cost and are only checked) and validates them the same way. With ``prefilter``, returns a
    :class:`rerankpd.cascade.CascadeEstimate`: the figures with and without the cascade. With a
    :class:`rerankpd.Fusion` as ``reranker``, returns a :class:`rerankpd.fusion.FusionEstimate`: an
    estimate per reranker among its rankings.

    No API key is needed: a hosted reranker named (or chosen by default) without its key set is planned
    keyless, with a warning naming the variable a real run will need (:func:`reranker_for_estimate`).

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
    if callable(getattr(reranker, "estimate", None)) and callable(getattr(reranker, "ranking_scores", None)):
        # a composite ranking (rerankpd.Fusion): an Estimate per reranker it runs
        return reranker.estimate(df, query, column, query_column=query_column, cache=cache)
    if prefilter is not None:  # [cascade hook] with and without the cascade: rerankpd.cascade.CascadeEstimate
        from .cascade import estimate_cascade

        return estimate_cascade(df, query, column, query_column=query_column, reranker=reranker, prefilter=prefilter,
                                candidates=candidates, cache=cache, top_n=top_n, errors=errors)
    with reranker_for_estimate(reranker) as model:
        run = plan_run(df, query, column, query_column, model, cache, errors)
    try:
        pairs = run.pairs
        query_tokens = [text_tokens(q) for q in pairs.queries]
        tokens_of_text: dict[int, int] = {}
        tokens, requests = 0, len(run.batches)
        if run.spec.counts_own_requests:  # a chat model counts its own prompts
            requests, tokens = _counted_by_reranker(run.reranker.estimate_requests, run)
        for batch in run.batches if not run.spec.counts_own_requests else ():
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
            requests=requests,
            approx_tokens=tokens,
            mode=_mode(run.reranker),
        )
    finally:
        if run.cache is not None:
            run.cache.close()


def _counted_by_reranker(own_count, run) -> tuple[int, int]:
    """Requests and tokens summed over the planned calls, as the reranker counts them."""
    from .pairs import take_texts

    requests = tokens = 0
    for batch in run.batches:
        query = run.pairs.queries[run.pairs.pair_group[batch[0]]]
        r, t = own_count(query, take_texts(run.pairs.texts, run.pairs.pair_text[batch]))
        requests, tokens = requests + int(r), tokens + int(t)
    return requests, tokens


# --------------------------------------------------------------------------------------------- reranker
def _mode(reranker: Any) -> str | None:
    """The LLM reranker's mode (``"pointwise"`` or ``"listwise"``); None for every other reranker."""
    mode = getattr(reranker, "mode", None)
    return mode if getattr(reranker, "kind", None) == "llm" and isinstance(mode, str) else None


def reranker_for_estimate(reranker: Any, **options: Any) -> ContextManager[Reranker]:
    """The reranker an estimate plans with, as a context manager; one made here (from a name or None) is
    closed after it.

    Like :func:`rerankpd.pipeline.reranker_in_use`, except that a hosted reranker named without its API key
    (no ``api_key=`` option, none of its key variables set) is built keyless -- an estimate sends nothing --
    and a warning names the variable a real run will need. The keyless reranker holds no key at all and
    refuses to send: its ``score_batch`` and its HTTP session raise. A reranker object is used as it is.

    Examples
    --------
    >>> with reranker_for_estimate("bm25", k1=1.2) as model:
    ...     print(model.name)
    bm25
    """
    if reranker is not None and not isinstance(reranker, str):
        return reranker_in_use(reranker)
    name = reranker or config.default_reranker_name()
    keyless = _keyless_class(name, options)  # built here, not in a generator, so the warning names the user's line
    return contextlib.closing(keyless(**options) if keyless is not None else get_reranker(name, **options))


def _keyless_class(name: str, options: dict) -> type | None:
    """A keyless subclass of the hosted reranker ``name`` when it needs a key it has not got, else None."""
    from .rerankers.http import HTTPReranker

    cls = reranker_class(name)
    if not (issubclass(cls, HTTPReranker) and cls.key_required) or options.get("api_key") is not None:
        return None
    availability = cls.availability()
    if availability.ready is not False:
        return None
    warn_user(f"rerankpd: {name.lower()}: {availability.note} before a real run (an estimate needs no key)")

    def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RerankError(f"{self.name} was built without its API key to plan an estimate; it sends nothing")

    members = {"key_required": False, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
               "score_batch": refuse, "session": refuse}
    for method in ("embed_queries", "embed_documents"):  # an embedding API embeds through its own request
        if callable(getattr(cls, method, None)):
            members[method] = refuse
    return type(cls.__name__, (cls,), members)
