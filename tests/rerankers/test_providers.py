"""Every hosted and self-hosted provider against a real loopback server speaking its documented JSON.

For each provider: the request's path, auth header and exact body; the parse (results come back sorted by
score, so they must be matched by index); usage; the provider's error body turned into our error with the
provider's words; the key variable named before any request; the default per-request document limit,
enforced by the loopback server as the service does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pytest
import requests

import rerankpd
from rerankpd.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    RateLimitError,
    ServerError,
)
from rerankpd.run import plan
from rerankpd.testing import LoopbackRerankServer, overlap_score

KEY = "sk-provider-canary-7c21"
QUERY = "how to prevent a cold"
DOCS = ["stock prices fell", "wash hands to prevent a cold", "cold weather ahead", "prevent a cold: sleep"]


@dataclass
class Spec:
    name: str
    path: str
    key_env: tuple[str, ...]  # () for self-hosted servers that need no key
    body: dict  # the exact body for QUERY and DOCS with default options
    usage: dict  # out.attrs["rerank"]["usage"] for one request of QUERY and DOCS
    batch: int  # default documents per request
    enforced: bool = False  # the service rejects more than `batch` documents per request
    over_limit_error: type = BadRequestError
    error_words: str = "invalid thing here"
    extra: dict = field(default_factory=dict)
    auth_header: str = "Authorization"  # Pinecone: Api-Key, with the bare key
    auth_scheme: str = "Bearer "
    names_a_model: bool = False  # a self-hosted server whose API requires the model's name

    def auth(self, key: str) -> str:
        return self.auth_scheme + key

    @property
    def hosted(self) -> bool:
        return bool(self.key_env)


TOKENS = len(QUERY) + sum(len(d) for d in DOCS)  # what the loopback server reports as token usage
SPECS = [
    Spec(
        "siliconflow",
        "/v1/rerank",
        ("SILICONFLOW_API_KEY",),
        {"model": "BAAI/bge-reranker-v2-m3", "query": QUERY, "documents": DOCS, "top_n": 4, "return_documents": False},
        {"input_tokens": TOKENS, "output_tokens": 0},
        64,
    ),
    Spec(
        "cohere",
        "/v2/rerank",
        ("CO_API_KEY", "COHERE_API_KEY"),
        {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 4},
        {"search_units": 1, "tokens.input_tokens": TOKENS, "tokens.output_tokens": 0},
        1000,
    ),
    Spec(
        "jina",
        "/v1/rerank",
        ("JINA_API_KEY",),
        {
            "model": "jina-reranker-v2-base-multilingual",
            "query": QUERY,
            "documents": DOCS,
            "top_n": 4,
            "return_documents": False,
        },
        {"total_tokens": TOKENS, "prompt_tokens": TOKENS},
        64,
    ),
    Spec(
        "voyage",
        "/v1/rerank",
        ("VOYAGE_API_KEY",),
        {"query": QUERY, "documents": DOCS, "model": "rerank-2.5", "top_k": 4},
        {"total_tokens": TOKENS},
        1000,
        enforced=True,
    ),
    Spec(
        "dashscope",
        "/api/v1/services/rerank/text-rerank/text-rerank",
        ("DASHSCOPE_API_KEY",),
        {
            "model": "gte-rerank-v2",
            "input": {"query": QUERY, "documents": DOCS},
            "parameters": {"top_n": 4, "return_documents": False},
        },
        {"total_tokens": TOKENS},
        500,
        enforced=True,
    ),
    Spec(
        "tei",
        "/rerank",
        (),
        {"query": QUERY, "texts": DOCS, "raw_scores": False, "return_text": False},
        {},
        32,
        enforced=True,
    ),
    Spec(
        "infinity",
        "/rerank",
        (),
        {"query": QUERY, "documents": DOCS, "return_documents": False, "raw_scores": False, "top_n": 4},
        {"prompt_tokens": TOKENS, "total_tokens": TOKENS},
        2048,
        enforced=True,
    ),
    Spec(
        "vllm",
        "/v1/rerank",
        (),
        {"query": QUERY, "documents": DOCS, "top_n": 4},
        {"prompt_tokens": TOKENS, "total_tokens": TOKENS},
        64,
    ),
    Spec(
        "pinecone",
        "/rerank",
        ("PINECONE_API_KEY",),
        {
            "model": "bge-reranker-v2-m3",
            "query": QUERY,
            "documents": [{"text": d} for d in DOCS],
            "rank_fields": ["text"],
            "top_n": 4,
            "return_documents": False,
        },
        {"rerank_units": 1},
        100,
        enforced=True,
        auth_header="Api-Key",
        auth_scheme="",
    ),
    Spec(
        "nim",
        "/v1/ranking",
        (),
        {
            "model": "nvidia/llama-3.2-nv-rerankqa-1b-v2",
            "query": {"text": QUERY},
            "passages": [{"text": d} for d in DOCS],
        },
        {},
        64,
        names_a_model=True,
    ),
    Spec(
        "mixedbread",
        "/v1/reranking",
        ("MXBAI_API_KEY",),
        {
            "model": "mixedbread-ai/mxbai-rerank-large-v2",
            "query": QUERY,
            "input": DOCS,
            "top_k": 4,
            "return_input": False,
        },
        {"prompt_tokens": TOKENS, "total_tokens": TOKENS, "completion_tokens": 0},
        64,
    ),
]
BY_NAME = {s.name: s for s in SPECS}


def make(spec: Spec, server: LoopbackRerankServer, **options):
    options.setdefault("base_url", server.url)
    if spec.hosted or server.api_key:
        options.setdefault("api_key", KEY)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.02)
    options.setdefault("timeout", (2.0, 5.0))
    return rerankpd.get_reranker(spec.name, **options)


@pytest.fixture(params=SPECS, ids=lambda s: s.name)
def spec(request) -> Spec:
    return request.param


@pytest.fixture
def server(spec):
    with LoopbackRerankServer(api_key=KEY if spec.hosted else None, dialect=spec.name) as srv:
        yield srv


def frame(docs=DOCS) -> pd.DataFrame:
    return pd.DataFrame({"text": docs})


def test_every_provider_is_registered():
    assert set(BY_NAME) <= set(rerankpd.available_rerankers())


def test_request_path_auth_and_body(spec, server):
    out = frame().rerank(QUERY, reranker=make(spec, server), cache=False, progress=False)
    (request,) = server.requests
    assert request.path == spec.path
    assert request.body == spec.body
    auth = request.headers.get(spec.auth_header)
    assert auth == (spec.auth(KEY) if spec.hosted else None)
    assert request.headers.get("Content-Type") == "application/json"
    assert len(out) == len(DOCS)


def test_scores_are_matched_by_index_not_position(spec, server):
    out = frame().rerank(QUERY, reranker=make(spec, server), cache=False, progress=False, sort=False)
    expected = [overlap_score(QUERY, d) for d in DOCS]
    assert out["rerank_score"].tolist() == pytest.approx(expected)
    # the server answered best-first, which is not the input order: a positional parse would be wrong
    order = sorted(range(len(DOCS)), key=lambda i: -expected[i])
    assert order != list(range(len(DOCS)))
    assert out["rerank_rank"].tolist() == [order.index(i) + 1 for i in range(len(DOCS))]


def test_usage_is_read_from_the_provider_field(spec, server):
    out = frame().rerank(QUERY, reranker=make(spec, server), cache=False, progress=False)
    info = out.attrs["rerank"]
    assert info["usage"] == spec.usage
    assert info["reranker"] == spec.name and info["requests"] == 1 and info["sent"] == len(DOCS)


def test_error_body_gives_the_provider_words(spec, server):
    server.fail_next("status", status=400, message=spec.error_words)
    with pytest.raises(BadRequestError) as info:
        make(spec, server).score(QUERY, DOCS)
    assert spec.error_words in str(info.value)
    assert info.value.status_code == 400 and info.value.provider == spec.name
    assert len(server.requests) == 1  # a 400 is never retried


def test_rejected_key_is_an_authentication_error_without_the_key(spec):
    with LoopbackRerankServer(api_key="another-key", dialect=spec.name) as server:
        with pytest.raises(AuthenticationError) as info:
            make(spec, server, api_key=KEY).score(QUERY, DOCS)
    assert info.value.status_code == 401
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert "api_key=" in str(info.value)  # the key came from api_key=, so the hint names it, not a variable


@pytest.mark.parametrize("spec", [s for s in SPECS if s.hosted], ids=lambda s: s.name)
def test_rejected_key_from_a_variable_names_that_variable(spec, monkeypatch):
    with LoopbackRerankServer(api_key="another-key", dialect=spec.name) as server:
        for var in spec.key_env:
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv(spec.key_env[-1], KEY)
        monkeypatch.setenv(f"{spec.name.upper()}_BASE_URL", server.url)
        with pytest.raises(AuthenticationError) as info:
            rerankpd.get_reranker(spec.name, max_retries=0).score(QUERY, DOCS)
    assert f"check the API key in {spec.key_env[-1]}" in str(info.value)
    assert KEY not in str(info.value)


def test_429_is_retried_then_succeeds(spec, server):
    server.fail_next("429", count=2, retry_after="0")
    assert make(spec, server).score(QUERY, DOCS) == pytest.approx([overlap_score(QUERY, d) for d in DOCS])
    assert len(server.requests) == 3


def test_exhausted_retries_raise_with_the_status(spec, server):
    server.fail_next("503", count=3)
    with pytest.raises(ServerError) as info:
        make(spec, server, max_retries=2).score(QUERY, DOCS)
    assert info.value.status_code == 503 and len(server.requests) == 3
    server.reset()
    server.fail_next("429", count=2, retry_after="0")
    with pytest.raises(RateLimitError):
        make(spec, server, max_retries=1).score(QUERY, DOCS)


def test_default_batch_limit(spec, server):
    reranker = make(spec, server)
    assert reranker.batch_size == spec.batch
    docs = [f"doc {i} prevent a cold" for i in range(spec.batch + 1)]
    out = frame(docs).rerank(QUERY, reranker=reranker, cache=False, progress=False)
    assert out["rerank_score"].notna().all()
    sizes = [len(server.dialect.parse_request(r.body)[1]) for r in server.requests]
    assert sorted(sizes) == [1, spec.batch]  # requests run concurrently: arrival order varies
    if spec.enforced:  # the loopback server refuses one more, as the service does
        try:
            over = make(spec, server, batch_size=spec.batch + 1)
        except ConfigurationError as exc:  # a published limit: refused before any request
            assert f"limit of {spec.batch} documents" in str(exc)
            body = reranker.request_body(QUERY, docs)  # built by hand: the client would never send it
            headers = {spec.auth_header: spec.auth(KEY)} if spec.hosted else {}
            answer = requests.post(
                server.url + spec.path.removeprefix(server.url.removeprefix(server.root)),
                json=body,
                headers=headers,
                timeout=5,
            )
            assert answer.status_code in (400, 413, 422)
        else:
            with pytest.raises(spec.over_limit_error):
                over.score(QUERY, docs)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.hosted], ids=lambda s: s.name)
def test_hosted_provider_without_key_names_its_variable_before_any_request(spec):
    with LoopbackRerankServer(api_key=KEY, dialect=spec.name) as server:
        with pytest.raises(ConfigurationError, match=spec.key_env[0]):
            frame().rerank(QUERY, reranker=spec.name, cache=False, progress=False)
        with pytest.raises(rerankpd.RerankError, match=spec.key_env[0]):
            rerankpd.get_reranker(spec.name, base_url=server.url)
        assert server.requests == []


@pytest.mark.parametrize("spec", [s for s in SPECS if s.hosted], ids=lambda s: s.name)
def test_hosted_provider_reads_its_key_and_base_url_from_the_environment(spec, monkeypatch):
    with LoopbackRerankServer(api_key=KEY, dialect=spec.name) as server:
        monkeypatch.setenv(spec.key_env[-1], KEY)
        monkeypatch.setenv(f"{spec.name.upper()}_BASE_URL", server.url)
        out = frame().rerank(QUERY, reranker=spec.name, cache=False, progress=False)
        assert out["rerank_score"].notna().all()
        assert server.requests[0].headers[spec.auth_header] == spec.auth(KEY)


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.hosted], ids=lambda s: s.name)
def test_self_hosted_provider_sends_a_bearer_key_only_when_given(spec):
    with LoopbackRerankServer(api_key=KEY, dialect=spec.name) as server:
        make(spec, server, api_key=KEY).score(QUERY, DOCS)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
        with pytest.raises(AuthenticationError):
            rerankpd.get_reranker(spec.name, base_url=server.url, max_retries=0).score(QUERY, DOCS)
        assert "Authorization" not in server.requests[-1].headers


def test_key_never_shows_in_repr_or_identity(spec, server):
    reranker = make(spec, server, api_key=KEY, model=spec.name + "-model")
    assert KEY not in repr(reranker) and KEY not in str(reranker.identity())
    assert reranker.identity()["provider"] == spec.name
    assert reranker.identity()["endpoint"] == server.url + spec.path.removeprefix(server.url.removeprefix(server.root))


def test_cohere_falls_back_to_co_api_key(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", KEY)
    assert rerankpd.get_reranker("cohere").has_key


@pytest.mark.parametrize(
    "name, options, sent",
    [
        (
            "siliconflow",
            {"max_chunks_per_doc": 3, "overlap_tokens": 40},
            {"max_chunks_per_doc": 3, "overlap_tokens": 40},
        ),
        (
            "siliconflow",
            {"model": "Qwen/Qwen3-Reranker-8B", "instruction": "rank by relevance"},
            {"model": "Qwen/Qwen3-Reranker-8B", "instruction": "rank by relevance"},
        ),
        ("cohere", {"max_tokens_per_doc": 512}, {"max_tokens_per_doc": 512}),
        ("voyage", {"truncation": False}, {"truncation": False}),
        ("tei", {"raw_scores": True, "truncate": True}, {"raw_scores": True, "truncate": True}),
        ("infinity", {"raw_scores": True, "model": "mxbai"}, {"raw_scores": True, "model": "mxbai"}),
        ("vllm", {"truncate_prompt_tokens": 256, "model": "bge"}, {"truncate_prompt_tokens": 256, "model": "bge"}),
    ],
)
def test_provider_options_are_sent_and_change_the_cache_identity(name, options, sent):
    spec = BY_NAME[name]
    with LoopbackRerankServer(api_key=KEY if spec.hosted else None, dialect=name) as server:
        named = {"model": spec.name + "-model"}  # self-hosted rerankers cache only when a model is named
        plain, tuned = make(spec, server, **named), make(spec, server, **{**named, **options})
        tuned.score(QUERY, DOCS)
        body = server.requests[0].body
        for key, value in sent.items():
            assert body[key] == value
        assert plain.identity() != tuned.identity()


@pytest.mark.parametrize(
    "name, options, word",
    [
        ("siliconflow", {"overlap_tokens": 81}, "overlap_tokens"),
        ("siliconflow", {"max_chunks_per_doc": 0}, "max_chunks_per_doc"),
        ("cohere", {"max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ("voyage", {"truncation": "yes"}, "truncation"),
        ("tei", {"raw_scores": 1}, "raw_scores"),
        ("vllm", {"truncate_prompt_tokens": 0}, "truncate_prompt_tokens"),
        ("jina", {"max_chunks_per_doc": 2, "overlap_tokens": 600}, "overlap_tokens"),
        ("tei", {"chunk_tokens": 100}, "max_chunks_per_doc"),
        ("dashscope", {"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_option_names_itself(name, options, word):
    with pytest.raises(ConfigurationError, match=word):
        rerankpd.get_reranker(name, api_key=KEY, **options)


def test_dashscope_error_code_is_kept_in_the_message():
    spec = BY_NAME["dashscope"]
    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        server.fail_next("status", status=400, message="Range of input length should be [1, 4000]")
        with pytest.raises(BadRequestError, match=r"InvalidParameter: Range of input length"):
            make(spec, server).score(QUERY, DOCS)


def test_tei_error_type_is_kept_in_the_message():
    spec = BY_NAME["tei"]
    with LoopbackRerankServer(dialect="tei") as server:
        with pytest.raises(BadRequestError, match=r"at most 32 per request \(validation\)"):
            make(spec, server, batch_size=33).score(QUERY, [f"d{i}" for i in range(33)])


def test_vllm_flat_error_body_of_older_releases_is_read():
    from rerankpd.testing import VLLMDialect

    class OldVLLM(VLLMDialect):
        def error_body(self, status, message):
            return {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": status}

    with LoopbackRerankServer(dialect=OldVLLM()) as server:
        server.fail_next("status", status=400, message="max_model_len exceeded")
        with pytest.raises(BadRequestError, match="max_model_len exceeded"):
            make(BY_NAME["vllm"], server).score(QUERY, DOCS)


def test_a_result_missing_an_index_is_a_bad_response(spec, server):
    from rerankpd.errors import BadResponseError

    server.fail_next("missing_index", count=2)
    with pytest.raises(BadResponseError, match="without a score"):
        make(spec, server, max_retries=1).score(QUERY, DOCS)


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.hosted and not s.names_a_model], ids=lambda s: s.name)
def test_self_hosted_without_a_model_name_is_not_cached(spec, tmp_path):
    """The same URL can serve another model tomorrow: without model= there is nothing to key the cache on."""
    df = pd.DataFrame({"text": DOCS})
    plan.NOT_CACHED_WARNING.reset()  # said once per class per process: another test may have said it
    with LoopbackRerankServer(dialect=spec.name) as server:
        anonymous = rerankpd.get_reranker(spec.name, base_url=server.url)
        assert anonymous.identity() is None
        with pytest.warns(RuntimeWarning, match="pass model="):
            df.rerank(QUERY, reranker=anonymous, cache=tmp_path, progress=False)
        df.rerank(QUERY, reranker=anonymous, cache=tmp_path, progress=False)
        assert len(server.requests) == 2
        named = rerankpd.get_reranker(spec.name, base_url=server.url, model="bge-reranker-v2-m3")
        df.rerank(QUERY, reranker=named, cache=tmp_path, progress=False)
        out = df.rerank(QUERY, reranker=named, cache=tmp_path, progress=False)
        assert len(server.requests) == 3 and out.attrs["rerank"]["from_cache"] == len(DOCS)
