"""Private: is a ranking any good? Evaluation, metrics, significance, agreement and their plots.

The public entry points are :func:`rerankpd.evaluation`, :class:`rerankpd.Evaluation`,
:func:`rerankpd.agreement` and :class:`rerankpd.Agreement`. Not public API: names may change between releases.
"""
