"""The embedding path (rerankpd.run.embedding_path) and the embedding cache (rerankpd.cache.embeddings)."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import warnings
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rerankpd
from rerankpd.cache.embeddings import EmbeddingCache
from rerankpd.cache.store import STORE_DIR
from rerankpd.errors import BadResponseError
from rerankpd.pairs import build_pairs
from rerankpd.rerankers import Reranker
from rerankpd.rerankers.base import describe
from rerankpd.run.embedding_path import EmbeddingBatch, applies, embed_texts, rowwise_products, score_pairs
from rerankpd.testing import bigram_embedding
from tests.cache_faults import plant, read_only

FILENAME = os.path.join(STORE_DIR, "cache.db")


class Bigrams(Reranker):
    """A deterministic embedding reranker that counts what it embeds; ``score`` is the pair-by-pair path."""

    name = "bigrams"
    kind = "embedding"

    def __init__(self, batch_size=4, fail_on=None, dim=16):
        self.batch_size = batch_size
        self.dim = dim
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.embedded: Counter = Counter()
        self.calls = 0

    def identity(self):
        return {"reranker": self.name, "dim": self.dim}

    def _embed(self, texts, role):
        with self.lock:
            self.calls += 1
            if self.fail_on is not None and any(self.fail_on in t for t in texts):
                raise RuntimeError(f"cannot embed a text with {self.fail_on!r}")
            self.embedded.update((role, t) for t in texts)
        return bigram_embedding(["Q " + t if role == "query" else t for t in texts], self.dim)

    def embed_queries(self, texts):
        return self._embed(texts, "query")

    def embed_documents(self, texts):
        return self._embed(texts, "document")

    def score(self, query, documents):
        q = bigram_embedding(["Q " + query], self.dim)[0]
        return [float(np.float32(v)) for v in bigram_embedding(list(documents), self.dim) @ q]


def frame(rows):
    return pd.DataFrame(rows, columns=["q", "text"])


words = st.sampled_from(["cold", "flu", "hands", "wash", "预防", "感冒", "stock", "a", "x y"])
cells = st.one_of(st.none(), st.just(""), st.lists(words, min_size=1, max_size=4).map(" ".join))


# ------------------------------------------------------------------ vectorised == pair by pair
@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from(["cold", "stock", "预防感冒"])), cells), min_size=1, max_size=25
    ),
    batch_size=st.integers(1, 6),
)
def test_vectorised_scores_equal_pair_by_pair_scores(rows, batch_size):
    df = frame(rows)
    r = Bigrams(batch_size=batch_size)
    out = rerankpd.scores(df, query_column="q", reranker=r, cache=False, progress=False)
    for label, (q, text) in enumerate(rows):
        if q is None or text is None or not text.strip():
            assert np.isnan(out[label])
        else:
            assert out[label] == pytest.approx(r.score(q, [text])[0], rel=1e-6, abs=1e-6)
    # each distinct text and each distinct query embedded exactly once
    texts = {t for q, t in rows if q is not None and t is not None and t.strip()}
    queries = {q for q, t in rows if q is not None and t is not None and t.strip()}
    assert r.embedded == Counter({("document", t): 1 for t in texts} | {("query", q): 1 for q in queries})


@settings(max_examples=40, deadline=None)
@given(n_queries=st.integers(1, 5), n_texts=st.integers(1, 8), dim=st.integers(1, 9), seed=st.integers(0, 99))
def test_rowwise_products_equal_a_dot_per_pair(n_queries, n_texts, dim, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n_queries, dim)).astype(np.float32)
    t = rng.normal(size=(n_texts, dim)).astype(np.float32)
    qi, ti = rng.integers(0, n_queries, 30), rng.integers(0, n_texts, 30)
    got = rowwise_products(q, t, qi, ti)
    want = [float(np.dot(q[a], t[b])) for a, b in zip(qi, ti)]
    assert got.dtype == np.float64 and got.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_e5_vectorised_scores_equal_its_pair_by_pair_scores_and_ignore_batches():
    r = rerankpd.get_reranker("e5", batch_size=2)
    docs = ["预防感冒应勤洗手", "今天天气很好", "wash your hands often", "stock prices fell", "x"]
    alone = np.stack([r.embed_documents([d])[0] for d in docs])
    together = r.embed_documents(docs)
    assert together.dtype == np.float32 and np.array_equal(alone, together)  # batch composition does not matter
    assert np.linalg.norm(together, axis=1) == pytest.approx(1.0, abs=1e-3)
    df = pd.DataFrame({"q": ["如何预防感冒"] * 5 + ["stock market"] * 3, "text": docs + docs[:3]})
    out = rerankpd.scores(df, query_column="q", reranker=r, cache=False, progress=False)
    for label, (q, text) in df.iterrows():
        assert out[label] == pytest.approx(r.score(q, [text])[0], rel=1e-5, abs=1e-6)
    got = rerankpd.rerank(df, query_column="q", reranker=r, cache=False, progress=False).attrs["rerank"]
    assert got["embedding"]["texts_embedded"] == 5 and got["embedding"]["queries_embedded"] == 2


def test_a_reranker_of_another_kind_or_without_embed_methods_keeps_the_pair_path():
    assert applies(describe(Bigrams())) and not applies(replace(describe(Bigrams()), kind="cross-encoder"))

    class Half(Reranker):
        kind = "embedding"

        def score(self, query, documents):
            return [1.0] * len(documents)

    assert not applies(describe(Half()))
    out = rerankpd.rerank(pd.DataFrame({"text": ["a", "b"]}), "q", reranker=Half(), cache=False, progress=False)
    assert out.attrs["rerank"]["embedding"] is None and out["rerank_score"].tolist() == [1.0, 1.0]


def test_summary_counts_what_was_embedded():
    df = frame([("cold", "a b"), ("cold", "a b"), ("flu", "a b"), ("flu", "c d"), ("flu", None)])
    out = rerankpd.rerank(df, query_column="q", reranker=Bigrams(batch_size=1), cache=False, progress=False)
    info = out.attrs["rerank"]
    assert info["embedding"] == {
        "texts_embedded": 2,
        "queries_embedded": 2,
        "texts_from_cache": 0,
        "queries_from_cache": 0,
        "requests": 4,
        "usage": {},
    }
    assert info["sent"] == 3 and info["unique_pairs"] == 3


def test_bad_embeddings_are_a_bad_response():
    class Wrong(Bigrams):
        def embed_documents(self, texts):
            return np.zeros((len(texts) + 1, 3), dtype=np.float32)

    with pytest.raises(BadResponseError, match="one row per text"):
        rerankpd.rerank(pd.DataFrame({"text": ["a"]}), "q", reranker=Wrong(), cache=False, progress=False)

    class NaNs(Bigrams):
        def embed_documents(self, texts):
            return np.full((len(texts), 16), np.nan, dtype=np.float32)

    with pytest.raises(BadResponseError, match="non-finite"):
        rerankpd.rerank(pd.DataFrame({"text": ["a"]}), "q", reranker=NaNs(), cache=False, progress=False)


def test_coerce_marks_only_the_rows_whose_texts_failed():
    df = frame([("cold", "fine text"), ("cold", "bad text"), ("cold", "another")])
    r = Bigrams(batch_size=1, fail_on="bad")
    out = rerankpd.rerank(df, query_column="q", reranker=r, cache=False, progress=False, errors="coerce", sort=False)
    assert out["rerank_score"].isna().tolist() == [False, True, False]
    assert "cannot embed" in out.loc[1, "rerank_error"] and out["rerank_error"].isna().sum() == 2


def test_embed_texts_with_concurrency_keeps_order_and_reports_progress():
    r = Bigrams()
    seen = []
    texts = [f"text {i}" for i in range(23)]
    vectors, failed, error = embed_texts(r, texts, "document", batch_size=3, max_concurrency=4, on_batch=seen.append)
    assert error is None and not failed and sum(seen) == 23
    assert np.array_equal(np.stack(vectors), bigram_embedding(texts, 16))


def test_score_pairs_is_pure_and_direct():
    pairs = build_pairs(["x", "x", "y"], ["a", "b", "a"])
    out = score_pairs(Bigrams(), pairs, np.array([0, 2]))
    assert np.isnan(out.scores[1]) and not np.isnan(out.scores[[0, 2]]).any() and out.failure is None

    class WithUsage(Bigrams):
        def embed_batch(self, texts, role):
            return EmbeddingBatch(self._embed(texts, role), {"total_tokens": len(texts)}, attempts=2)

    out = score_pairs(WithUsage(), pairs, np.arange(3))
    assert out.stats.usage == {"total_tokens": 4} and out.stats.requests == 4


# ------------------------------------------------------------------ the embedding cache
def test_a_new_query_over_an_embedded_frame_embeds_only_the_query(tmp_path):
    df = pd.DataFrame({"text": ["cold hands", "stock prices", "cold hands", "flu season"]})
    r = Bigrams()
    first = rerankpd.rerank(df, "cold", reranker=r, cache=tmp_path, progress=False)
    assert first.attrs["rerank"]["embedding"]["texts_embedded"] == 3
    r.embedded.clear()
    second = rerankpd.rerank(df, "a new query", reranker=r, cache=tmp_path, progress=False)
    assert r.embedded == Counter({("query", "a new query"): 1})
    info = second.attrs["rerank"]["embedding"]
    assert info["texts_embedded"] == 0 and info["texts_from_cache"] == 3 and info["queries_embedded"] == 1
    fresh = rerankpd.rerank(df, "a new query", reranker=Bigrams(), cache=False, progress=False)
    assert second["rerank_score"].tolist() == pytest.approx(fresh["rerank_score"].tolist(), abs=0)


def _embedding_values(directory):
    cache = EmbeddingCache.open(directory, "{}")
    try:
        return {key: cache._store.cache.get(key) for key in cache._store.cache.iterkeys() if key[:1] == b"E"}
    finally:
        cache.close()


def test_cache_values_are_raw_float32_bytes_never_pickle(tmp_path):
    df = pd.DataFrame({"text": ["cold hands", "stock prices"]})
    rerankpd.rerank(df, "cold", reranker=Bigrams(dim=16), cache=tmp_path, progress=False)
    values = _embedding_values(tmp_path)
    vectors = [v for k, v in values.items() if len(k) == 33]
    assert len(vectors) == 3  # two texts and the query
    for value in vectors:
        assert isinstance(value, bytes) and len(value) == 16 * 4
        assert np.frombuffer(value, "<f4").shape == (16,)
    assert [v for k, v in values.items() if len(k) == 17] == [(16).to_bytes(4, "little")]  # the model's size


def test_cache_is_private_and_beside_the_score_cache(tmp_path):
    where = tmp_path / "new" / "dir"
    out = rerankpd.rerank(pd.DataFrame({"text": ["a b"]}), "q", reranker=Bigrams(), cache=where, progress=False)
    assert out.attrs["rerank"]["cache_dir"] == str(where) and (where / FILENAME).exists()
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(where / STORE_DIR).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(where / FILENAME).st_mode) == 0o600
    assert rerankpd.cache_info(where)["kinds"]["embeddings"] == 3  # the text, the query, the model's size


def test_the_default_cache_directory_holds_it_too(tmp_path):
    rerankpd.rerank(pd.DataFrame({"text": ["a b"]}), "q", reranker=Bigrams(), progress=False)
    assert (tmp_path / "cache" / FILENAME).exists()


def test_an_interrupted_run_resumes_from_the_embeddings_it_finished(tmp_path):
    df = pd.DataFrame({"text": [f"text {i}" for i in range(10)] + ["bad one"]})
    r = Bigrams(batch_size=2, fail_on="bad")
    with pytest.raises(RuntimeError, match="cannot embed") as caught:
        rerankpd.rerank(df, "q", reranker=r, cache=tmp_path, progress=False)
    assert caught.value.partial["rerank_score"].notna().sum() == 10  # every pair whose text was embedded
    r2 = Bigrams(batch_size=2)
    out = rerankpd.rerank(df, "q", reranker=r2, cache=tmp_path, progress=False)
    assert r2.embedded == Counter({("document", "bad one"): 1})
    info = out.attrs["rerank"]
    assert info["from_cache"] == 10  # the pairs scored before the failure reached the score cache
    assert info["embedding"]["texts_embedded"] == 1 and info["embedding"]["queries_from_cache"] == 1


def test_a_cache_that_cannot_be_opened_warns_once_and_the_run_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="could not be opened") as record:
        out = rerankpd.rerank(
            pd.DataFrame({"text": ["a", "b"]}), "q", reranker=Bigrams(), cache=blocker, progress=False
        )
    assert out["rerank_score"].notna().all()
    assert len(record) == 1  # one directory, one warning (the score cache's); no second one for the embeddings
    with pytest.warns(RuntimeWarning, match="embedding cache .* could not be opened") as record:
        assert EmbeddingCache.open(blocker, "{}") is None
    assert len(record) == 1


def test_a_corrupt_cache_file_warns_once_and_the_run_goes_on(tmp_path):
    (tmp_path / STORE_DIR).mkdir()
    (tmp_path / FILENAME).write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="could not be opened") as record:
        out = rerankpd.rerank(
            pd.DataFrame({"text": ["a", "b"]}), "q", reranker=Bigrams(), cache=tmp_path, progress=False
        )
    assert out["rerank_score"].notna().all()
    assert len(record) == 1  # one store for scores and embeddings: one warning


def test_a_garbled_value_is_a_miss_and_is_embedded_again(tmp_path):
    cache = EmbeddingCache.open(tmp_path, '{"m": 1}')
    cache.store("document", ["a"], np.ones((1, 3), dtype=np.float32))
    plant(tmp_path, cache.key("document", "a"), b"RPDE garbage!")  # 13 bytes: not 3 float32
    assert cache.lookup("document", ["a"]) == {} and rerankpd.cache_info(tmp_path)["kinds"]["embeddings"] == 2
    plant(tmp_path, cache.key("document", "a"), np.array([1, np.nan, 2], "<f4").tobytes())
    assert cache.lookup("document", ["a"]) == {}
    cache.close()
    assert cache.lookup("document", ["a"]) == {}  # a closed cache is an empty one


def test_keys_depend_on_identity_role_and_text(tmp_path):
    a, b = EmbeddingCache.open(tmp_path, '{"m": 1}'), EmbeddingCache.open(tmp_path, '{"m": 2}')
    keys = {a.key("query", "t"), a.key("document", "t"), a.key("query", "u"), b.key("query", "t")}
    assert len(keys) == 4
    a.store("query", ["t"], np.ones((1, 2)))
    assert 0 in a.lookup("query", ["t"]) and b.lookup("query", ["t"]) == {} and a.lookup("document", ["t"]) == {}
    a.close(), b.close()


def test_no_identity_means_no_embedding_cache(tmp_path):
    class Anonymous(Bigrams):
        def identity(self):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rerankpd.rerank(pd.DataFrame({"text": ["a"]}), "q", reranker=Anonymous(), cache=tmp_path, progress=False)
    assert rerankpd.cache_info(tmp_path)["kinds"]["embeddings"] == 0
    assert EmbeddingCache.open(tmp_path, None) is None and EmbeddingCache.open(False, "{}") is None
    with pytest.raises(ValueError, match="cache must be"):
        EmbeddingCache.open(3, "{}")


# ------------------------------------------------------------------ the embedding cache's failure policy
def _embedding_warnings(caught):
    return [str(w.message) for w in caught if "embedding cache" in str(w.message)]


def test_a_read_only_cache_directory_still_serves_cached_embeddings_and_warns_once(tmp_path):
    cache_dir = tmp_path / "ro"
    texts = [f"text {i} about colds" for i in range(8)]
    rerankpd.rerank(pd.DataFrame({"text": texts[:5]}), "cold", reranker=Bigrams(), cache=cache_dir, progress=False)
    r = Bigrams()
    with read_only(cache_dir):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = rerankpd.rerank(
                pd.DataFrame({"text": texts}), "a new query", reranker=r, cache=cache_dir, progress=False
            )
        assert rerankpd.cache_info(cache_dir)["kinds"]["embeddings"] == 5 + 1 + 1  # texts, query, model size
    assert r.embedded == Counter({("query", "a new query"): 1, **{("document", t): 1 for t in texts[5:]}})
    info = out.attrs["rerank"]["embedding"]
    assert info["texts_from_cache"] == 5 and info["texts_embedded"] == 3
    messages = _embedding_warnings(caught)
    assert len(messages) == 1 and "could not be written" in messages[0] and "read-only" in messages[0], messages
    fresh = rerankpd.rerank(
        pd.DataFrame({"text": texts}), "a new query", reranker=Bigrams(), cache=False, progress=False
    )
    assert out["rerank_score"].tolist() == pytest.approx(fresh["rerank_score"].tolist(), abs=0)


def test_deleting_the_cache_directory_mid_run_warns_once_and_recreates_nothing(tmp_path):
    cache_dir = tmp_path / "doomed"

    class DeletesTheCache(Bigrams):
        def _embed(self, texts, role):
            if self.calls == 2:
                shutil.rmtree(cache_dir)
            return super()._embed(texts, role)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = rerankpd.rerank(
            pd.DataFrame({"text": [f"text {i}" for i in range(12)]}),
            "q",
            reranker=DeletesTheCache(batch_size=2),
            cache=cache_dir,
            progress=False,
        )
    assert out["rerank_score"].notna().all()
    messages = _embedding_warnings(caught)
    assert len(messages) == 1 and "could not be written" in messages[0] and "removed" in messages[0], messages
    assert not cache_dir.exists()


def test_a_stored_value_that_is_not_a_blob_is_a_miss_and_is_overwritten(tmp_path):
    cache = EmbeddingCache.open(tmp_path, '{"m": 1}')
    cache.store("document", ["a", "b", "c"], np.ones((3, 2), dtype=np.float32))
    for text, value in (("a", "RPDE text, not bytes"), ("b", 1.5)):
        plant(tmp_path, cache.key("document", text), value)
    assert sorted(cache.lookup("document", ["a", "b", "c"])) == [2]
    cache.store("document", ["a", "b"], np.full((2, 2), 2, dtype=np.float32))
    assert {i: v.tolist() for i, v in cache.lookup("document", ["a", "b"]).items()} == {0: [2, 2], 1: [2, 2]}
    cache.close()


def test_ctrl_c_while_embedding_keeps_every_batch_that_finished(tmp_path):
    class Interrupted(Bigrams):
        def _embed(self, texts, role):
            if self.calls == 4:  # the query and three batches of documents are done
                self.calls += 1
                raise KeyboardInterrupt
            return super()._embed(texts, role)

    df = pd.DataFrame({"text": [f"text {i}" for i in range(10)]})
    with pytest.raises(KeyboardInterrupt):
        rerankpd.rerank(df, "q", reranker=Interrupted(batch_size=2), cache=tmp_path, progress=False)
    r = Bigrams(batch_size=2)
    out = rerankpd.rerank(df, "q", reranker=r, cache=tmp_path, progress=False)
    info = out.attrs["rerank"]["embedding"]
    assert info["queries_from_cache"] == 1 and info["texts_from_cache"] == 6 and info["texts_embedded"] == 4
    assert sum(r.embedded.values()) == 4


def test_ctrl_c_while_embedding_waits_for_the_batches_in_flight_and_keeps_them(tmp_path):
    """The embedding path goes through the scheduler's bounded loop: Ctrl-C drains what is in flight."""
    import time

    class Slow(Bigrams):
        def _embed(self, texts, role):
            time.sleep(0.1)
            return super()._embed(texts, role)

    seen, cancel = [], threading.Event()

    def interrupt_at_first(n):
        seen.append(n)
        if len(seen) == 1:
            raise KeyboardInterrupt

    reranker = Slow(batch_size=1)
    cache = EmbeddingCache.open(tmp_path, '{"m": 1}')
    texts = [f"text {i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        embed_texts(
            reranker,
            texts,
            "document",
            batch_size=1,
            max_concurrency=3,
            cache=cache,
            cancel=cancel,
            on_batch=interrupt_at_first,
        )
    cache.close()
    assert cancel.is_set()  # nothing new starts
    assert len(seen) == 3 and reranker.calls == 3  # the two in flight were waited for and reported
    kept = EmbeddingCache.open(tmp_path, '{"m": 1}')
    assert len(kept.lookup("document", texts)) == 3  # and reached the cache
    kept.close()


def test_the_cache_files_are_private(tmp_path):
    cache = EmbeddingCache.open(tmp_path / "c", '{"m": 1}')
    cache.store("query", ["q"], np.ones((1, 2)))
    for name in os.listdir(tmp_path / "c" / STORE_DIR):
        assert stat.S_IMODE(os.stat(tmp_path / "c" / STORE_DIR / name).st_mode) & 0o077 == 0, name
    cache.close()


def test_clear_cache_removes_the_embeddings_too(tmp_path):
    """clear_cache() used to keep the embeddings file: scores then came from the old vectors while
    cache_info() reported 0 entries."""
    df = pd.DataFrame({"text": ["cold hands", "stock prices"]})
    rerankpd.rerank(df, "cold", reranker=Bigrams(), cache=tmp_path, progress=False)
    assert rerankpd.clear_cache(tmp_path) > 0
    assert rerankpd.cache_info(tmp_path)["entries"] == 0
    r = Bigrams()
    out = rerankpd.rerank(df, "another query", reranker=r, cache=tmp_path, progress=False)
    assert out.attrs["rerank"]["embedding"]["texts_from_cache"] == 0
    assert r.embedded == Counter(
        {("query", "another query"): 1, ("document", "cold hands"): 1, ("document", "stock prices"): 1}
    )


def test_one_answer_of_wrong_length_vectors_does_not_poison_the_cache(tmp_path):
    """A server that once answers a batch with vectors of another length fails that run, but the batch is
    never cached: later runs against the healthy server, with errors="coerce" too, score every row."""
    texts = [f"text {i} about colds" for i in range(6)]
    rerankpd.rerank(pd.DataFrame({"text": texts[:2]}), "cold", reranker=Bigrams(dim=16), cache=tmp_path, progress=False)

    class ShortOnce(Bigrams):
        def _embed(self, texts, role):
            vectors = super()._embed(texts, role)
            return vectors[:, :8] if role == "document" else vectors

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadResponseError, match="different sizes"):
            rerankpd.rerank(
                pd.DataFrame({"text": texts}), "cold", reranker=ShortOnce(dim=16), cache=tmp_path, progress=False
            )
    assert any("were not cached" in str(w.message) for w in caught)
    for errors in ("raise", "coerce"):
        out = rerankpd.rerank(
            pd.DataFrame({"text": texts}),
            "cold",
            reranker=Bigrams(dim=16),
            cache=tmp_path,
            progress=False,
            errors=errors,
        )
        assert out["rerank_score"].notna().all()
    cache = EmbeddingCache.open(tmp_path, describe(Bigrams(dim=16)).identity)
    plant(tmp_path, cache.key("document", texts[0]), np.ones(8, "<f4").tobytes())  # a vector of another length
    assert sorted(cache.lookup("document", texts[:2])) == [1]
    cache.close()
