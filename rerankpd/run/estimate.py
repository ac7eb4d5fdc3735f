"""``df.rerank.estimate``: what a run would send, worked out without sending anything.

It runs the plan half of :func:`rerankpd.rerank` -- validate, build unique pairs, cut long documents when
the reranker chunks on the client, look the pairs up in the score cache, cut the misses into requests --
and counts: pairs after dedupe, chunks, pairs already cached, pairs and requests to send, and approximate
billed tokens (:func:`rerankpd.core.tokens.text_tokens`: about 4 ASCII characters per token, any other
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
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .. import config
from ..core.tokens import text_tokens
from ..errors import RerankError, warn_user
from ..rerankers import get_reranker, reranker_class
from ..rerankers.base import Reranker
from .arguments import check_arguments
from .pipeline import reranker_in_use
from .plan import plan_run

__all__ = ["Estimate", "computes_locally", "duration", "estimate", "reranker_for_estimate"]


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
        Approximate billed tokens sent (:func:`rerankpd.core.tokens.text_tokens`): for every pair sent, its
        query's plus its document's.
    mode
        The LLM reranker's mode, ``"pointwise"`` or ``"listwise"`` (None for other rerankers).
    seconds, timing
        For a reranker that computes on this machine (e5, a local cross-encoder, bm25; one of your own with
        ``computes_locally = True``, see :func:`computes_locally`): the expected time of
        the run in seconds, and how it was worked out (``"measured here: 16 pairs in 2.10 s"``: a short
        sample of the run's own pairs scored on this machine, nothing cached or sent). None for a hosted
        service, whose time depends on the service and its rate limits.
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
    seconds: float | None = None
    timing: str | None = None

    def to_dict(self) -> dict:
        """The figures as a plain dict (for JSON)."""
        return asdict(self)

    def __str__(self) -> str:
        model = f" ({self.model}{', ' + self.mode if self.mode else ''})" if self.model or self.mode else ""
        chunks = f", cut into {self.chunks} chunks" if self.chunks is not None else ""
        head = f"{self.reranker}{model}: {self.rows} rows -> {self.pairs} unique pairs{chunks}; {self.cached} cached, "
        if self.seconds is not None:  # computed here: no request, no billed token; the time is what counts
            took = duration(self.seconds)
            took = took if took == "under a second" else f"about {took}"
            return f"{head}{self.to_score} to score on this machine, {took} ({self.timing})"
        return (
            f"{head}{self.to_score} to score in {self.requests} request{'' if self.requests == 1 else 's'}, "
            f"~{self.approx_tokens} tokens"
        )


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
    """The plain estimate behind :func:`rerankpd.estimate` (no prefilter): plan the run and count.

    Same arguments as :func:`rerankpd.estimate` without ``prefilter`` and ``candidates``; with a cascade,
    :func:`rerankpd.run.cascade.estimate_cascade` calls this twice.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"text": ["a b", "c d e"]})
    >>> print(estimate(df, "q", reranker="bm25", cache=False))  # doctest: +ELLIPSIS
    bm25 (bm25s-lucene): 2 rows -> 2 unique pairs; 0 cached, 2 to score on this machine, under a second (measured here: 2 pairs in ... s)
    """
    check_arguments(df, query, column, query_column, top_n, errors)
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
        seconds, timing = _timed(run)
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
            seconds=seconds,
            timing=timing,
        )
    finally:
        if run.cache is not None:
            run.cache.close()


#: Pairs of a run scored here to time a reranker that computes on this machine (at most), and about how long
#: the sample may take (a slow model is timed on fewer pairs, 4 at least, so an estimate stays quick).
SAMPLE_PAIRS = 16
SAMPLE_SECONDS = 3.0


def _timed(run: Any) -> tuple[float | None, str | None]:
    """The expected seconds of a local reranker's run, from its own pairs scored here in one call (spread over
    the run; as many as the warm-up pair's time says fit in about :data:`SAMPLE_SECONDS`, 4 to
    :data:`SAMPLE_PAIRS`; nothing is cached); (None, None) for a hosted service or one that cannot be timed."""
    import time

    import numpy as np

    from ..pairs import take_texts

    model = run.reranker
    if not computes_locally(model) or not callable(getattr(model, "score", None)):
        return None, None
    if not run.to_score:
        return 0.0, "nothing to score"
    todo = np.concatenate([np.asarray(b, dtype=np.int64) for b in run.batches])
    sample = todo[np.unique(np.linspace(0, len(todo) - 1, min(SAMPLE_PAIRS, len(todo))).astype(np.int64))]
    pairs = run.pairs
    query = pairs.queries[int(pairs.pair_group[sample[0]])]
    documents = take_texts(pairs.texts, pairs.pair_text[sample])
    try:
        started = time.perf_counter()
        model.score(query, documents[:1])  # warm-up: a model loads or compiles on its first call
        warm = time.perf_counter() - started
        # one call, as the run batches its pairs; as many pairs as fit in about SAMPLE_SECONDS (4 at least)
        timed = len(documents[: max(4, min(SAMPLE_PAIRS, int(SAMPLE_SECONDS / max(warm, 1e-3))))])
        started = time.perf_counter()
        model.score(query, documents[:timed])
        elapsed = max(time.perf_counter() - started, 1e-6)
    except Exception:  # noqa: BLE001 - a time estimate never fails the estimate
        return None, None
    return run.to_score * elapsed / timed, f"measured here: {timed} pairs in {elapsed:.2f} s"


def computes_locally(reranker: Any) -> bool:
    """Whether a reranker (object or class) computes on this machine, so that timing a sample of its pairs
    costs nothing: rerankpd's own that send no request (e5, cross-encoder, bm25). A reranker of your own
    says so with a class attribute ``computes_locally = True``; without it, it is not timed (it might call a
    paid service).

    >>> from rerankpd.rerankers import reranker_class
    >>> computes_locally(reranker_class("bm25")), computes_locally(reranker_class("dmxapi"))
    (True, False)
    """
    from ..rerankers.http.client import HTTPReranker

    cls = reranker if isinstance(reranker, type) else type(reranker)
    declared = getattr(cls, "computes_locally", None)
    if declared is not None:
        return bool(declared)
    return cls.__module__.startswith("rerankpd.rerankers.") and not issubclass(cls, HTTPReranker)


def duration(seconds: float) -> str:
    """A duration in words.

    >>> duration(0.2), duration(4.2), duration(130), duration(2700), duration(9000)
    ('under a second', '4 s', '2 min', '45 min', '2.5 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 1 else "under a second"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _counted_by_reranker(own_count, run) -> tuple[int, int]:
    """Requests and tokens summed over the planned calls, as the reranker counts them."""
    from ..pairs import take_texts

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


def reranker_for_estimate(reranker: Any, **options: Any) -> AbstractContextManager[Reranker]:
    """The reranker an estimate plans with, as a context manager; one made here (from a name or None) is
    closed after it.

    Like :func:`rerankpd.run.pipeline.reranker_in_use`, except that a hosted reranker named without its API key
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
    from ..rerankers.http.client import HTTPReranker

    cls = reranker_class(name)
    if not (issubclass(cls, HTTPReranker) and cls.key_required) or options.get("api_key") is not None:
        return None
    availability = cls.availability()
    if availability.ready is not False:
        return None
    warn_user(f"rerankpd: {name.lower()}: {availability.note} before a real run (an estimate needs no key)")

    def refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RerankError(f"{self.name} was built without its API key to plan an estimate; it sends nothing")

    members = {
        "key_required": False,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "score_batch": refuse,
        "session": refuse,
    }
    for method in ("embed_queries", "embed_documents"):  # an embedding API embeds through its own request
        if callable(getattr(cls, method, None)):
            members[method] = refuse
    return type(cls.__name__, (cls,), members)
