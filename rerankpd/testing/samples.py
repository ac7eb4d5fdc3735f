"""Sample data shipped with the package, for notebooks, examples and tests that must run offline.

The data lives in ``rerankpd/testing/data/`` and is installed with the package (no source checkout needed);
``data/CRANFIELD.md`` describes how the sample was made.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

__all__ = ["cranfield_sample"]

_CRANFIELD = "cranfield-sample.json.gz"


def cranfield_sample() -> dict[str, Any]:
    """A sample of the Cranfield test collection with its relevance judgments.

    Cranfield is the public information-retrieval benchmark of 1,400 aeronautics abstracts with graded
    judgments (Cleverdon, 1967). The sample holds queries 1-10, the 20 abstracts a BM25 first stage
    retrieved for each (171 distinct abstracts) and every judgment of those queries, including judgments
    of abstracts the sample does not hold.

    Returns
    -------
    dict
        ``source`` (str): where the data comes from; ``grades`` (str): how to read a grade;
        ``queries`` (dict): query id -> query text; ``docs`` (dict): abstract id -> text;
        ``first_stage`` (dict): query id -> the ids of its BM25 top 20, best first;
        ``qrels`` (list): ``[query_id, abstract_id, grade]`` rows, grade 1 (complete answer) to
        4 (minimal interest), -1 for not relevant. A common gain is ``5 - grade`` (0 for -1).
        A fresh dict on every call.

    Examples
    --------
    >>> from rerankpd.testing import cranfield_sample
    >>> data = cranfield_sample()
    >>> len(data["queries"]), len(data["docs"]), all(len(ids) == 20 for ids in data["first_stage"].values())
    (10, 171, True)
    """
    source = resources.files(__package__).joinpath("data").joinpath(_CRANFIELD)
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        return json.load(fh)
