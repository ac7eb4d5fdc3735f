"""Client-side chunking: the pure splitter (property-tested), the spec's validation, max-aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpd.core.chunking import (
    ChunkSpec,
    chunk_spec,
    max_by_owner,
    plan_chunks,
    split_text,
    window_bounds,
)
from rerankpd.core.tokens import window_token_count, window_token_spans
from rerankpd.errors import ConfigurationError
from rerankpd.pairs import build_pairs

specs = st.builds(
    lambda chunk, overlap_frac, n: ChunkSpec(
        chunk_tokens=chunk, overlap_tokens=int(overlap_frac * chunk) % chunk, max_chunks=n
    ),
    st.integers(1, 12),
    st.floats(0, 0.99),
    st.integers(1, 6),
)
words = st.sampled_from(["alpha", "beta,", "γάμμα", "42", "预", "防", "感", "冒", "かな", "한국", "x-y"])
texts = st.lists(st.tuples(words, st.sampled_from([" ", "  ", "\n", "\t", ""])), max_size=60).map(
    lambda parts: "".join(w + s for w, s in parts)
)


def token_texts(text):
    return [text[a:b] for a, b in window_token_spans(text)]


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200), spec=specs)
def test_windows_are_contiguous_overlap_as_asked_and_at_most_n(n, spec):
    bounds = window_bounds(n, spec)
    assert 1 <= len(bounds) <= spec.max_chunks
    assert bounds[0][0] == 0
    for (a, b), (c, _d) in zip(bounds, bounds[1:]):
        assert c - a == spec.step  # windows start every step tokens
        assert b - c == spec.overlap_tokens  # neighbours share exactly overlap_tokens
    for a, b in bounds:
        assert 0 <= a < b <= n or (n == 0 and (a, b) == (0, 0))
        assert b - a <= spec.chunk_tokens
    covered = bounds[-1][1]
    needed = 1 if n <= spec.chunk_tokens else 1 + math.ceil((n - spec.chunk_tokens) / spec.step)
    if needed <= spec.max_chunks:
        assert covered == n  # the whole text is covered
        assert len(bounds) == needed  # ... with no window more than needed
    else:
        assert len(bounds) == spec.max_chunks  # capped: exactly N full windows
        assert all(b - a == spec.chunk_tokens for a, b in bounds)


@settings(max_examples=300, deadline=None)
@given(text=texts, spec=specs)
def test_split_text_windows_cover_the_text_in_order(text, spec):
    chunks = split_text(text, spec)
    tokens = token_texts(text)
    assert 1 <= len(chunks) <= spec.max_chunks
    if len(tokens) <= spec.chunk_tokens:
        assert chunks == [text]  # short documents are sent as they are
        return
    per_chunk = [token_texts(c) for c in chunks]
    assert all(1 <= len(t) <= spec.chunk_tokens for t in per_chunk)
    # each chunk is a verbatim slice of the text
    assert all(c in text for c in chunks)
    # re-assembling the windows (dropping each overlap) gives back the text's tokens, in order
    rebuilt = list(per_chunk[0])
    for t in per_chunk[1:]:
        assert t[: spec.overlap_tokens] == rebuilt[len(rebuilt) - spec.overlap_tokens :]  # overlap as asked
        rebuilt.extend(t[spec.overlap_tokens :])
    if len(chunks) < spec.max_chunks:
        assert rebuilt == tokens  # windows cover the whole text
    else:
        assert rebuilt == tokens[: len(rebuilt)]  # capped at N windows: a prefix of the text


def test_cjk_characters_and_latin_words_are_tokens():
    assert window_token_count("预防感冒应勤洗手") == 8
    assert window_token_count("wash your hands, often!") == 4
    assert window_token_count("勤洗手 wash hands") == 5
    assert window_token_count("   ") == 0


def test_split_text_keeps_whitespace_inside_chunks():
    spec = ChunkSpec(chunk_tokens=3, overlap_tokens=1, max_chunks=5)
    assert split_text("a  b\nc d e", spec) == ["a  b\nc", "c d e"]
    assert split_text("预防感冒应勤洗手", ChunkSpec(chunk_tokens=4, overlap_tokens=0, max_chunks=5)) == [
        "预防感冒",
        "应勤洗手",
    ]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"chunk_tokens": 0, "overlap_tokens": 0, "max_chunks": 1}, "chunk_tokens"),
        ({"chunk_tokens": 4, "overlap_tokens": 4, "max_chunks": 1}, "overlap_tokens"),
        ({"chunk_tokens": 4, "overlap_tokens": -1, "max_chunks": 1}, "overlap_tokens"),
        ({"chunk_tokens": 4, "overlap_tokens": 0, "max_chunks": 0}, "max_chunks_per_doc"),
        ({"chunk_tokens": 4.5, "overlap_tokens": 0, "max_chunks": 1}, "chunk_tokens"),
        ({"chunk_tokens": 4, "overlap_tokens": 0, "max_chunks": True}, "max_chunks_per_doc"),
    ],
)
def test_bad_spec_names_the_option(kwargs, word):
    with pytest.raises(ConfigurationError, match=word):
        ChunkSpec(**kwargs)


def test_chunk_spec_defaults_and_stray_options():
    assert chunk_spec(None) is None
    assert chunk_spec(3, 100, 10) == ChunkSpec(chunk_tokens=100, overlap_tokens=10, max_chunks=3)
    with pytest.raises(ConfigurationError, match="max_chunks_per_doc"):
        chunk_spec(None, chunk_tokens=100)


def test_plan_chunks_maps_chunks_back_to_their_documents_and_merges_identical_ones():
    spec = ChunkSpec(chunk_tokens=2, overlap_tokens=0, max_chunks=3)
    pairs = build_pairs(["q", "r", "q", None], ["a b c d e f g", "short", "a b x", "a b"])
    plan = plan_chunks(pairs, spec)
    work = [plan.work.pair(w) for w in range(plan.work.n_pairs)]
    assert work == [("q", "a b"), ("q", "c d"), ("q", "e f"), ("r", "short"), ("q", "x")]
    assert plan.occ_doc.tolist() == [0, 0, 0, 1, 2, 2]
    assert plan.occ_chunk.tolist() == [0, 1, 2, 0, 0, 1]
    assert plan.occ_work.tolist() == [0, 1, 2, 3, 0, 4]  # "a b" of documents 0 and 2 is sent once
    assert plan.n_chunks == 6 and plan.doc_pairs is pairs


def test_chunk_plan_reduce_takes_the_best_chunk_and_fails_a_document_with_a_failed_chunk():
    pairs = build_pairs("q", ["a b c d", "e f", "g h i j"])
    plan = plan_chunks(pairs, ChunkSpec(chunk_tokens=2, overlap_tokens=0, max_chunks=2))
    assert plan.occ_work.tolist() == [0, 1, 2, 3, 4]
    scores, errors, chunk = plan.reduce(np.array([0.1, 0.8, 0.5, 0.9, np.nan]), {4: "boom"})
    assert scores[:2].tolist() == [0.8, 0.5] and chunk.tolist() == [1, 0, -1]
    assert math.isnan(scores[2]) and errors == {2: "boom"}


def test_max_by_owner_takes_the_best_chunk_and_says_which():
    best, which = max_by_owner([0.2, 0.7, 0.7, 0.1, float("nan")], [0, 0, 0, 1, 2], [0, 1, 2, 0, 0], 4)
    assert best[:2] == [0.7, 0.1] and which[:3] == [1, 0, -1]  # first of equal maxima wins
    assert math.isnan(best[2]) and math.isnan(best[3]) and which[3] == -1  # unscored, or nothing at all
    best, which = max_by_owner([0.9, float("nan")], [0, 0], [0, 1], 1)
    assert math.isnan(best[0]) and which == [-1]  # a partial maximum is no score


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(-5, 5, allow_nan=False)), max_size=40))
def test_max_by_owner_is_the_max(items):
    owner = [o for o, _ in items]
    scores = [s for _, s in items]
    chunk_no = list(range(len(items)))
    best, which = max_by_owner(scores, owner, chunk_no, 5)
    for o in range(5):
        mine = [s for oo, s in items if oo == o]
        if mine:
            assert best[o] == max(mine)
            assert scores[which[o]] == max(mine) and owner[which[o]] == o
        else:
            assert math.isnan(best[o]) and which[o] == -1
