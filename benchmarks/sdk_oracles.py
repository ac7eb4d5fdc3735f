"""The official SDKs too heavy for the ``test`` extra as oracles: each is pointed at rerankpd's loopback fake,
must parse its answer to the scores rerankpd reads, and must send the body rerankpd sends, field by field.

    pip install voyageai dashscope openai cohere
    python benchmarks/sdk_oracles.py

Prints one line per SDK (``same``, a difference, or ``not installed``) and exits 1 on any difference.
(``pinecone``, ``mixedbread`` and ``cohere`` are checked in ``tests/rerankers/test_sdk_oracles.py``.)
"""

from __future__ import annotations

import sys

import rerankpd
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-oracle-not-a-real-key"
QUERY = "how to prevent a cold"
DOCS = ["stock prices fell", "wash hands to prevent a cold", "cold weather ahead", "prevent a cold: sleep"]


def _compare(name: str, sdk_body: dict, ours_body: dict, sdk_scores: dict, ours_scores: list) -> str:
    problems = [
        f"{k}: sdk {sdk_body.get(k)!r} != ours {ours_body.get(k)!r}"
        for k in sorted(set(sdk_body) | set(ours_body))
        if sdk_body.get(k) != ours_body.get(k)
    ]
    if sdk_scores != dict(enumerate(ours_scores)):
        problems.append("scores differ")
    return "same" if not problems else "; ".join(problems)


def voyage() -> str:
    import voyageai

    with LoopbackRerankServer(api_key=KEY, dialect="voyage") as server:
        answer = voyageai.Client(api_key=KEY, base_url=server.url).rerank(
            QUERY, DOCS, model="rerank-2.5", top_k=len(DOCS), truncation=True
        )
        sdk = server.requests[-1].body
        ours = rerankpd.get_reranker("voyage", api_key=KEY, base_url=server.url, truncation=True)
        scores = ours.score(QUERY, DOCS)
        return _compare(
            "voyage", sdk, server.requests[-1].body, {r.index: r.relevance_score for r in answer.results}, scores
        )


def dashscope() -> str:
    import dashscope as ds

    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        ds.base_http_api_url = server.url
        answer = ds.TextReRank.call(
            model="qwen3-rerank",
            query=QUERY,
            documents=DOCS,
            top_n=len(DOCS),
            return_documents=False,
            api_key=KEY,
            instruct="Retrieve passages that answer",
        )
        sdk = server.requests[-1].body
        ours = rerankpd.get_reranker(
            "dashscope",
            api_key=KEY,
            base_url=server.url,
            model="qwen3-rerank",
            instruct="Retrieve passages that answer",
        )
        scores = ours.score(QUERY, DOCS)
        return _compare(
            "dashscope",
            sdk,
            server.requests[-1].body,
            {r.index: r.relevance_score for r in answer.output.results},
            scores,
        )


def openai_chat() -> str:
    import openai

    with LoopbackRerankServer(api_key=KEY, dialect="openai-chat") as server:
        ours = rerankpd.get_reranker("llm", api_key=KEY, base_url=server.url, model="gpt-4o-mini")
        ours.score(QUERY, DOCS[:1])
        body = server.requests[-1].body
        client = openai.OpenAI(api_key=KEY, base_url=server.url, max_retries=0)
        answer = client.chat.completions.create(**body)
        sdk = server.requests[-1].body
        top = answer.choices[0].logprobs.content[0].top_logprobs
        return _compare("openai", sdk, body, {0: len(top)}, [float(body["top_logprobs"])])


def main() -> int:
    failed = False
    for check in (voyage, dashscope, openai_chat):
        try:
            line = check()
        except ImportError as exc:
            line = f"not installed ({exc.name})"
        failed |= line not in ("same",) and not line.startswith("not installed")
        print(f"{check.__name__:12} {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
