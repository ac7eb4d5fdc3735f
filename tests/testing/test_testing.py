"""The loopback server's own contract: a dialect registered from outside is served without editing the server."""

from __future__ import annotations

import pytest
import requests

from rerankpd.testing import DIALECTS, Dialect, LoopbackRerankServer, RerankDialect, register_dialect


class Upper(Dialect):
    """A made-up wire format: ``{"texts": [...]}`` in, the texts upper-cased out."""

    path = "/v1/upper"

    def parse_request(self, body):
        if not isinstance(body, dict) or not isinstance(body.get("texts"), list):
            raise ValueError("texts is required")
        return body["texts"]

    def texts(self, request):
        return request

    def respond(self, request, score_fn):
        return {"data": [t.upper() for t in request]}


@pytest.fixture
def upper():
    register_dialect("upper-test", Upper)
    yield
    DIALECTS.pop("upper-test")


def test_a_registered_dialect_is_served_by_name(upper):
    with LoopbackRerankServer(dialect="upper-test", api_key="k") as server:
        assert server.url == server.root + "/v1"
        ok = requests.post(
            server.url + "/upper", json={"texts": ["a", "b"]}, headers={"Authorization": "Bearer k"}, timeout=5
        )
        assert ok.json() == {"data": ["A", "B"]}
        bad = requests.post(server.url + "/upper", json={}, headers={"Authorization": "Bearer k"}, timeout=5)
        assert bad.status_code == 400 and bad.json()["error"]["message"] == "texts is required"
        assert requests.post(server.url + "/upper", json={"texts": []}, timeout=5).status_code == 401
        assert server.documents_received() == ["a", "b"]


def test_register_dialect_refuses_a_taken_name_and_a_non_dialect():
    with pytest.raises(ValueError, match="already registered"):
        register_dialect("cohere", Upper)
    with pytest.raises(TypeError, match="subclass"):
        register_dialect("nothing", dict)
    register_dialect("cohere", DIALECTS["cohere"])  # the same class again is harmless


def test_rerank_dialects_share_one_base_and_dmxapi_is_not_everyones_base():
    from rerankpd.testing import DMXAPIDialect

    rerank = [cls for cls in DIALECTS.values() if issubclass(cls, RerankDialect)]
    assert len(rerank) == 12  # the nine of before, Pinecone, NIM and Mixedbread
    assert not any(issubclass(cls, DMXAPIDialect) for cls in rerank if cls is not DMXAPIDialect)
