"""DMXAPI's hosted ``bge-reranker-v2-m3`` behind ``POST {base_url}/rerank``.

The contract is DMXAPI's page "bge-reranker-v2-m3-free 重排序模型 API 文档" (kept in the project's
``shared/seed/dmxapi-rerank-api.md``): a JSON body with ``model``, ``query``, ``documents`` and the optional
``top_n``, ``return_documents``, ``max_chunks_per_doc`` and ``overlap_tokens`` (at most 80); the key in the
``Authorization`` header, bare as in the page's example (``auth_scheme="Bearer"`` sends ``Bearer <key>``);
the answer ``{"results": [{"index", "relevance_score", "document"?}], "usage": {...}}``.

We send ``top_n`` equal to the batch and ``return_documents: false``, so every document sent comes back
scored and no text is echoed. DMXAPI answers 401 when the account's quota is used up, not only for a bad key.

Examples
--------
>>> r = DMXAPIReranker(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
>>> r.endpoint
'http://127.0.0.1:9/v1/rerank'
>>> r
DMXAPIReranker(endpoint='http://127.0.0.1:9/v1/rerank', model='bge-reranker-v2-m3-free', api_key=***)
"""

from __future__ import annotations

from .http.server_chunked import ServerChunkedReranker

__all__ = ["DMXAPIReranker"]


class DMXAPIReranker(ServerChunkedReranker):
    """DMXAPI's rerank API.

    Parameters
    ----------
    max_chunks_per_doc
        Chunks a long document is cut into on the server; its score is its best chunk's.
    overlap_tokens
        Tokens shared by neighbouring chunks, 0 to 80.
    **options
        ``api_key`` (default ``DMXAPI_API_KEY``), ``base_url`` (default ``DMXAPI_BASE_URL``, else
        ``https://www.dmxapi.cn/v1``), ``model``, ``batch_size``, ``max_concurrency``, ``timeout``,
        ``max_retries``, ``auth_scheme`` (default ``""``: the bare key, as DMXAPI's page shows).
    """

    name = "dmxapi"
    default_base_url = "https://www.dmxapi.cn/v1"
    base_url_env = "DMXAPI_BASE_URL"
    key_env = ("DMXAPI_API_KEY",)
    key_domains = ("dmxapi.cn", "dmxapi.com")
    default_model = "bge-reranker-v2-m3-free"
    default_batch_size = 32
    default_max_concurrency = 4
    default_auth_scheme = ""

    def auth_hint(self, status: int) -> str:
        return (
            super().auth_hint(status)[:-1] + "; DMXAPI also answers 401 when the account's quota is used up: "
            "top it up on dmxapi.cn)"
        )
