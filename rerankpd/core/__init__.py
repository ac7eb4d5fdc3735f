"""Private: the ground floor, the rules every layer shares.

Option validation (:mod:`.options`), the token counts (:mod:`.tokens`), chunk windows (:mod:`.chunking`) and
the reranker identity digest (:mod:`.identity`). Both :mod:`rerankpd.rerankers` and :mod:`rerankpd.run` import
these; nothing here imports either. Not public API: names may change between releases.
"""
