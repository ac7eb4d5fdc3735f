"""Every cache of rerankpd, in one diskcache directory: scores, embeddings and LLM window answers.

- :mod:`~rerankpd.cache.keys`: how identities, queries, texts and windows hash to keys;
- :mod:`~rerankpd.cache.store`: the store (a :class:`diskcache.Cache` of raw bytes only), its settings,
  its failure policy, :func:`cache_info` and :func:`clear_cache`;
- :mod:`~rerankpd.cache.scores`: the score cache (:class:`~rerankpd.cache.scores.RunCache` for a run,
  :class:`ScoreCache` outside one);
- :mod:`~rerankpd.cache.embeddings` and :mod:`~rerankpd.cache.windows`: the embedding and window caches.
"""

from __future__ import annotations

from .scores import ScoreCache
from .store import STORE_ERRORS, CacheSettings, cache_info, clear_cache, settings_for

__all__ = ["STORE_ERRORS", "CacheSettings", "ScoreCache", "cache_info", "clear_cache", "settings_for"]
