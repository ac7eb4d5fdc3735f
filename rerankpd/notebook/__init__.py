"""Private: the notebook side, the panel (:mod:`.panel`, a view over :func:`rerankpd.rerank`) and the display
of a ranked frame (:mod:`.display`).

The public entry points are :class:`rerankpd.RerankPanel` and :func:`rerankpd.show`. Not public API: names may
change between releases.
"""
