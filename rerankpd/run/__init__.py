"""Private: one call of :func:`rerankpd.rerank`, from the frame to the ranked result.

Arguments and columns, the plan (pairs, chunks, cache look-up, batches), the scheduler (the one bounded
in-flight loop), progress, the embedding path, assembly (:mod:`.pipeline`), cascades and estimates. The
public entry points are :func:`rerankpd.rerank`, :func:`rerankpd.scores` and :func:`rerankpd.estimate`
(:mod:`rerankpd.api`). Not public API: names may change between releases.
"""
