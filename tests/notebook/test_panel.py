"""The panel without a browser: set ``.value``, ``run_button.click()``, ``wait()``, look at what it shows.

Scoring goes through the real pipeline: local rerankers, or the dmxapi reranker against the loopback
server (a real HTTP server on 127.0.0.1), so cancel, errors, cache hits and tokens are the real ones.
"""

from __future__ import annotations

import threading
import time

import ipywidgets as w
import pandas as pd
import pytest

import rerankpd
from rerankpd import errors
from rerankpd.notebook.panel import ONE_QUERY, RerankPanel, reranker_choices
from rerankpd.rerankers import Reranker
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY

DOCS = pd.DataFrame(
    {
        "text": ["cats purr on the sofa", "dogs bark at night", "cats and dogs play", None, "stock prices fell"],
        "topic": ["cats", "dogs", "pets", "none", "money"],
        "n": [1, 2, 3, 4, 5],
    },
    index=[10, 11, 12, 13, 14],
)


class Gate(Reranker):
    """A local reranker whose calls block until the test opens the gate, to observe a run in progress."""

    name = "gate"
    batch_size = 1

    def __init__(self):
        self.open = threading.Event()
        self.entered = threading.Event()

    def identity(self):
        return {"reranker": self.name}

    def score(self, query, documents):
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"
        return [float(len(d)) for d in documents]


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_controls_are_public_widgets_with_their_names():
    panel = DOCS.rerank.panel(query="cats", reranker="bm25")
    assert isinstance(panel, rerankpd.RerankPanel)
    kinds = {
        "query": w.Text,
        "query_column": w.Dropdown,
        "column": w.Dropdown,
        "reranker": w.Dropdown,
        "top_n": w.BoundedIntText,
        "run_button": w.Button,
        "cancel_button": w.Button,
        "progress": w.IntProgress,
        "status": w.HTML,
        "results": w.HTML,
        "export_button": w.Button,
    }
    for name, kind in kinds.items():
        assert isinstance(getattr(panel, name), kind), name
    # only text columns are offered; "n" holds numbers
    assert [v for _, v in panel.column.options] == ["text", "topic"] and panel.column.value == "text"
    assert [v for _, v in panel.query_column.options] == [ONE_QUERY, "text", "topic"]
    assert panel.query_column.value is ONE_QUERY
    assert [v for _, v in panel.reranker.options] == rerankpd.available_rerankers()
    assert panel.reranker.value == "bm25" and panel.top_n.value == 0
    assert not panel.run_button.disabled and panel.cancel_button.disabled and panel.export_button.disabled
    assert panel.result is None
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_run_is_a_view_over_rerank():
    panel = DOCS.rerank.panel(query="cats", reranker="bm25", cache=False)
    panel.run_button.click()
    out = panel.wait(60)
    expected = rerankpd.rerank(DOCS, "cats", reranker="bm25", cache=False, progress=False)
    pd.testing.assert_frame_equal(out, expected)
    assert set(out.index[:2]) == {10, 12}  # the two texts about cats
    status = panel.status.value
    for part in (
        "<b>bm25</b>",
        "(bm25s-lucene)",
        "4 of 5 rows scored",
        "0 pairs from cache",
        "1 request ",
        "tokens: n/a",
        " s",
    ):
        assert part in status, (part, status)
    assert panel.progress.value == panel.progress.max == 4
    assert "4 / 4 pairs" in panel.progress_text.value
    html = panel.results.value
    assert html.count("rerankpd-bar") == 4 and "cats purr on the sofa" in html and "<svg" in html
    assert not panel.run_button.disabled and panel.cancel_button.disabled and not panel.export_button.disabled


def test_controls_drive_the_call():
    qa = pd.DataFrame(
        {
            "question": ["cats", "cats", "cats", "dogs", "dogs"],
            "passage": ["cats purr", "fish swim", "cats sleep a lot", "dogs bark", "birds sing"],
        }
    )
    panel = qa.rerank.panel(reranker="bm25")
    assert panel.column.value == "question"  # no "text" column: the first text column
    panel.column.value = "passage"
    panel.query_column.value = "question"
    assert panel.query.disabled  # per-row queries: the query box is not used
    panel.top_n.value = 1
    assert panel.call_arguments() == {
        "query": None,
        "column": "passage",
        "query_column": "question",
        "top_n": 1,
        "reranker": "bm25",
        "progress": False,
    }
    panel.run_button.click()
    out = panel.wait(60)
    assert out["passage"].tolist() == ["cats purr", "dogs bark"]
    assert panel.results.value.count('<svg class="rerankpd-hist"') == 2  # one histogram per question
    panel.query_column.value = ONE_QUERY
    assert not panel.query.disabled
    panel.top_n.value = 0
    panel.query.value = "birds"
    panel.run_button.click()
    assert panel.wait(60)["passage"].iloc[0] == "birds sing"


def test_run_button_is_disabled_while_running_and_notebook_is_not_blocked():
    gate = Gate()
    panel = DOCS.rerank.panel(query="cats", reranker=gate, cache=False)
    assert panel.reranker.label == "gate (given)"
    started = time.monotonic()
    panel.run_button.click()
    assert time.monotonic() - started < 5  # click returns while scoring waits at the gate
    assert gate.entered.wait(10)
    assert panel.running and panel.run_button.disabled and not panel.cancel_button.disabled
    assert "Running gate" in panel.status.value
    panel.run_button.click()  # a second click while running starts nothing
    with pytest.raises(TimeoutError):
        panel.wait(0.05)
    gate.open.set()
    out = panel.wait(30)
    assert out is not None and not panel.running and not panel.run_button.disabled
    assert out["text"].iloc[0] == "cats purr on the sofa"  # the longest text scores highest here


def test_cancel_stops_between_requests_and_finished_scores_stay_cached(tmp_path):
    texts = [f"document number {i} about cats" for i in range(40)]
    frame = pd.DataFrame({"text": texts})
    cache = tmp_path / "scores"
    with LoopbackRerankServer(api_key=API_KEY, latency=0.05) as server:
        reranker = rerankpd.get_reranker(
            "dmxapi", api_key=API_KEY, base_url=server.url, batch_size=2, max_concurrency=1
        )
        panel = frame.rerank.panel(query="cats", reranker=reranker, cache=str(cache))
        panel.run_button.click()
        _wait_until(lambda: panel.progress.value >= 4)
        panel.cancel_button.click()
        assert panel.wait(30) is None
        assert isinstance(panel.error, errors.RunCancelled)
        assert "Cancelled" in panel.status.value and "cached" in panel.status.value
        assert panel.progress.bar_style == "warning"
        sent_before = len(server.documents_received())
        assert 4 <= sent_before < 40
        assert rerankpd.cache_info(cache)["scores"] == sent_before
        assert "Partial result" in panel.results.value
        assert not panel.run_button.disabled  # still usable
        server.reset()
        panel.run_button.click()
        out = panel.wait(60)
        assert out is not None and out["rerank_score"].notna().all()
        assert len(server.documents_received()) == 40 - sent_before  # only what was missing
        assert f"{sent_before} pairs from cache" in panel.status.value


def test_errors_show_in_plain_words_without_the_key_and_the_panel_stays_usable(server):
    wrong = rerankpd.get_reranker("dmxapi", api_key="sk-wrong-secret-123", base_url=server.url)
    panel = DOCS.rerank.panel(query="cats", reranker=wrong, cache=False)
    panel.run_button.click()
    assert panel.wait(30) is None
    assert isinstance(panel.error, errors.AuthenticationError)
    status = panel.status.value
    assert "Failed" in status and "AuthenticationError" in status and "401" in status
    assert "sk-wrong-secret-123" not in status and "Traceback" not in status
    assert panel.progress.bar_style == "danger" and not panel.run_button.disabled
    # fix the cause, run again from the same panel
    right = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=server.url)
    panel.reranker.options = [("dmxapi (loopback)", right)]
    panel.run_button.click()
    out = panel.wait(30)
    assert out is not None and panel.error is None
    assert "tokens" in panel.status.value and "tokens: n/a" not in panel.status.value
    assert "1 request " in panel.status.value


def test_bad_input_is_a_message_not_an_exception():
    panel = DOCS.rerank.panel(reranker="bm25")
    panel.run_button.click()
    assert "Type a query first" in panel.status.value and panel._thread is None
    panel.query.value = "cats"
    panel.column.value = "topic"
    panel.query_column.value = "topic"  # same column for both: rerank's ValueError
    panel.run_button.click()
    assert panel.wait(10) is None
    assert "ValueError" in panel.status.value and "query_column and column" in panel.status.value


def test_export_writes_csv_and_parquet(tmp_path):
    panel = DOCS.rerank.panel(query="cats", reranker="bm25", cache=False)
    panel.export_button.click()  # nothing yet: a message, no file
    assert "Export failed" in panel.status.value
    panel.run_button.click()
    out = panel.wait(60)
    target = tmp_path / "ranked.csv"
    panel.export_path.value = str(target)
    panel.export_button.click()
    assert f"Wrote 5 rows to {target}" in panel.status.value
    back = pd.read_csv(target, index_col=0)
    assert back.index.tolist() == out.index.tolist()
    assert back["rerank_score"].tolist() == pytest.approx(out["rerank_score"].tolist(), nan_ok=True)
    panel.export_format.value = "parquet"
    assert panel.export_path.value == str(tmp_path / "ranked.parquet")
    panel.export_button.click()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ranked.parquet"), out, check_freq=False)


def test_reranker_labels_say_whether_a_key_is_set_never_the_key(monkeypatch):
    labels = dict((name, label) for label, name in reranker_choices())
    assert labels["dmxapi"] == "dmxapi (no key: set DMXAPI_API_KEY)"
    assert labels["bm25"] == "bm25 (offline)"
    monkeypatch.setenv("DMXAPI_API_KEY", "sk-label-secret")
    labels = dict((name, label) for label, name in reranker_choices())
    assert labels["dmxapi"] == "dmxapi (key set)"
    panel = DOCS.rerank.panel(query="cats")
    assert panel.reranker.value == "dmxapi"  # the default follows the environment
    assert "sk-label-secret" not in repr(panel.reranker.options) + repr(panel)


def test_constructor_errors_name_the_problem():
    with pytest.raises(KeyError, match="column 'nope'"):
        DOCS.rerank.panel(column="nope")
    with pytest.raises(ValueError, match="no text column"):
        pd.DataFrame({"n": [1, 2]}).rerank.panel()
    with pytest.raises(TypeError, match="unknown panel option.*'colour'"):
        DOCS.rerank.panel(colour="red")
    with pytest.raises(ValueError, match="unknown reranker 'nope'"):
        DOCS.rerank.panel(reranker="nope")
    with pytest.raises(ValueError, match="top_n"):
        DOCS.rerank.panel(top_n=0)
    with pytest.raises(TypeError, match="DataFrame"):
        RerankPanel([1, 2])


def test_cancel_racing_the_end_of_a_run_never_leaves_the_panel_stuck():
    """A Cancel that lands while the run draws its outcome is either overdrawn by it or does nothing."""

    class Slow(Reranker):
        name = "slow"
        batch_size = 10

        def identity(self):
            return {"reranker": self.name}

        def score(self, query, documents):
            time.sleep(0.02)
            return [float(len(d)) for d in documents]

    panel = DOCS.rerank.panel(query="cats", reranker=Slow(), cache=False)
    for delay in (0.0, 0.01, 0.02, 0.03, 0.05):
        panel.run_button.click()
        time.sleep(delay)
        panel.cancel()
        panel.wait(30)
        assert not panel.running and not panel.run_button.disabled and panel.cancel_button.disabled
        assert "Cancelling" not in panel.status.value
        assert panel.result is not None or isinstance(panel.error, errors.RunCancelled)
        panel.cancel()  # after the run: nothing happens
        assert "Cancelling" not in panel.status.value


# ------------------------------------------------------------------------------------- issue 8 #11, #13, #14; issue 10 #7
def test_all_cached_says_so_instead_of_zero_of_zero(tmp_path):
    panel = DOCS.rerank.panel(query="cats", reranker="e5", cache=str(tmp_path / "c"))
    panel.run_button.click()
    assert panel.wait(60) is not None
    assert panel.progress_text.value == "4 / 4 pairs"
    panel.run_button.click()
    assert panel.wait(60) is not None
    assert panel.progress_text.value == "all 4 from cache" and "0 / 0" not in panel.progress_text.value
    assert panel.progress.bar_style == "success" and panel.progress.value == panel.progress.max


def test_a_failed_run_does_not_look_like_a_finished_one():
    with LoopbackRerankServer(api_key=API_KEY) as server:
        wrong = rerankpd.get_reranker("dmxapi", api_key="sk-wrong", base_url=server.url, max_retries=0)
        panel = DOCS.rerank.panel(query="cats", reranker=wrong, cache=False)
        panel.run_button.click()
        assert panel.wait(30) is None
    assert panel.progress.bar_style == "danger"
    assert panel.progress_text.value == "stopped: 0 of 5 rows scored"  # not "4 / 4 pairs"
    with LoopbackRerankServer(api_key=API_KEY, fault_rate=1.0, fault_kinds=("500",)) as server:
        failing = rerankpd.get_reranker("dmxapi", api_key=API_KEY, base_url=server.url, max_retries=0)
        panel = DOCS.rerank.panel(query="cats", reranker=failing, cache=False, errors="coerce")
        panel.run_button.click()
        assert panel.wait(30) is not None
    assert panel.progress.bar_style == "warning" and "4 rows failed" in panel.progress_text.value
    assert "0 of 5 rows scored" in panel.status.value and "4 rows failed" in panel.status.value


def test_self_hosted_rerankers_say_they_need_a_server(monkeypatch):
    labels = {name: label for label, name in reranker_choices()}
    for name in ("tei", "infinity", "vllm"):
        assert "self-hosted: needs a server at" in labels[name], labels[name]
        assert "no key needed" not in labels[name]


def test_the_panel_lists_whatever_the_registry_has_labelled_by_availability(monkeypatch):
    from rerankpd import rerankers
    from rerankpd.rerankers.base import Availability

    class Elsewhere(Reranker):
        name = "elsewhere"

        @classmethod
        def availability(cls):
            return Availability(False, "needs the moon")

        def score(self, query, documents):
            return [0.0] * len(documents)

    monkeypatch.setattr(
        rerankers,
        "reranker_class",
        lambda name, real=rerankers.reranker_class: Elsewhere if name == "elsewhere" else real(name),
    )
    monkeypatch.setitem(rerankers.REGISTRY, "elsewhere", "tests.notebook.test_panel:Elsewhere")
    labels = {name: label for label, name in reranker_choices()}
    assert labels["elsewhere"] == "elsewhere (needs the moon)"


def test_the_widget_reads_reranker_objects_only_through_describe():
    import inspect
    import re

    import rerankpd.notebook.panel as widget

    source = inspect.getsource(widget)
    assert not re.search(r"getattr\((reranker|model|cls)\b", source)
    assert '"e5"' not in source and "key_env" not in source


def test_constructor_takes_what_rerank_takes():
    import numpy as np

    panel = DOCS.rerank.panel(query="cats", reranker="BM25", top_n=np.int64(2), cache=False)
    assert panel.reranker.value == "bm25" and panel.top_n.value == 2
    assert panel.call_arguments()["top_n"] == 2
    with pytest.raises(ValueError, match="max_rows"):
        DOCS.rerank.panel(max_rows=True)


def test_top_n_says_that_zero_means_all_rows():
    panel = DOCS.rerank.panel(query="cats", reranker="bm25")
    assert panel.top_n.value == 0 and panel.top_n_hint.value == "0 = all rows"
    assert panel.top_n_hint in panel.widget.children[2].children


def test_export_says_the_full_path_it_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = DOCS.rerank.panel(query="cats", reranker="bm25", cache=False)
    panel.run_button.click()
    panel.wait(60)
    panel.export_path.value = "ranked.csv"
    panel.export_button.click()
    assert f"Wrote 5 rows to {tmp_path / 'ranked.csv'}" in panel.status.value
    assert (tmp_path / "ranked.csv").exists()


def test_e5_scores_are_said_to_be_cosines_not_probabilities():
    panel = DOCS.rerank.panel(query="cats", reranker="e5", cache=False)
    panel.run_button.click()
    panel.wait(60)
    assert "cosine similarities" in panel.status.value and "not probabilities" in panel.status.value
    assert "bars are relative" in panel.results.value


def test_a_warning_from_a_panel_run_points_outside_the_library(tmp_path):
    import os

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    panel = DOCS.rerank.panel(query="cats", reranker="e5", cache=str(not_a_dir))
    with pytest.warns(RuntimeWarning, match="score cache at .* could not be opened") as record:
        panel.run_button.click()
        assert panel.wait(60) is not None
    package = os.path.dirname(rerankpd.__file__)
    assert all(not w.filename.startswith(package) for w in record), [w.filename for w in record]
