"""Private: the registry of rerankers, name -> "module:Class", imported lazily.

Public through :mod:`rerankpd.rerankers` (:func:`get_reranker`, :func:`available_rerankers`). It imports no
reranker module, so :mod:`rerankpd.rerankers.base` can name the known rerankers in its messages.

Examples
--------
>>> "bm25" in available_rerankers()
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .base import Reranker

__all__ = ["REGISTRY", "available_rerankers", "get_reranker", "reranker_class"]

#: name -> "module:Class"; modules are imported only when their reranker is asked for.
REGISTRY: dict[str, str] = {
    "bm25": "rerankpd.rerankers.bm25:BM25Reranker",
    "cohere": "rerankpd.rerankers.cohere:CohereReranker",
    "cross-encoder": "rerankpd.rerankers.cross_encoder:CrossEncoderReranker",
    "dashscope": "rerankpd.rerankers.dashscope:DashScopeReranker",
    "dmxapi": "rerankpd.rerankers.dmxapi:DMXAPIReranker",
    "e5": "rerankpd.rerankers.e5:E5Reranker",
    "embeddings": "rerankpd.rerankers.openai_embeddings:EmbeddingsReranker",
    "infinity": "rerankpd.rerankers.infinity:InfinityReranker",
    "jina": "rerankpd.rerankers.jina:JinaReranker",
    "llm": "rerankpd.rerankers.llm.reranker:LLMReranker",
    "mixedbread": "rerankpd.rerankers.mixedbread:MixedbreadReranker",
    "nim": "rerankpd.rerankers.nim:NIMReranker",
    "pinecone": "rerankpd.rerankers.pinecone:PineconeReranker",
    "siliconflow": "rerankpd.rerankers.siliconflow:SiliconFlowReranker",
    "tei": "rerankpd.rerankers.tei:TEIReranker",
    "vllm": "rerankpd.rerankers.vllm:VLLMReranker",
    "voyage": "rerankpd.rerankers.voyage:VoyageReranker",
}


def available_rerankers() -> list[str]:
    """The names :func:`get_reranker` accepts, sorted."""
    return sorted(REGISTRY)


def reranker_class(name: str) -> type[Reranker]:
    """The class registered under ``name``; ValueError naming the known ones if there is none."""
    try:
        target = REGISTRY[name.lower() if isinstance(name, str) else name]  # names are case-insensitive
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown reranker {name!r}; choose one of {', '.join(available_rerankers())}"
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_reranker(name: str, **options) -> Reranker:
    """Make the reranker registered under ``name`` with ``options``.

    Examples
    --------
    >>> get_reranker("bm25").name
    'bm25'
    """
    return reranker_class(name)(**options)
