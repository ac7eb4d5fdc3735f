"""The two token counts and the one CJK table, and who uses which."""
from __future__ import annotations

import re

import pytest

from rerankpd.core import chunking, tokens

from rerankpd.rerankers.http import ratelimit
from rerankpd.rerankers import bm25


@pytest.mark.parametrize("text, billed, window", [
    ("", 1, 0),
    ("wash your hands", 4, 3),
    ("预防感冒", 4, 4),
    ("预防感冒 wash hands", 7, 6),
    ("안녕 하세요", 6, 5),
])
def test_the_two_counts(text, billed, window):
    assert tokens.text_tokens(text) == billed
    assert tokens.window_token_count(text) == window == len(tokens.window_token_spans(text))


def test_request_tokens_counts_the_query_once_per_document():
    assert tokens.request_tokens("cold", ["wash hands", "预防感冒"]) == (1 + 3) + (1 + 4)


def test_rate_limiter_and_chunking_use_the_same_counts():
    for text in ["wash your hands", "预防感冒 wash hands", "𠀀𠀁 ᄀ ㄅ"]:
        assert ratelimit.text_tokens(text) == tokens.text_tokens(text)
        assert chunking.approx_token_count(text) == tokens.window_token_count(text)
        assert chunking.approx_token_spans(text) == tokens.window_token_spans(text)


@pytest.mark.parametrize("char", ["ᄀ", "ぁ", "ㄅ", "ㄱ", "㐀", "中", "한", "豈", "𠀀", "𱍊"])
def test_one_cjk_table_for_windows_and_bm25(char):
    assert re.fullmatch(f"[{tokens.CJK}]", char)
    assert tokens.window_token_count(char * 3) == 3        # each CJK character is a window token
    assert bm25.tokenize(char * 2) == [char, char, char * 2]  # characters and bigrams in BM25 too


def test_non_cjk_is_not_in_the_table():
    for char in "aé1ß€😀":
        assert not re.fullmatch(f"[{tokens.CJK}]", char)
