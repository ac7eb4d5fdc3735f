"""rerankpd.show and the HTML/text it draws: score bars, cut text with the full text on hover, histograms."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import rerankpd
from rerankpd.notebook.display import RankedView, histogram_svg, show, to_html, to_text


@pytest.fixture
def ranked():
    df = pd.DataFrame(
        {
            "text": ["cats purr on the sofa " * 10, "dogs bark", "<script>alert(1)</script> cats", None],
            "source": ["a", "b", "c", "d"],
        }
    )
    return rerankpd.rerank(df, "cats", reranker="bm25", cache=False, progress=False)


def test_html_draws_a_bar_per_scored_row_and_cuts_long_text(ranked):
    html = to_html(ranked, max_chars=40)
    assert html.count('class="rerankpd-bar"') == 3  # the row without text has no bar
    long_text = ranked["text"].iloc[0] if len(ranked["text"].iloc[0]) > 40 else ranked["text"].iloc[1]
    assert f'title="{long_text}"' in html  # full text on hover
    shown = re.findall(r'<span title="[^"]*">([^<]*)</span>', html)
    assert shown and all(len(s) <= 40 for s in shown) and shown[0].endswith("\u2026")
    scores = [float(s) for s in re.findall(r'class="rerankpd-score"[^>]*>([-0-9.]+)<', html)]
    assert scores == pytest.approx(ranked["rerank_score"].dropna().round(4).tolist())
    widths = [float(x) for x in re.findall(r'<div style="width:([0-9.]+)%', html)]
    assert widths == sorted(widths, reverse=True) and widths[0] == 100.0


def test_html_escapes_cell_text(ranked):
    html = to_html(ranked)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_histogram_per_query_and_row_limit():
    qa = pd.DataFrame(
        {"q": ["cats"] * 3 + ["dogs"] * 3, "text": ["cats purr", "cats nap", "fish", "dogs bark", "dogs run", "cats"]}
    )
    out = rerankpd.rerank(qa, column="text", query_column="q", reranker="bm25", cache=False, progress=False)
    html = to_html(out, max_rows=2)
    assert html.count('<svg class="rerankpd-hist"') == 2
    assert ">cats</text>" in html and ">dogs</text>" in html
    assert "4 more rows not shown" in html
    assert html.count("<tr>") == 1 + 2  # the header and two rows
    assert 'class="rerankpd-hist"' not in to_html(out, histogram=False)


def test_histogram_counts():
    svg = histogram_svg([0.0, 0.1, 0.1, 1.0, float("nan")], bins=2)
    counts = [int(m) for m in re.findall(r": (\d+)</title>", svg)]
    assert counts == [3, 1]  # NaN left out
    assert "no scores" in histogram_svg([np.nan])
    with pytest.raises(ValueError, match="bins"):
        histogram_svg([1.0], bins=0)


def test_text_is_plain_and_aligned(ranked):
    text = to_text(ranked, max_chars=20)
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "score", "text", "source"]
    assert len(lines) == 5 and "<span" not in text and "<div" not in text and "&lt;" not in text
    assert lines[-1].split()[0] == "\u2014"  # the unscored row, no rank
    assert max(len(line) for line in lines) < 60
    assert to_text(ranked, max_rows=1).splitlines()[-1] == "... 3 more rows"


def test_show_writes_text_outside_a_notebook(ranked):
    buffer = io.StringIO()
    show(ranked, file=buffer)
    assert buffer.getvalue() == to_text(ranked) + "\n"
    code = (
        "import pandas as pd, rerankpd; rerankpd.show(pd.DataFrame({'text': ['a'], "
        "'rerank_score': [0.5], 'rerank_rank': [1]}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == ["rank   score  text", "   1  0.5000  a"]


def test_ranked_view_has_both_forms(ranked):
    view = RankedView(ranked, max_rows=2)
    assert view._repr_html_() == to_html(ranked, max_rows=2)
    assert repr(view) == to_text(ranked, max_rows=2)
    assert repr(view).splitlines()[-1] == "... 2 more rows" and view._repr_html_() != to_html(ranked)


def test_bad_input_names_the_problem():
    with pytest.raises(KeyError, match="rerank_score"):
        to_html(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        show([1, 2, 3])
    frame = pd.DataFrame({"text": ["a"], "rerank_score": [1.0]})
    with pytest.raises(ValueError, match="max_rows"):
        to_html(frame, max_rows=-1)
    with pytest.raises(KeyError, match="query_column 'q'"):
        to_html(frame, query_column="q")


def test_a_single_score_draws_no_meaningless_axis():
    svg = histogram_svg([0.8123], title="one row")
    assert "one score: 0.8123" in svg and "<rect" not in svg
    assert svg.count("<text") == 2  # the title and the value, no axis ends
    assert "all 3 scores: 0.5" in histogram_svg([0.5, 0.5, 0.5])
    grouped = pd.DataFrame(
        {"q": ["a", "a", "b"], "text": ["x", "y", "z"], "rerank_score": [0.2, 0.9, 0.7], "rerank_rank": [2, 1, 1]}
    )
    assert "one score: 0.7" in to_html(grouped, query_column="q")


def test_bars_say_whether_they_are_relative_or_span_a_fixed_range():
    out = pd.DataFrame({"text": ["a", "b"], "rerank_score": [0.92, 0.72], "rerank_rank": [1, 2]})
    relative = to_html(out)
    assert "bars are relative: from the lowest (0.72) to the highest (0.92) score shown" in relative
    fixed = to_html(out, score_range=(0, 1))
    assert "bars span the scores 0 to 1" in fixed
    assert "width:73.1%" in fixed  # 0.72 on a 0..1 scale (4% floor + 96% * 0.72)
    with pytest.raises(ValueError, match="score_range"):
        to_html(out, score_range=(1, 1))
    out.attrs["rerank"] = {"reranker": "e5"}
    assert "cosine similarities" in to_html(out) and "not probabilities" in to_html(out)
