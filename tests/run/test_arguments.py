"""Argument checks of rerank(): each bad call names its parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.errors import ConfigurationError
from rerankpd.run.arguments import check_arguments

DF = pd.DataFrame({"text": ["a", "b"], "q": ["x", "y"]})


def test_good_arguments_pass_and_numpy_integers_are_whole_numbers():
    check_arguments(DF, "q", "text", None, np.int64(2), "raise")
    check_arguments(DF, None, "text", "q", None, "coerce")
    out = DF.rerank("a", reranker="bm25", top_n=np.int32(1), cache=False, progress=False)
    assert len(out) == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"top_n": 0}, ConfigurationError, "top_n must be a whole number >= 1 or None, got 0"),
        ({"top_n": True}, ConfigurationError, "top_n"),
        ({"errors": "ignore"}, ConfigurationError, "errors must be one of 'raise', 'coerce'; got 'ignore'"),
        ({"column": None}, ValueError, "column is None; name the column holding the text"),
        ({"query": "bad \ud800"}, TypeError, "query is not valid Unicode"),
        ({"column": "nope"}, KeyError, "column 'nope' is not a column of the frame"),
        ({"query": None, "query_column": "text"}, ValueError, "both 'text'"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, error, match):
    call = {"query": "a", "column": "text", "query_column": None, "top_n": None, "errors": "raise", **kwargs}
    with pytest.raises(error, match=match):
        check_arguments(DF, **call)
    with pytest.raises(error, match=match):  # the same through the public entry point
        rerankpd.rerank(DF, reranker="bm25", cache=False, progress=False, **call)
