"""Reading text columns: the blank pattern, codes, missing/blank/non-text cells, lone surrogates."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerankpd.run.columns import BLANK, WHITESPACE, check_unicode, text_cells


def test_whitespace_list_is_exactly_what_isspace_says():
    assert sorted(WHITESPACE) == [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert len(set(WHITESPACE)) == len(WHITESPACE)


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000\u00a0", "\x1c\x85", " a ", "a", "\u200b"])
def test_blank_pattern_decides_as_strip_does(text):
    assert bool(re.fullmatch(BLANK, text)) == (not text.strip())


@pytest.mark.parametrize("dtype", [object, "string"])
def test_codes_skip_missing_and_blank_cells(dtype):
    series = pd.Series(["b", None, "\u3000", "a", "b", "a "], dtype=dtype)
    cells = text_cells(series, "text")
    assert cells.codes.tolist() == [0, -1, -1, 1, 0, 2]
    assert list(cells.uniques) == ["b", "a", "a "]


def test_non_text_cell_names_the_column_and_row():
    with pytest.raises(TypeError, match=r"column 'body'.*index 'y' holds int 3"):
        text_cells(pd.Series(["a", 3], index=["x", "y"]), "body")
    with pytest.raises(TypeError, match=r"index 'y' holds list"):
        text_cells(pd.Series(["a", ["b"]], index=["x", "y"]), "body")


def test_lone_surrogate_names_the_row():
    with pytest.raises(TypeError, match=r"column 'text': the row with index 2 is not valid Unicode"):
        text_cells(pd.Series(["ok", "fine", "bad \ud800"], dtype=object), "text")
    with pytest.raises(TypeError, match=r"query is not valid Unicode \(a lone surrogate '\\udfff' at position 0\)"):
        check_unicode("\udfff", "query")
    check_unicode("预防感冒", "query")


_CELL = st.one_of(
    st.none(), st.text(alphabet=st.sampled_from(list(WHITESPACE[:6]) + ["\u3000", "a", "b", "预"]), max_size=4)
)


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(_CELL, min_size=1, max_size=30))
def test_blank_rule_is_the_same_for_object_and_string_columns(cells):
    """Each branch of the blank rule (object cells one by one, string columns by pattern) decides as strip()."""
    blank_or_missing = [c is None or not c.strip() for c in cells]
    results = []
    for dtype in (object, "string", "str"):
        found = text_cells(pd.Series(cells, dtype=dtype), "text")
        assert [code < 0 for code in found.codes.tolist()] == blank_or_missing, dtype
        texts = [list(found.uniques)[code] if code >= 0 else None for code in found.codes.tolist()]
        assert texts == [None if b else c for c, b in zip(cells, blank_or_missing)], dtype
        results.append(found.codes.tolist())
    assert results[0] == results[1] == results[2]


def test_str_subclass_cells_are_read_as_plain_text():
    class Note(str):
        pass

    found = text_cells(pd.Series([Note("a"), Note("  "), "b"], dtype=object), "text")
    assert found.codes.tolist() == [0, -1, 1] and [type(u) for u in found.uniques] == [str, str]
