"""The two token counts and the one CJK table, and who uses which."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rerankpd
from rerankpd.core import tokens
from rerankpd.rerankers import bm25


@pytest.mark.parametrize(
    "text, billed, window",
    [
        ("", 1, 0),
        ("wash your hands", 4, 3),
        ("预防感冒", 4, 4),
        ("预防感冒 wash hands", 7, 6),
        ("안녕 하세요", 6, 5),
    ],
)
def test_the_two_counts(text, billed, window):
    assert tokens.text_tokens(text) == billed
    assert tokens.window_token_count(text) == window == len(tokens.window_token_spans(text))


def test_request_tokens_counts_the_query_once_per_document():
    assert tokens.request_tokens("cold", ["wash hands", "预防感冒"]) == (1 + 3) + (1 + 4)


def test_each_count_is_defined_once_in_the_package():
    """The rate limiter, estimates, chunk windows and prompts all call rerankpd.core.tokens; no copy elsewhere."""
    names = {
        "text_tokens",
        "request_tokens",
        "estimate_tokens",
        "window_token_count",
        "window_token_spans",
        "approx_token_count",
        "approx_token_spans",
    }
    package = pathlib.Path(rerankpd.__file__).parent
    defined = sorted(
        (node.name, str(path.relative_to(package)))
        for path in package.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name in names
    )
    assert defined == [
        ("request_tokens", "core/tokens.py"),
        ("text_tokens", "core/tokens.py"),
        ("window_token_count", "core/tokens.py"),
        ("window_token_spans", "core/tokens.py"),
    ]


def test_request_tokens_counts_query_per_document():
    assert tokens.request_tokens("abcd", ["abcd"]) == 2
    assert tokens.request_tokens("abcd", ["abcd", "abcd", "abcd"]) == 6
    assert tokens.request_tokens("q", []) == 0


def test_request_tokens_non_ascii_counts_one_per_char():
    assert tokens.request_tokens("", ["预防感冒"]) == 1 + 4  # empty query still counts 1
    assert tokens.request_tokens("x", ["😀😀"]) == 1 + 2


@given(st.text(max_size=200), st.lists(st.text(max_size=200), max_size=20))
def test_request_tokens_is_positive_per_doc_and_bounded(query, docs):
    n = tokens.request_tokens(query, docs)
    assert n >= 2 * len(docs)
    assert n <= sum(len(query) + len(d) + 2 for d in docs)


@pytest.mark.parametrize("char", ["ᄀ", "ぁ", "ㄅ", "ㄱ", "㐀", "中", "한", "豈", "𠀀", "𱍊"])
def test_one_cjk_table_for_windows_and_bm25(char):
    assert re.fullmatch(f"[{tokens.CJK}]", char)
    assert tokens.window_token_count(char * 3) == 3  # each CJK character is a window token
    assert bm25.tokenize(char * 2) == [char, char, char * 2]  # characters and bigrams in BM25 too


def test_non_cjk_is_not_in_the_table():
    for char in "aé1ß€😀":
        assert not re.fullmatch(f"[{tokens.CJK}]", char)
