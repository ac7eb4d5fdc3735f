"""Keys stay home, and every message about a key names where that key came from.

A key read from a provider's variable goes only to that provider's hosts (and to the host of the base URL
the environment names for it); ``api_key=`` goes wherever ``base_url`` says. Each HTTP reranker is checked
against a loopback server, which is a foreign host for every variable.
"""

from __future__ import annotations

import pytest

import rerankpd
from rerankpd.errors import AuthenticationError, ConfigurationError
from rerankpd.rerankers import REGISTRY, reranker_class
from rerankpd.rerankers.http.client import HTTPReranker
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-home-canary-5e1f"
QUERY, DOCS = "how to prevent a cold", ["wash hands", "stock prices"]

HTTP_NAMES = sorted(n for n in REGISTRY if issubclass(reranker_class(n), HTTPReranker))
HOSTED = [n for n in HTTP_NAMES if reranker_class(n).key_domains is not None]
GENERIC = {"llm": "openai-chat", "embeddings": "openai-embeddings"}  # keyless on a foreign host
OPTIONAL = [n for n in HOSTED if not reranker_class(n).key_required]  # a hosted API or a keyless server (NIM)


def _clear(monkeypatch, cls):
    for var in cls.key_env + cls.base_url_env_names() + ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _options(name):
    return {"model": "m"} if name in GENERIC else {}


def test_every_http_reranker_is_covered():
    assert {
        "cohere",
        "dashscope",
        "dmxapi",
        "embeddings",
        "jina",
        "llm",
        "siliconflow",
        "voyage",
        "pinecone",
        "mixedbread",
        "nim",
    } <= set(HOSTED)
    assert {"tei", "vllm", "infinity"} <= set(HTTP_NAMES) - set(HOSTED)


@pytest.mark.parametrize("name", [n for n in HOSTED if n not in GENERIC and n not in OPTIONAL])
def test_a_variable_key_is_not_sent_to_another_host(name, monkeypatch):
    cls = reranker_class(name)
    _clear(monkeypatch, cls)
    with LoopbackRerankServer(api_key=KEY, dialect=name) as server:
        for var in cls.key_env:
            monkeypatch.setenv(var, KEY)
        with pytest.raises(ConfigurationError, match=f"{cls.key_env[0]} is set, but .*api_key=") as info:
            rerankpd.get_reranker(name, base_url=server.url, **_options(name))
        assert KEY not in str(info.value)
        assert server.requests == []
        # the same variable goes to the host the environment names for the provider
        monkeypatch.setenv(cls.base_url_env_names()[0], server.url)
        reranker = rerankpd.get_reranker(name, base_url=server.url, max_retries=0)
        reranker.score(QUERY, DOCS)
        headers = server.requests[-1].headers
        assert KEY in (headers.get("Authorization") or "") + (headers.get("Api-Key") or "")
        # api_key= goes where base_url says
        monkeypatch.delenv(cls.base_url_env_names()[0])
        rerankpd.get_reranker(name, base_url=server.url, api_key=KEY).score(QUERY, DOCS)
        assert len(server.requests) == 2


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_generic_clients_send_no_variable_key_to_another_host(name, monkeypatch):
    cls = reranker_class(name)
    _clear(monkeypatch, cls)
    monkeypatch.setenv("DMXAPI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with LoopbackRerankServer(dialect=GENERIC[name]) as server:
        reranker = rerankpd.get_reranker(name, base_url=server.url, model="m", max_retries=0)
        assert not reranker.has_key
        reranker.score(QUERY, DOCS)
        assert server.requests and all("Authorization" not in r.headers for r in server.requests)
        # OPENAI_BASE_URL makes that host OpenAI's: OPENAI_API_KEY goes there
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        rerankpd.get_reranker(name, base_url=server.url, model="m").score(QUERY, DOCS)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("name", OPTIONAL)
def test_an_optional_variable_key_is_not_sent_to_another_host(name, monkeypatch):
    cls = reranker_class(name)
    _clear(monkeypatch, cls)
    monkeypatch.setenv(cls.key_env[0], KEY)
    with LoopbackRerankServer(dialect=name) as server:
        reranker = rerankpd.get_reranker(name, base_url=server.url)
        assert not reranker.has_key
        reranker.score(QUERY, DOCS)
        assert "Authorization" not in server.requests[-1].headers
        rerankpd.get_reranker(name, base_url=server.url, api_key=KEY).score(QUERY, DOCS)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_openai_key_is_used_for_openai_and_dmxapi_key_for_dmxapi(name, monkeypatch):
    _clear(monkeypatch, reranker_class(name))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("DMXAPI_API_KEY", "sk-dmxapi")
    openai = rerankpd.get_reranker(name, base_url="https://api.openai.com/v1", model="m")
    assert openai.key_source == "OPENAI_API_KEY"
    assert rerankpd.get_reranker(name, model="m").key_source == "DMXAPI_API_KEY"


@pytest.mark.parametrize("name", ["tei", "vllm", "infinity"])
def test_a_self_hosted_servers_own_variable_goes_to_its_base_url(name, monkeypatch):
    cls = reranker_class(name)
    _clear(monkeypatch, cls)
    monkeypatch.setenv(cls.key_env[0], KEY)
    with LoopbackRerankServer(api_key=KEY, dialect=name) as server:
        rerankpd.get_reranker(name, base_url=server.url).score(QUERY, DOCS)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_a_401_names_api_key_when_the_key_came_from_api_key(name, monkeypatch):
    _clear(monkeypatch, reranker_class(name))
    monkeypatch.setenv("DMXAPI_API_KEY", "sk-unrelated")
    with LoopbackRerankServer(api_key=KEY, dialect=GENERIC[name]) as server:
        with pytest.raises(AuthenticationError) as info:
            rerankpd.get_reranker(name, base_url=server.url, api_key="sk-wrong", model="m", max_retries=0).score(
                QUERY, DOCS
            )
        assert "api_key=" in str(info.value) and "DMXAPI_API_KEY" not in str(info.value)
        with pytest.raises(AuthenticationError) as info:  # no key was sent: say why
            rerankpd.get_reranker(name, base_url=server.url, model="m", max_retries=0).score(QUERY, DOCS)
        assert "no API key was sent: DMXAPI_API_KEY is set, but its key goes only to" in str(info.value)


def test_voyage_atlas_keys_go_to_mongodb(monkeypatch):
    _clear(monkeypatch, reranker_class("voyage"))
    assert rerankpd.get_reranker("voyage", api_key="al-atlas").endpoint == "https://ai.mongodb.com/v1/rerank"
    assert rerankpd.get_reranker("voyage", api_key="pa-voyage").endpoint == "https://api.voyageai.com/v1/rerank"
    monkeypatch.setenv("VOYAGE_API_KEY", "al-atlas")
    reranker = rerankpd.get_reranker("voyage")
    assert reranker.endpoint == "https://ai.mongodb.com/v1/rerank" and reranker.has_key


def test_cohere_prefers_co_api_key_and_honours_co_api_url(monkeypatch):
    _clear(monkeypatch, reranker_class("cohere"))
    monkeypatch.setenv("COHERE_API_KEY", "sk-other")
    monkeypatch.setenv("CO_API_KEY", KEY)
    with LoopbackRerankServer(api_key=KEY, dialect="cohere") as server:
        monkeypatch.setenv("CO_API_URL", server.root)  # the SDK's variable: without the version
        reranker = rerankpd.get_reranker("cohere")
        assert reranker.endpoint == server.root + "/v2/rerank" and reranker.key_source == "CO_API_KEY"
        out = reranker.score_batch(QUERY, DOCS)
        assert server.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    # billed units and tokens read are both kept
    assert out.usage["search_units"] == 1 and out.usage["tokens.input_tokens"] > 0


def test_cohere_498_is_an_authentication_error_with_the_key_hint(monkeypatch):
    _clear(monkeypatch, reranker_class("cohere"))
    with LoopbackRerankServer(api_key=KEY, dialect="cohere") as server:
        server.fail_next("status", status=498, message="invalid api token")
        monkeypatch.setenv("CO_API_KEY", KEY)
        monkeypatch.setenv("COHERE_BASE_URL", server.url)
        with pytest.raises(AuthenticationError) as info:
            rerankpd.get_reranker("cohere").score(QUERY, DOCS)
    assert info.value.status_code == 498 and "check the API key in CO_API_KEY" in str(info.value)
    assert len(server.requests) == 1  # never retried


def test_dashscope_honours_the_sdks_base_url_variable(monkeypatch):
    _clear(monkeypatch, reranker_class("dashscope"))
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    with LoopbackRerankServer(api_key=KEY, dialect="dashscope") as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.url)
        reranker = rerankpd.get_reranker("dashscope")
        assert reranker.base_url == server.url
        assert reranker.score(QUERY, DOCS)
