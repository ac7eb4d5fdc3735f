"""The local cross-encoder, against sentence-transformers' own CrossEncoder on a tiny random model.

No test downloads anything: the model is built in a temporary directory (tests/rerankers/tiny_cross_encoder.py)
and the Hugging Face hub is switched offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import ConfigurationError, MissingDependencyError, RerankError
from tests.rerankers.tiny_cross_encoder import build_tiny_cross_encoder

torch = pytest.importorskip("torch")  # the `local` extra is part of `all`, which the test install has
from sentence_transformers import CrossEncoder  # noqa: E402

from rerankpd.rerankers import cross_encoder as ce_module  # noqa: E402
from rerankpd.rerankers.cross_encoder import CrossEncoderReranker, score_in_batches  # noqa: E402

QUERY = "how to prevent a cold"
DOCS = [
    "wash hands often",
    "stocks fell today on weak earnings and the market closed lower",
    "如何预防感冒应勤洗手戴口罩",
    "a",
    "get vaccinated in october, every year",
    "the weather is good today",
]
LONG = "wash your hands " * 60  # about 240 tokens: over the tiny model's 128


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"))


def pairs(documents, query=QUERY):
    return [(query, d) for d in documents]


# --------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("score", ["probability", "logit"])
def test_scores_equal_sentence_transformers_predict(model_dir, score):
    reference = CrossEncoder(str(model_dir), local_files_only=True, device="cpu")
    documents = DOCS + [LONG]
    expected = (
        reference.predict(pairs(documents))
        if score == "probability"
        else reference.predict(pairs(documents), activation_fn=torch.nn.Identity())
    )
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), score=score, batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the long pair's truncation warning
        direct = r.score(QUERY, documents)
        through_pipeline = rerankpd.scores(
            pd.DataFrame({"text": documents}), QUERY, reranker=r, cache=False, progress=False
        )
    np.testing.assert_allclose(direct, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(through_pipeline.to_numpy(), expected, atol=1e-5, rtol=0)
    if score == "probability":
        assert all(0 < s < 1 for s in direct)
    else:
        assert any(s < 0 or s > 1 for s in direct) or not np.allclose(direct, 1 / (1 + np.exp(-np.array(direct))))


def test_length_sorting_does_not_change_the_order_of_results(model_dir):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), batch_size=2)
    alone = [r.score(QUERY, [d])[0] for d in DOCS]  # each pair on its own: no sorting, no padding
    together = r.score(QUERY, DOCS)  # sorted by length, in forward batches of 2
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    permutation = [3, 0, 5, 1, 4, 2]
    np.testing.assert_allclose(
        r.score(QUERY, [DOCS[i] for i in permutation]), [alone[i] for i in permutation], atol=1e-5, rtol=0
    )
    assert len(set(np.round(alone, 6))) == len(DOCS)  # the scores differ, so a mix-up would show


def test_the_pipeline_hands_over_sort_window_forward_batches(model_dir):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), batch_size=4)
    assert r.forward_batch_size == 4 and r.batch_size == 4 * ce_module.SORT_WINDOW
    assert rerankpd.rerankers.base.describe(r).batch_size == r.batch_size


def test_a_long_pair_is_counted_as_truncated_and_warned_about_once(model_dir):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), batch_size=2)
    df = pd.DataFrame({"text": ["wash hands", LONG, LONG + " really", "short"]})
    with pytest.warns(RuntimeWarning, match="max_chunks_per_doc") as caught:
        out = df.rerank(QUERY, reranker=r, cache=False, progress=False)
        again = df.rerank(QUERY + "?", reranker=r, cache=False, progress=False)
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    assert caught[0].filename == __file__  # points at the user's line, not into rerankpd
    assert out.attrs["rerank"]["usage"]["truncated_pairs"] == 2
    assert again.attrs["rerank"]["usage"]["truncated_pairs"] == 2
    assert r.count_truncated(QUERY, ["short", "wash " * 40]) == 1


def test_no_truncation_reports_zero_and_does_not_warn(model_dir):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = pd.DataFrame({"text": DOCS}).rerank(QUERY, reranker=r, cache=False, progress=False)
    assert out.attrs["rerank"]["usage"] == {"truncated_pairs": 0}


def test_client_chunking_scores_long_documents_by_their_best_chunk(model_dir):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), max_chunks_per_doc=8, chunk_tokens=15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no chunk is over max_length: no truncation warning
        out = pd.DataFrame({"text": ["wash hands", LONG]}).rerank(QUERY, reranker=r, cache=False, progress=False)
    assert out.attrs["rerank"]["usage"]["truncated_pairs"] == 0
    assert out.attrs["rerank"]["chunks"] > 2
    assert "rerank_chunk" in out.columns


def test_max_length_is_lowered_to_the_models_limit(model_dir):
    assert rerankpd.get_reranker("cross-encoder", model=str(model_dir)).max_length == 128  # default 512
    assert rerankpd.get_reranker("cross-encoder", model=str(model_dir), max_length=64).max_length == 64


# --------------------------------------------------------------------------------------------- identity, cache
def test_dtype_and_max_length_change_the_cache_identity(model_dir):
    def identity(**options):
        return rerankpd.get_reranker("cross-encoder", model=str(model_dir), **options).identity()

    base = identity()
    assert base == identity(batch_size=7)  # batch size does not change scores
    assert base["dtype"] == "float32" and base["score"] == "probability" and base["revision"].startswith("local-")
    assert identity(dtype="bfloat16") != base
    assert identity(max_length=64) != base
    assert identity(score="logit") != base
    assert "device" not in base


def test_a_changed_local_directory_changes_the_revision(tmp_path):
    first = build_tiny_cross_encoder(tmp_path / "m", seed=1)
    before = rerankpd.get_reranker("cross-encoder", model=str(first)).identity()["revision"]
    os.utime(first / "model.safetensors", ns=(1, 1))  # a model saved again over the same files
    after = rerankpd.get_reranker("cross-encoder", model=str(first)).identity()["revision"]
    assert before != after


@pytest.mark.filterwarnings("ignore:cross-encoder. pairs longer")
def test_scores_are_cached_and_a_new_identity_misses(model_dir):
    df = pd.DataFrame({"text": DOCS})
    first = df.rerank(QUERY, reranker=rerankpd.get_reranker("cross-encoder", model=str(model_dir)), progress=False)
    second = df.rerank(QUERY, reranker=rerankpd.get_reranker("cross-encoder", model=str(model_dir)), progress=False)
    other = df.rerank(
        QUERY, reranker=rerankpd.get_reranker("cross-encoder", model=str(model_dir), max_length=64), progress=False
    )
    assert first.attrs["rerank"]["sent"] == len(DOCS)
    assert second.attrs["rerank"]["from_cache"] == len(DOCS) and second.attrs["rerank"]["sent"] == 0
    assert other.attrs["rerank"]["from_cache"] == 0
    pd.testing.assert_series_equal(first["rerank_score"], second["rerank_score"])


def test_a_model_in_the_hugging_face_cache_is_found_offline_with_its_commit(model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--reranker"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    r = rerankpd.get_reranker("cross-encoder", model="tiny/reranker")
    assert r.identity()["model"] == "tiny/reranker" and r.identity()["revision"] == commit
    np.testing.assert_allclose(
        r.score(QUERY, DOCS), rerankpd.get_reranker("cross-encoder", model=str(model_dir)).score(QUERY, DOCS), atol=1e-6
    )


# --------------------------------------------------------------------------------------------- errors
def test_an_unknown_model_offline_says_which_where_and_the_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(RerankError) as info:
        rerankpd.get_reranker("cross-encoder", model="nobody/no-such-reranker")
    message = str(info.value)
    assert "'nobody/no-such-reranker'" in message
    assert str(tmp_path / "empty-hub") in message
    assert "hf download nobody/no-such-reranker" in message
    with pytest.raises(RerankError, match="hf download BAAI/bge-reranker-v2-m3 --revision v9"):
        rerankpd.get_reranker("cross-encoder", revision="v9")  # the default model


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(RerankError, match="is not one"):
        rerankpd.get_reranker("cross-encoder", model=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RerankError, match="no config.json"):
        rerankpd.get_reranker("cross-encoder", model=str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "option, value", [("score", "softmax"), ("dtype", "float64"), ("batch_size", 0), ("max_length", 2.5)]
)
def test_bad_options_name_the_option(model_dir, option, value):
    with pytest.raises(ConfigurationError, match=option):
        rerankpd.get_reranker("cross-encoder", model=str(model_dir), **{option: value})


def test_without_the_extra_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # `import sentence_transformers` fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'rerankpd\[local\]'"):
        rerankpd.get_reranker("cross-encoder")


def test_availability_follows_the_extra(monkeypatch):
    assert CrossEncoderReranker.availability() == rerankpd.rerankers.base.Availability(True, "local model")
    real = ce_module.importlib.util.find_spec
    monkeypatch.setattr(
        ce_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    assert CrossEncoderReranker.availability() == rerankpd.rerankers.base.Availability(False, "needs rerankpd[local]")


def test_import_rerankpd_imports_neither_torch_nor_sentence_transformers():
    code = (
        "import sys, rerankpd\n"
        "from rerankpd.rerankers import reranker_class\n"
        "assert 'cross-encoder' in rerankpd.available_rerankers()\n"
        "print(reranker_class('cross-encoder').availability())\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "local model" in proc.stdout


# --------------------------------------------------------------------------------------------- out of memory
def oom(message="CUDA out of memory. Tried to allocate 2.00 GiB"):
    return torch.cuda.OutOfMemoryError(message)


def test_out_of_memory_halves_the_batch_and_retries_it():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        if len(batch) > 3:
            raise oom()
        return [float(x) for x in batch]

    items = list(range(21))
    scores, size = score_in_batches(items, 16, predict)
    assert scores == [float(x) for x in items]
    assert size == 2
    assert calls[:4] == [16, 8, 4, 2] and sum(c for c in calls if c <= 3) == 21


def test_a_batch_ends_where_pairs_get_less_than_half_as_long():
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        return [float(x) for x in batch]

    lengths = [500, 480, 400, 260, 249, 100, 90, 60, 50, 49, 48, 20]
    scores, _ = score_in_batches(list(range(12)), 4, predict, lengths=lengths)
    assert scores == [float(x) for x in range(12)]
    assert sizes == [4, 1, 4, 2, 1]  # [500 480 400 260] [249] [100 90 60 50] [49 48] [20]


def test_out_of_memory_with_one_pair_raises_and_other_errors_are_not_retried():
    calls = []

    def always_oom(batch):
        calls.append(len(batch))
        raise oom()

    with pytest.raises(torch.cuda.OutOfMemoryError):
        score_in_batches(list(range(5)), 4, always_oom)
    assert calls == [4, 2, 1]

    def broken(batch):
        calls.append(-1)
        raise RuntimeError("shape mismatch")

    calls.clear()
    with pytest.raises(RuntimeError, match="shape mismatch"):
        score_in_batches(list(range(5)), 4, broken)
    assert calls == [-1]


def test_the_reranker_survives_out_of_memory_with_the_same_scores(model_dir, monkeypatch):
    r = rerankpd.get_reranker("cross-encoder", model=str(model_dir), batch_size=8)
    similar = [
        "wash hands often",
        "rest and drink tea",
        "see a doctor soon",
        "get a flu vaccine",
        "eat warm soup now",
        "sleep well at night",
    ]  # within 2x of each other: one batch before the cut
    expected = r.score(QUERY, similar)
    real = r._predict
    sizes = []

    def tight_memory(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise oom()
        return real(batch)

    monkeypatch.setattr(r, "_predict", tight_memory)
    np.testing.assert_allclose(r.score(QUERY, similar), expected, atol=1e-5, rtol=0)
    assert r.forward_batch_size == 2 and sizes == [6, 3, 2, 2, 2]
    monkeypatch.setattr(r, "_predict", lambda batch: (_ for _ in ()).throw(oom()))
    with pytest.raises(RerankError, match="out of memory on cpu"):
        r.score(QUERY, similar)
