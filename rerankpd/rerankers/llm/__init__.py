"""Private: a chat model as a reranker (:mod:`.reranker`) and its prompts (:mod:`.prompts`).

Use it by name: ``get_reranker("llm", model=...)``. Not public API: names may change between releases.
"""
