"""Private: what every hosted reranker shares.

The client (:mod:`.client`: the session, timeouts and the request loop), the transport, the retry policy,
answer parsing, the rate limiter and the chunked bases. Each service lives in its own module one level up
(:mod:`rerankpd.rerankers.cohere`, ...). Not public API: names may change between releases.
"""
