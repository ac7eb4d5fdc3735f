"""The notebook panel: ``df.rerank.panel()`` -> :class:`RerankPanel`, a view over :func:`rerankpd.rerank`.

The panel has no scoring logic of its own. Run reads the controls, calls :func:`rerankpd.rerank` in a
background thread (so the notebook stays responsive) with the pipeline's cancel event and progress
callback, and draws what comes back with :func:`rerankpd.notebook.display.to_html`. Needs ``ipywidgets``
(a core dependency). Its pure parts (argument checks, text columns, the status line's text) are in
:mod:`rerankpd.notebook.panel_parts`.

Examples
--------
>>> import pandas as pd, rerankpd
>>> df = pd.DataFrame({"text": ["wash your hands", "nice weather today"]})
>>> panel = df.rerank.panel(query="wash hands", reranker="bm25", cache=False)
>>> panel.run_button.click()          # in a notebook: show `panel`, type a query, press Run
>>> panel.wait(60)["text"].iloc[0]
'wash your hands'
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from typing import Any

import pandas as pd

from .. import config
from ..core.options import whole
from ..errors import ConfigurationError, MissingDependencyError, RerankError, RunCancelled
from ..rerankers.base import describe
from ..run.pipeline import SCORE
from .display import to_html
from .panel_parts import (
    _ALL_ROWS_LABEL,
    _EXPORT_FORMATS,
    _TOP_N_HINT,
    ONE_QUERY,
    _check_arguments,
    _plain_error,
    _plural,
    _summary_html,
    _text_columns,
    _widgets,
)

__all__ = ["ONE_QUERY", "RerankPanel", "reranker_choices"]

logger = logging.getLogger(__name__)


def reranker_choices() -> list[tuple[str, str]]:
    """``(label, name)`` for every registered reranker, labelled by what its class says of itself.

    The label is the name and :meth:`~rerankpd.rerankers.base.Reranker.availability`'s note: "offline",
    "key set", "no key: set DMXAPI_API_KEY", "needs rerankpd[embedded]", "self-hosted: needs a server at URL"
    (never a key). A reranker whose module cannot even be imported is listed as unavailable.

    Examples
    --------
    >>> dict((name, label) for label, name in reranker_choices())["bm25"]
    'bm25 (offline)'
    """
    from ..rerankers import available_rerankers, reranker_class

    choices = []
    for name in available_rerankers():
        try:
            note = reranker_class(name).availability().note
        except Exception as exc:  # noqa: BLE001 - a broken optional module must not break the panel
            logger.debug("reranker %s could not be imported: %s", name, exc)
            note = "unavailable"
        choices.append((f"{name} ({note})" if note else name, name))
    return choices


def _reranker_options(reranker: Any) -> tuple[list[tuple[str, Any]], Any]:
    """The Reranker dropdown's choices and its first value: a name (case-insensitive), an object, or the
    default (``RERANKPD_RERANKER``, else dmxapi with its key set, else offline)."""
    choices: list[tuple[str, Any]] = list(reranker_choices())
    names = [name for _, name in choices]
    if reranker is None:
        selected: Any = config.default_reranker_name().lower()
        if selected not in names:
            choices.append((f"{selected} (unknown: from RERANKPD_RERANKER)", selected))
    elif isinstance(reranker, str):
        selected = reranker.lower()
        if selected not in names:
            raise ConfigurationError(f"unknown reranker {reranker!r}; choose one of {', '.join(names)}")
    else:
        selected = reranker
        choices.insert(0, (f"{describe(reranker).name} (given)", reranker))
    return choices, selected


class RerankPanel:
    """An ipywidgets panel that reranks a DataFrame: query, columns, reranker, top_n, Run and Cancel.

    Made by ``df.rerank.panel(column=None, **defaults)``; display it as a notebook cell's last expression.
    Every control is a public attribute, so a script or test can drive it without a browser: set
    ``.value``, call ``run_button.click()``, then :meth:`wait`.

    Parameters
    ----------
    df
        The frame to rank; never modified.
    column
        The text column selected at first; default ``"text"`` if present, else the first text column.
    query, query_column, top_n, reranker
        Initial values of the controls (``reranker`` may be a name or a reranker object).
    max_rows
        Rows drawn in the results view.
    **options
        Passed on to :func:`rerankpd.rerank` on every run (``cache``, ``sort``, ``errors``).

    Attributes
    ----------
    query, query_column, column, reranker, top_n
        The controls (Text, Dropdown, Dropdown, Dropdown, BoundedIntText where 0 means all rows).
        ``query_column`` offers :data:`ONE_QUERY` ("one query for every row") and the text columns.
    run_button, cancel_button, export_button, export_format, export_path
        The buttons, and where Export writes.
    progress, progress_text, status, results
        The progress bar and its "done / total pairs" label, the status line and the results view (HTML).
    widget
        The whole panel as one ipywidgets box.
    result
        The ranked DataFrame of the last run that finished, None before and after a failed run.
    error
        The exception that ended the last run (with ``.partial`` when there was one), else None.

    Examples
    --------
    >>> import pandas as pd, rerankpd
    >>> df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"]})
    >>> panel = RerankPanel(df, query="cats", reranker="bm25", cache=False)
    >>> panel.run_button.click()
    >>> panel.wait(60)["text"].tolist()[0]
    'cats purr'
    >>> panel.status.value.startswith("<b>bm25</b>")
    True
    """

    def __init__(
        self,
        df: pd.DataFrame,
        column: Any = None,
        *,
        query: str = "",
        query_column: Any = None,
        top_n: int | None = None,
        reranker: Any = None,
        max_rows: int = 50,
        **options: Any,
    ) -> None:
        column, top_n = _check_arguments(df, column, query_column, top_n, max_rows, options)
        self.df = df
        self.options = dict(options)
        self.max_rows = whole("max_rows", max_rows, minimum=1)
        self.result: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # guards _active and the end-of-run drawing against cancel()
        self._active = False
        self._build_controls(_widgets(), column, query, query_column, top_n, reranker)
        self._wire()

    def _build_controls(
        self, w: Any, column: Any, query: str, query_column: Any, top_n: int | None, reranker: Any
    ) -> None:
        text_columns = _text_columns(self.df)
        style = {"description_width": "100px"}
        self.query = w.Text(
            value=query or "",
            description="Query",
            placeholder="what are you looking for?",
            style=style,
            layout=w.Layout(width="520px"),
        )
        qc_options = [(_ALL_ROWS_LABEL, ONE_QUERY)] + [(str(c), c) for c in text_columns]
        if query_column is not None and query_column not in text_columns:
            qc_options.append((str(query_column), query_column))
        self.query_column = w.Dropdown(
            options=qc_options,
            value=ONE_QUERY if query_column is None else query_column,
            description="Query column",
            style=style,
        )
        self.column = w.Dropdown(
            options=[(str(c), c) for c in dict.fromkeys([*text_columns, column])],
            value=column,
            description="Text column",
            style=style,
        )
        choices, selected = _reranker_options(reranker)
        self.reranker = w.Dropdown(options=choices, value=selected, description="Reranker", style=style)
        self.top_n = w.BoundedIntText(
            value=top_n or 0,
            min=0,
            max=10**9,
            description="Top n",
            style=style,
            tooltip="best rows kept per query; 0 keeps all rows",
            layout=w.Layout(width="200px"),
        )
        self.top_n_hint = w.Label(value=_TOP_N_HINT)
        self.run_button = w.Button(description="Run", button_style="primary", tooltip="rerank the rows")
        self.cancel_button = w.Button(
            description="Cancel", disabled=True, tooltip="stop between requests; finished scores stay cached"
        )
        self.progress = w.IntProgress(
            value=0, min=0, max=1, description="", bar_style="", layout=w.Layout(width="320px")
        )
        self.progress_text = w.Label(value="")
        self.status = w.HTML(value="Ready: type a query and press Run.")
        self.results = w.HTML(value="")
        self.export_format = w.Dropdown(
            options=list(_EXPORT_FORMATS),
            value="csv",
            description="Export as",
            style=style,
            layout=w.Layout(width="180px"),
        )
        self.export_path = w.Text(value="rerank_result.csv", layout=w.Layout(width="260px"))
        self.export_button = w.Button(
            description="Export", disabled=True, tooltip="write the result to the file named on the left"
        )
        for name in (
            "query",
            "query_column",
            "column",
            "reranker",
            "top_n",
            "run_button",
            "cancel_button",
            "progress",
            "status",
            "results",
            "export_format",
            "export_path",
            "export_button",
        ):
            getattr(self, name).add_class(f"rerankpd-{name.replace('_', '-')}")
        self.widget = w.VBox(
            [
                self.query,
                w.HBox([self.column, self.query_column]),
                w.HBox([self.reranker, self.top_n, self.top_n_hint]),
                w.HBox([self.run_button, self.cancel_button, self.progress, self.progress_text]),
                self.status,
                self.results,
                w.HBox([self.export_format, self.export_path, self.export_button]),
            ]
        )
        self.widget.add_class("rerankpd-panel")

    def _wire(self) -> None:
        self.run_button.on_click(self._on_run)
        self.cancel_button.on_click(self._on_cancel)
        self.export_button.on_click(self._on_export)
        self.query_column.observe(self._on_query_column, names="value")
        self.export_format.observe(self._on_export_format, names="value")
        self._on_query_column({"new": self.query_column.value})

    # ---------------------------------------------------------------------------------------- display
    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        state = "running" if self.running else ("done" if self.result is not None else "idle")
        return f"<RerankPanel over {len(self.df)} rows, {state}>"

    # ---------------------------------------------------------------------------------------- state
    @property
    def running(self) -> bool:
        """True while a run is in progress."""
        return self._active

    def call_arguments(self) -> dict:
        """The keyword arguments Run passes to :func:`rerankpd.rerank`, read from the controls now.

        Examples
        --------
        >>> import pandas as pd
        >>> panel = RerankPanel(pd.DataFrame({"text": ["a"]}), query="q", reranker="bm25", top_n=3)
        >>> args = panel.call_arguments()
        >>> args["query"], args["column"], args["top_n"], args["reranker"]
        ('q', 'text', 3, 'bm25')
        """
        query_column = self._query_column_value()
        top_n = int(self.top_n.value or 0)
        return {
            **self.options,
            "query": None if query_column is not None else self.query.value,
            "column": self.column.value,
            "query_column": query_column,
            "top_n": top_n if top_n > 0 else None,
            "reranker": self.reranker.value,
            "progress": False,
        }

    def _query_column_value(self) -> Any:
        value = self.query_column.value
        return None if value is None or value is ONE_QUERY else value

    # ---------------------------------------------------------------------------------------- run
    def run(self) -> None:
        """Start a run with the current control values (what the Run button does); returns at once.

        Does nothing while a run is in progress. Use :meth:`wait` to block until it ends.
        """
        with self._lock:
            if self.running:
                return
            arguments = self.call_arguments()
            if arguments["query"] is not None and not arguments["query"].strip():
                self._set_status("Type a query first, or choose a query column.", kind="error")
                return
            self.result = None
            self.error = None
            self._cancel = threading.Event()
            self.run_button.disabled = True
            self.cancel_button.disabled = False
            self.export_button.disabled = True
            self.progress.value = 0
            self.progress.max = 1
            self.progress.bar_style = "info"
            self.progress_text.value = ""
            self._set_status(f"Running {html.escape(self._reranker_label(arguments['reranker']))} \u2026")
            self._active = True
            self._thread = threading.Thread(
                target=self._work, args=(arguments, self._cancel), name="rerankpd-panel", daemon=True
            )
            self._thread.start()

    def cancel(self) -> None:
        """Ask the current run to stop between requests (what the Cancel button does)."""
        with self._lock:
            if self._active:
                self._cancel.set()
                self.cancel_button.disabled = True
                self._set_status("Cancelling after the requests in flight \u2026")

    def wait(self, timeout: float | None = None) -> pd.DataFrame | None:
        """Block until the current run ends; return :attr:`result` (None if the run failed).

        Raises
        ------
        TimeoutError
            If the run is still going after ``timeout`` seconds.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the rerank run is still going after {timeout} s")
        return self.result

    def _work(self, arguments: dict, cancel: threading.Event) -> None:
        from ..api import rerank

        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            out = rerank(self.df, _cancel=cancel, _on_progress=self._progress, **arguments)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the status line
            failure = exc
        # The end of a run is drawn under the lock, so a Cancel click either lands before it (and is
        # overdrawn by the outcome) or after it (and does nothing); Run is enabled only once the run is over.
        with self._lock:
            try:
                if failure is not None:
                    self.error = failure
                    self._show_failure(failure, time.perf_counter() - started)
                else:
                    info = out.attrs.get("rerank", {})
                    self.result = out
                    self.results.value = to_html(out, max_rows=self.max_rows, explain_scores=False)
                    self._set_status(_summary_html(info))
                    self._show_outcome_on_bar(info)
                    self.export_button.disabled = False
            finally:
                self.run_button.disabled = False
                self.cancel_button.disabled = True
                self._active = False
        if failure is not None and not isinstance(failure, Exception):  # pragma: no cover - Ctrl-C in a thread
            raise failure

    def _progress(self, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = done if total else 1
        self.progress_text.value = f"{done} / {total} pairs"

    def _show_outcome_on_bar(self, info: dict) -> None:
        """The bar after a run: all from cache says so (not "0 / 0 pairs"); failed rows turn it amber."""
        failed, from_cache, sent = info.get("failed") or 0, info.get("from_cache", 0), info.get("sent", 0)
        self.progress.max = max(self.progress.max, 1)
        self.progress.value = self.progress.max
        if sent == 0 and from_cache and not failed:
            self.progress_text.value = f"all {from_cache} from cache"
        elif from_cache:
            self.progress_text.value += f", {from_cache} from cache"
        if failed:
            self.progress.bar_style = "warning"
            self.progress_text.value += f", {_plural(failed, 'row')} failed"
        else:
            self.progress.bar_style = "success"

    def _show_failure(self, exc: BaseException, seconds: float) -> None:
        partial = getattr(exc, "partial", None)
        if isinstance(partial, pd.DataFrame) and SCORE in partial:
            scored = int(partial[SCORE].notna().sum())
            self.progress_text.value = f"stopped: {scored} of {_plural(len(partial), 'row')} scored"
        else:
            self.progress_text.value = "stopped: no rows scored"
        if isinstance(exc, RunCancelled):
            self.progress.bar_style = "warning"
            self._set_status(f"Cancelled: {html.escape(str(exc))}.", kind="warning")
        else:
            logger.debug("rerank panel run failed", exc_info=exc)
            self.progress.bar_style = "danger"
            hint = (
                ""
                if isinstance(exc, (RerankError, ValueError, KeyError, TypeError))
                else " (unexpected: see the log for details)"
            )
            self._set_status(f"Failed after {seconds:.2f} s: {html.escape(_plain_error(exc))}{hint}", kind="error")
        if isinstance(partial, pd.DataFrame) and len(partial) and partial[SCORE].notna().any():
            self.results.value = (
                '<div style="color:#8a6d3b">Partial result (rows not scored show \u2014):'
                "</div>" + to_html(partial, max_rows=self.max_rows, explain_scores=False)
            )
        else:
            self.results.value = ""

    @staticmethod
    def _reranker_label(reranker: Any) -> str:
        return reranker if isinstance(reranker, str) else describe(reranker).name

    def _set_status(self, message_html: str, kind: str = "info") -> None:
        colour = {"info": "inherit", "warning": "#8a6d3b", "error": "#b00020"}[kind]
        self.status.value = message_html if kind == "info" else f'<span style="color:{colour}">{message_html}</span>'

    # ---------------------------------------------------------------------------------------- export
    def export(self, path: str | os.PathLike | None = None, format: str | None = None) -> str:
        """Write :attr:`result` to ``path`` (default: the export box) as CSV or Parquet; return its full path.

        Parquet needs pyarrow (or fastparquet). Raises ValueError when there is no result yet.
        """
        if self.result is None:
            raise ValueError("there is no result to export yet: press Run first")
        fmt = format or self.export_format.value
        if fmt not in _EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(_EXPORT_FORMATS)}, got {fmt!r}")
        target = os.fspath(path if path is not None else self.export_path.value).strip()
        if not target:
            raise ValueError("the export path is empty")
        if fmt == "csv":
            self.result.to_csv(target)
        else:
            try:
                self.result.to_parquet(target)
            except ImportError as exc:
                raise MissingDependencyError(
                    "writing Parquet needs pyarrow: pip install pyarrow (or export as csv)"
                ) from exc
        return os.path.abspath(target)

    def _on_export(self, _button: Any = None) -> None:
        try:
            target = self.export()
        except Exception as exc:  # noqa: BLE001 - shown in the panel, which stays usable
            self._set_status(f"Export failed: {html.escape(_plain_error(exc))}", kind="error")
        else:
            assert self.result is not None  # export() raised otherwise
            self._set_status(f"Wrote {len(self.result)} rows to {html.escape(target)}")

    # ---------------------------------------------------------------------------------------- events
    def _on_run(self, _button: Any = None) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - shown in the panel, which stays usable
            self.run_button.disabled = False
            self._set_status(f"Could not start: {html.escape(_plain_error(exc))}", kind="error")

    def _on_cancel(self, _button: Any = None) -> None:
        self.cancel()

    def _on_query_column(self, change: dict) -> None:
        self.query.disabled = self._query_column_value() is not None

    def _on_export_format(self, change: dict) -> None:
        stem, ext = os.path.splitext(self.export_path.value)
        if ext.lower() in (".csv", ".parquet"):
            self.export_path.value = f"{stem}.{change['new']}"
