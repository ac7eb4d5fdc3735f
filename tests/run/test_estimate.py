"""df.rerank.estimate: what a run would send, computed without sending; then checked against a real run."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

import rerankpd
from rerankpd.cli.commands import main
from rerankpd.core.tokens import text_tokens
from rerankpd.errors import ConfigurationError
from rerankpd.rerankers import reranker_class
from rerankpd.testing import LoopbackRerankServer

KEY = "sk-estimate-canary-51aa"
LONG = " ".join(f"w{i}" for i in range(40)) + " prevent a cold"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "q": ["prevent a cold", "prevent a cold", "flu shot", "flu shot", "prevent a cold", None, "flu shot"],
            "text": ["wash hands", "wash hands", "October is best", LONG, LONG, "orphan", None],
        }
    )


@pytest.fixture
def server():
    with LoopbackRerankServer(dialect="tei", api_key=KEY) as srv:
        yield srv


def tei(server, **options):
    return rerankpd.get_reranker("tei", api_key=KEY, base_url=server.url, model="bge-reranker-v2-m3", **options)


def sent_tokens(server) -> int:
    total = 0
    for request in server.requests:
        query, documents, _, _ = server.dialect.parse_request(request.body)
        total += sum(text_tokens(query) + text_tokens(d) for d in documents)
    return total


@pytest.mark.parametrize(
    "options",
    [{}, {"batch_size": 2}, {"max_chunks_per_doc": 3, "chunk_tokens": 8, "overlap_tokens": 2, "batch_size": 3}],
)
def test_estimate_matches_what_the_run_then_sends(server, tmp_path, options):
    df = frame()
    cache = tmp_path / "cache"
    reranker = tei(server, **options)
    # warm the cache with part of the work, so the estimate has to subtract it
    df.iloc[:1].rerank(query_column="q", reranker=reranker, cache=cache, progress=False)
    server.reset()

    est = df.rerank.estimate(query_column="q", reranker=reranker, cache=cache)
    assert server.requests == []  # the estimate sent nothing
    out = df.rerank(query_column="q", reranker=reranker, cache=cache, progress=False)
    info = out.attrs["rerank"]

    assert est.requests == len(server.requests) == info["requests"]
    assert est.to_score == len(server.documents_received()) == info["sent"]
    assert est.cached == info["from_cache"] >= 1
    assert est.pairs == info["unique_pairs"] == 4
    assert est.chunks == info["chunks"]
    assert est.approx_tokens == sent_tokens(server)
    assert est.rows == len(df) and est.reranker == "tei"
    if "max_chunks_per_doc" in options:
        assert est.chunks > est.pairs


def test_estimate_with_a_cold_cache_and_a_warm_one(server, tmp_path):
    df = frame()
    cold = df.rerank.estimate(query_column="q", reranker=tei(server), cache=tmp_path / "c")
    assert cold.cached == 0 and cold.to_score == 4 and cold.requests == 2  # two queries, batch 32
    df.rerank(query_column="q", reranker=tei(server), cache=tmp_path / "c", progress=False)
    warm = df.rerank.estimate(query_column="q", reranker=tei(server), cache=tmp_path / "c")
    assert warm.cached == 4 and warm.to_score == 0 and warm.requests == 0 and warm.approx_tokens == 0


def test_estimate_validates_like_rerank(server):
    with pytest.raises(KeyError, match="nope"):
        frame().rerank.estimate("q", column="nope", reranker=tei(server))
    with pytest.raises(ValueError, match="top_n"):
        frame().rerank.estimate("q", column="text", top_n=0, reranker=tei(server))
    with pytest.warns(RuntimeWarning, match="COHERE_API_KEY"):  # a hosted reranker's key: named, not needed
        frame().rerank.estimate("q", column="text", reranker="cohere")
    assert server.requests == []


def test_estimate_counts_chinese_characters_and_words():
    df = pd.DataFrame({"text": ["预防感冒应勤洗手", "wash your hands"]})
    est = rerankpd.estimate(df, "如何预防感冒", reranker="bm25", cache=False)
    assert est.approx_tokens == (6 + 8) + (6 + 4)  # CJK: a token a character; ASCII: ~4 characters
    assert est.to_dict()["to_score"] == 2 and est.to_dict()["approx_tokens"] == 24
    assert "to score on this machine" in str(est) and "tokens" not in str(est)  # bm25 bills nothing


def test_cli_dry_run_prints_the_estimate_and_sends_nothing(server, tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    frame().to_csv(src, index=False)
    monkeypatch.setenv("TEI_BASE_URL", server.url)
    monkeypatch.setenv("TEI_API_KEY", KEY)
    assert main(["rank", str(src), "--query-column", "q", "--reranker", "tei", "--dry-run", "-o", str(dst)]) == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out)
    assert figures["to_score"] == 4 and figures["requests"] == 2 and figures["reranker"] == "tei"
    assert "dry run, nothing sent" in captured.err
    assert server.requests == [] and not dst.exists()


@pytest.mark.parametrize("name, variable", [("voyage", "VOYAGE_API_KEY"), ("cohere", "COHERE_API_KEY")])
def test_estimate_of_a_hosted_service_needs_no_key(name, variable):
    df = frame()
    with pytest.warns(RuntimeWarning, match=variable):  # names what a real run will need
        est = rerankpd.estimate(df, query_column="q", reranker=name, cache=False)
    assert (est.reranker, est.pairs, est.to_score) == (name, 4, 4) and est.requests >= 2 and est.approx_tokens > 0
    with pytest.warns(RuntimeWarning, match=variable):  # the accessor too
        assert df.rerank.estimate(query_column="q", reranker=name, cache=False).to_score == 4
    with pytest.raises(ConfigurationError, match="needs an API key"):
        rerankpd.rerank(df, query_column="q", reranker=name, cache=False, progress=False)  # a real run does


def test_a_keyless_reranker_planned_for_an_estimate_sends_nothing():
    from rerankpd.run.estimate import reranker_for_estimate

    with LoopbackRerankServer(dialect="cohere") as srv:
        with pytest.warns(RuntimeWarning, match="COHERE_API_KEY"):
            with reranker_for_estimate("cohere", base_url=srv.url) as model:
                assert not model.has_key and "api_key" not in repr(model)
                with pytest.raises(rerankpd.RerankError, match="sends nothing"):
                    model.score_batch("q", ["a", "b"])
                with pytest.raises(rerankpd.RerankError, match="sends nothing"):
                    model.session()
        assert srv.requests == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with reranker_for_estimate("cohere", api_key=KEY) as model:  # a key given: the real reranker, no warning
            assert type(model) is reranker_class("cohere") and model.has_key


class Slow(rerankpd.Reranker):
    """A local reranker taking 20 ms a document (and 0.3 s on its first call, as a model loads)."""

    name = "slow"
    computes_locally = True  # timing a sample costs nothing

    def __init__(self):
        self.calls = 0

    def score(self, query, documents):
        import time

        self.calls += 1
        time.sleep((0.3 if self.calls == 1 else 0.0) + 0.02 * len(documents))
        return [0.0] * len(documents)


def test_estimate_times_a_local_reranker_on_a_sample_and_says_so():
    df = pd.DataFrame({"text": [f"document {i}" for i in range(400)]})
    slow = Slow()
    est = rerankpd.estimate(df, "q", reranker=slow, cache=False)
    assert slow.calls == 2  # a warm-up pair, then one timed call
    assert 400 * 0.02 * 0.8 <= est.seconds <= 400 * 0.02 * 2.5
    import re

    timed = int(re.match(r"measured here: (\d+) pairs in", est.timing).group(1))
    assert 4 <= timed <= 16  # as many as fit in ~3 s after the slow warm-up
    assert "400 to score on this machine, about " in str(est) and f"(measured here: {timed} pairs in" in str(est)
    assert est.to_dict()["seconds"] == est.seconds


def test_a_hosted_service_gets_no_time_and_keeps_its_requests_and_tokens(monkeypatch):
    monkeypatch.delenv("DMXAPI_API_KEY", raising=False)
    df = pd.DataFrame({"text": ["a b", "c d e"]})
    with pytest.warns(RuntimeWarning, match="DMXAPI_API_KEY"):
        est = rerankpd.estimate(df, "q", reranker="dmxapi", cache=False)
    assert est.seconds is None and "request" in str(est) and "tokens" in str(est)
