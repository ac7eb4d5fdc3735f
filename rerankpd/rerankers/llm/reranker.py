"""Rerank with a chat model behind any OpenAI-compatible ``POST {base_url}/chat/completions``.

DMXAPI (the default ``base_url``, key ``DMXAPI_API_KEY``), OpenAI, SiliconFlow, DashScope's compatible mode,
vLLM and Ollama all speak it. ``model`` is required: every request costs money, so there is no default.

The contract is OpenAI's chat completions reference,
https://developers.openai.com/api/reference/python/resources/chat/subresources/completions/ (the same schema
as openai-python's ``types/chat/completion_create_params.py``, ``chat_completion.py`` and
``chat_completion_token_logprob.py``). We send ``model``, ``messages`` (``[{"role": "system"|"user",
"content": str}]``), ``max_tokens`` (``token_limit_field="max_completion_tokens"`` sends the newer name,
which OpenAI's o-series and GPT-5 models require; ``max_tokens`` is deprecated there but it is what most
compatible gateways take), ``temperature: 0`` and, pointwise, ``logprobs: true`` with ``top_logprobs`` (0 to
20). We read ``choices[0].message.content``, ``choices[0].finish_reason``,
``choices[0].logprobs.content[0].top_logprobs[].{token, logprob}`` and ``usage.{prompt_tokens,
completion_tokens, total_tokens}``.

Reasoning models (OpenAI's o-series and GPT-5 by name, or any model with ``reasoning=True``) refuse
``temperature: 0``, ``max_tokens`` and logprobs, and think before they answer: for them temperature is left
out, the budget goes in ``max_completion_tokens`` with room to think (:data:`REASONING_ANSWER_TOKENS`), and a
pointwise pair is scored by its 0-10 grade. An answer cut by its budget (``finish_reason: "length"``) is an
error that says so and names ``answer_tokens``.

Two modes:

``mode="pointwise"`` (default)
    One request per (query, document) pair asking "does the document answer the query? yes or no" with
    ``max_tokens=1``; the score is ``logprob("yes") - logprob("no")`` (see :func:`rerankpd.rerankers.llm.prompts.yes_no_score`).
    Scores are per pair (``batch_size = 1``): the pipeline runs ``max_concurrency`` pairs at once, retries
    each, caches each, and ``estimate()`` counts them. A provider that returns no logprobs (or refuses them
    with a 400 that says so) is asked for a 0-10 grade instead, from then on (one warning);
    ``out.attrs["rerank"]["usage"]`` counts ``scored_by_logprobs`` and ``scored_by_grade``.
``mode="listwise"``
    RankGPT's sliding windows (``window=20``, ``step=10``, from the bottom of the list up): the model
    answers a permutation ``[3] > [1] > [2]`` per window; ``ceil((n - window) / step) + 1`` requests for
    ``n > window`` candidates. The frame's row order is the initial ranking (sort by your first-stage
    score first). Scores are ``n - position`` in the final order, so they depend on the whole list: the
    pipeline sends a query's candidates in one call and caches nothing per pair; each window's answer is
    cached instead (``window_cache``), keyed on the model, prompt, query and the window's documents in order.
    Malformed answers are repaired and counted (``windows_repaired``); a window that still fails after the
    retries keeps its order, is counted (``windows_failed``) and warned about; if every window of a query
    fails, the query fails.

Examples
--------
>>> r = LLMReranker(model="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
>>> r.endpoint, r.kind, r.batch_size, r.pairwise
('http://127.0.0.1:9/v1/chat/completions', 'llm', 1, True)
>>> body = r.build_payload("how to prevent a cold", ["Wash your hands."])
>>> sorted(body), body["max_tokens"], body["top_logprobs"]
(['logprobs', 'max_tokens', 'messages', 'model', 'temperature', 'top_logprobs'], 1, 5)
>>> LLMReranker(model="m", mode="listwise", api_key="k", base_url="http://127.0.0.1:9/v1").estimate_requests(
...     "q", ["a document"] * 100)[0]
9
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import config
from ...cache import CacheSettings
from ...cache.windows import WindowCache
from ...core.options import boolean, number, one_of, whole
from ...errors import BadRequestError, BadResponseError, ConfigurationError, warn_user
from ...redact import shorten
from ..base import Availability, BatchResult
from ..http.client import HTTPReranker, openai_key_homes, usage_counts
from .listwise import ListwiseWindows
from .prompts import (
    GRADE_PROMPT,
    LISTWISE_PROMPT,
    LISTWISE_SYSTEM,
    POINTWISE_PROMPT,
    POINTWISE_SYSTEM,
    check_template,
    cut_document,
    grade_score,
    listwise_messages,
    parse_grade,
    pointwise_messages,
    prompt_tokens,
    window_starts,
    yes_no_score,
)

__all__ = ["LLMReranker"]

logger = logging.getLogger(__name__)

MODES = ("pointwise", "listwise")
SCORING = ("auto", "logprobs", "grade")
#: Model names (the last path segment) of the families that reason before answering and refuse temperature 0:
#: OpenAI's o-series (o1, o3-mini, o4-mini, ...) and GPT-5.
REASONING_MODELS = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
#: The completion budget of a reasoning model's answer when ``answer_tokens`` is not given: its thinking
#: counts against it.
REASONING_ANSWER_TOKENS = 2048


@dataclass
class _ChatAnswer(BatchResult):
    """One chat completion: the answer's text and the first token's alternatives (None: no logprobs)."""

    content: str = ""
    alternatives: list | None = None
    finish_reason: str | None = None


@dataclass
class _Tally:
    """What one score call cost and how it scored, summed into ``out.attrs["rerank"]["usage"]``."""

    usage: Counter = field(default_factory=Counter)
    attempts: int = 0

    def add(self, answer: BatchResult) -> None:
        self.usage.update(answer.usage)
        self.attempts += answer.attempts

    def result(self, scores: list[float]) -> BatchResult:
        return BatchResult(
            scores,
            {k: int(v) for k, v in self.usage.items()},
            max(self.attempts, 0),
            requests=int(self.usage["chat_requests"]),
        )


class LLMReranker(ListwiseWindows, HTTPReranker):
    """A chat model as a reranker (see the module notes for the two modes).

    Parameters
    ----------
    model
        The chat model's name at ``base_url`` (required).
    mode
        ``"pointwise"`` (a yes/no question per pair) or ``"listwise"`` (RankGPT sliding windows).
    prompt, system_prompt
        The user-message template (pointwise: ``{query}``, ``{document}``; listwise: ``{query}``,
        ``{passages}``, ``{count}``) and the system message; default the templates in :mod:`rerankpd.rerankers.llm.prompts`.
    grade_prompt
        Pointwise: the 0-10 grade template (``{query}``, ``{document}``) used without logprobs.
    scoring
        Pointwise: ``"auto"`` (logprobs, else the grade), ``"logprobs"`` (fail without them) or ``"grade"``.
    top_logprobs
        Alternatives asked for the answer's first token (1 to 20).
    max_doc_tokens
        Documents are cut to this many approximate tokens (words, CJK characters); the usage counter
        ``documents_cut`` says how many were.
    window, step
        Listwise: passages per request and how far each window moves up.
    answer_tokens
        The completion budget of a grade or ranking answer (default 4, and 5 per passage + 20); raise it for
        a model that thinks before answering (``<think>...</think>`` is ignored).
    token_limit_field
        ``"max_tokens"``, ``"max_completion_tokens"`` (OpenAI's o-series and GPT-5 require it), or ``"auto"``
        (default): the latter for a reasoning model, else ``max_tokens``.
    temperature
        ``"auto"`` (default): 0, left out for a reasoning model (they refuse it); None: never sent (the
        model's default); a number from 0 to 2: sent as it is.
    reasoning
        Whether the model thinks before answering (see the module notes); None (default): by its name
        (:data:`REASONING_MODELS`).
    window_cache
        Listwise: True caches each window's answer in the score cache directory, a path uses that
        directory, False does not cache.
    **options
        ``api_key`` (default ``DMXAPI_API_KEY``, sent only to DMXAPI's hosts, or ``OPENAI_API_KEY``, sent only
        to ``api.openai.com`` and the host of ``OPENAI_BASE_URL``: with another ``base_url`` pass ``api_key=``;
        a self-hosted server needs none), ``base_url`` (default ``DMXAPI_BASE_URL``, else
        ``https://www.dmxapi.cn/v1``), ``max_concurrency``, ``timeout``, ``max_retries`` and the rate limits
        of :class:`~rerankpd.rerankers.http.client.HTTPReranker`.
    """

    name = "llm"
    kind = "llm"
    default_base_url = "https://www.dmxapi.cn/v1"
    base_url_env = "DMXAPI_BASE_URL"
    path = "/chat/completions"
    key_env: tuple[str, ...] = ("DMXAPI_API_KEY", "OPENAI_API_KEY")
    key_domains = ("dmxapi.cn", "dmxapi.com")
    keyless_elsewhere = True
    default_model = None
    default_batch_size = 1
    default_max_concurrency = 4
    default_timeout = (10.0, 120.0)

    def __init__(
        self,
        *,
        model: str | None = None,
        mode: str = "pointwise",
        prompt: str | None = None,
        system_prompt: str | None = None,
        grade_prompt: str | None = None,
        scoring: str = "auto",
        top_logprobs: int = 5,
        max_doc_tokens: int = 300,
        window: int = 20,
        step: int = 10,
        answer_tokens: int | None = None,
        token_limit_field: str = "auto",
        temperature: float | str | None = "auto",
        reasoning: bool | None = None,
        window_cache: Any = True,
        **options,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(
                "the llm reranker needs model=...: the name of a chat model the service at base_url serves "
                "(for example model='gpt-4o-mini'); there is no default because every request costs money"
                + ("" if model is None else f"; got {model!r}")
            )
        if "batch_size" in options:
            raise ConfigurationError(
                "batch_size: the llm reranker sends one document per request (pointwise) or "
                "one window per request (listwise: window=); use max_concurrency for speed"
            )
        self.mode = one_of("mode", mode, MODES)
        self.scoring = one_of("scoring", scoring, SCORING)
        self.top_logprobs = whole("top_logprobs", top_logprobs, minimum=1, maximum=20)
        self.max_doc_tokens = whole("max_doc_tokens", max_doc_tokens, minimum=1)
        self.window = whole("window", window, minimum=2)
        self.step = whole("step", step, minimum=1, maximum=self.window - 1)
        self.answer_tokens = whole("answer_tokens", answer_tokens, minimum=1, allow_none=True)
        self.reasoning = (
            bool(REASONING_MODELS.match(model.strip().rsplit("/", 1)[-1]))
            if reasoning is None
            else boolean("reasoning", reasoning)
        )
        token_limit_field = one_of(
            "token_limit_field", token_limit_field, ("auto", "max_tokens", "max_completion_tokens")
        )
        if token_limit_field == "auto":
            token_limit_field = "max_completion_tokens" if self.reasoning else "max_tokens"
        self.token_limit_field = token_limit_field
        if temperature == "auto":
            temperature = None if self.reasoning else 0
        #: The temperature sent (None: left out).
        self.temperature = number("temperature", temperature, minimum=0, maximum=2, allow_none=True)
        listwise = self.mode == "listwise"
        fields = {"query", "passages", "count"} if listwise else {"query", "document"}
        self.prompt = check_template(
            "prompt",
            LISTWISE_PROMPT if prompt is None and listwise else POINTWISE_PROMPT if prompt is None else prompt,
            fields,
        )
        self.grade_prompt = check_template(
            "grade_prompt", GRADE_PROMPT if grade_prompt is None else grade_prompt, {"query", "document"}
        )
        system = (LISTWISE_SYSTEM if listwise else POINTWISE_SYSTEM) if system_prompt is None else system_prompt
        if not isinstance(system, str):
            raise ConfigurationError(f"system_prompt must be a string, got {type(system).__name__}")
        self.system_prompt = system
        if not isinstance(window_cache, (bool, str, os.PathLike, CacheSettings)):
            raise ConfigurationError(
                f"window_cache must be True, False, a directory path or rerankpd.CacheSettings, got {window_cache!r}"
            )
        self._window_cache_arg = window_cache
        self._window_stores: dict[Any, WindowCache | None] = {}
        self._lock = threading.Lock()
        self._logprobs_missing = self.scoring == "grade" or (self.reasoning and self.scoring == "auto")
        super().__init__(model=model.strip(), batch_size=1, **options)
        self.pairwise = not listwise
        if listwise:
            self.batch_size = None  # a query's candidates in one call: the windows need the whole list

    def key_homes(self) -> dict[str, tuple[str, ...] | None]:
        """``DMXAPI_API_KEY`` goes only to DMXAPI, ``OPENAI_API_KEY`` only to OpenAI (see :func:`openai_key_homes`)."""
        return openai_key_homes(super().key_homes())

    @classmethod
    def pairwise_with(cls, options: dict) -> bool:
        """Whether a reranker made with ``options`` scores each pair on its own (pointwise), for a planner that
        sees only the class and the options (:mod:`rerankpd.dask` refuses to split a listwise one)."""
        return options.get("mode", "pointwise") != "listwise"

    @classmethod
    def availability(cls) -> Availability:
        """Never ready by itself: it needs ``model=`` (and ``DMXAPI_API_KEY`` or another ``base_url``)."""
        key = "key set" if config.env("DMXAPI_API_KEY") else "no key: set DMXAPI_API_KEY or pass base_url/api_key"
        return Availability(False, f"needs model=... (a chat model); {key}")

    def __repr__(self) -> str:
        key = ", api_key=***" if self.has_key else ""
        return f"LLMReranker(endpoint={self.endpoint!r}, model={self.model!r}, mode={self.mode!r}{key})"

    def identity(self) -> dict:
        """Provider, endpoint, model and everything else that changes the scores: mode, prompts, cuts, windows."""
        options = {
            "mode": self.mode,
            "prompt": self.prompt,
            "system_prompt": self.system_prompt,
            "max_doc_tokens": self.max_doc_tokens,
        }
        if self.mode == "pointwise":
            options.update(scoring=self.scoring, grade_prompt=self.grade_prompt, top_logprobs=self.top_logprobs)
        else:
            options.update(window=self.window, step=self.step)
        if self.temperature != 0:  # not the default: part of what decides the scores
            options["temperature"] = self.temperature
        if self.reasoning:
            options["reasoning"] = True
        return {**(super().identity() or {}), **options}

    def score_options(self) -> dict:
        """Nothing: the options that change scores shape the messages (see :meth:`identity`), they are not
        fields of the request body."""
        return {}

    # ----------------------------------------------------------------- dialect hooks
    def build_payload(self, query: str, documents: Sequence[str]) -> dict:
        """The first request for ``documents``: pointwise the yes/no question (or the grade when
        ``scoring="grade"``) about its one document; listwise the ranking of ``documents`` as one window."""
        cut = [cut_document(d, self.max_doc_tokens)[0] for d in documents]
        if self.mode == "listwise":
            return self._ranking_body(query, cut)
        if len(cut) != 1:
            raise ConfigurationError(f"a pointwise llm request asks about one document, got {len(cut)}")
        return self._grade_body(query, cut[0]) if self._logprobs_missing else self._yes_no_body(query, cut[0])

    def _body(self, messages: list[dict], max_tokens: int, logprobs: bool) -> dict:
        body: dict = {"model": self.model, "messages": messages, self.token_limit_field: max_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return body

    def _yes_no_body(self, query: str, document: str) -> dict:
        return self._body(pointwise_messages(self.prompt, query, document, self.system_prompt), 1, True)

    def _grade_body(self, query: str, document: str) -> dict:
        messages = pointwise_messages(self.grade_prompt, query, document, self.system_prompt)
        return self._body(messages, self.answer_tokens or (REASONING_ANSWER_TOKENS if self.reasoning else 4), False)

    def _ranking_body(self, query: str, passages: Sequence[str]) -> dict:
        messages = listwise_messages(self.prompt, query, passages, self.system_prompt)
        budget = 5 * len(passages) + 20 + (REASONING_ANSWER_TOKENS if self.reasoning else 0)
        return self._body(messages, self.answer_tokens or budget, False)

    def _cut_short(self, answer: _ChatAnswer, body: dict, wanted: str) -> BadResponseError:
        """The error for an answer that gave no ``wanted``: says so when the budget cut it (finish_reason)."""
        if answer.finish_reason == "length":
            limit = body.get(self.token_limit_field)
            return BadResponseError(
                f"{self.name}: the answer of {self.model!r} was cut at {limit} tokens (finish_reason: length) "
                f"before it gave {wanted}: {self._quote(answer.content, 80)}; raise answer_tokens= (a reasoning model "
                "spends tokens thinking first; reasoning=True gives it room)"
            )
        return BadResponseError(
            f"{self.name}: asked for {wanted}, the model answered {self._quote(answer.content, 80)}"
        )

    def parse_response(self, data: Any, n_documents: int) -> _ChatAnswer:
        """The first choice's text and its first token's alternatives; BadResponseError (retried) if absent."""
        if not isinstance(data, dict):
            raise BadResponseError(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BadResponseError("the answer has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise BadResponseError("the first choice has no message")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise BadResponseError(f"the message content is {type(content).__name__}, not text")
        finish = choices[0].get("finish_reason")
        return _ChatAnswer(
            scores=[],
            usage=usage_counts(data.get("usage")),
            content=content or "",
            alternatives=_first_token_alternatives(choices[0].get("logprobs")),
            finish_reason=finish if isinstance(finish, str) else None,
        )

    # ----------------------------------------------------------------- the one job
    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        if not documents:
            return BatchResult([])
        tally = _Tally()
        counters = (
            ("windows", "windows_cached", "windows_repaired", "windows_failed")
            if self.mode == "listwise"
            else ("scored_by_logprobs", "scored_by_grade")
        )
        tally.usage.update(dict.fromkeys(counters + ("chat_requests", "documents_cut"), 0))
        cut = []
        for document in documents:
            text, was_cut = cut_document(document, self.max_doc_tokens)
            cut.append(text)
            tally.usage["documents_cut"] += was_cut
        if self.mode == "listwise":
            return tally.result(self._rank(query, cut, tally))
        return tally.result([self._score_pair(query, text, tally) for text in cut])

    def _chat(self, body: dict, tally: _Tally) -> _ChatAnswer:
        tokens = prompt_tokens(body["messages"]) if self.rate_limiter.tokens_per_minute else 0
        answer = self._request(body, 1, tokens)
        tally.add(answer)
        tally.usage["chat_requests"] += 1
        return answer

    def _score_pair(self, query: str, document: str, tally: _Tally) -> float:
        if not self._logprobs_missing:
            try:
                answer = self._chat(self._yes_no_body(query, document), tally)
            except BadRequestError as exc:
                if self.scoring != "auto" or "logprob" not in exc.message.lower():
                    raise
                self._without_logprobs(f"refused logprobs ({exc.message})")
            else:
                if answer.alternatives is not None:
                    score = yes_no_score(answer.alternatives)
                    if score is not None:
                        tally.usage["scored_by_logprobs"] += 1
                        return score
                    if self.scoring == "logprobs":
                        raise BadResponseError(
                            f"{self.name}: the model answered {self._quote(answer.content, 60)} "
                            "and neither yes nor no is among its top_logprobs; use "
                            "scoring='auto'"
                        )
                elif self.scoring == "logprobs":
                    raise BadResponseError(
                        f"{self.name}: {self.endpoint} returned no logprobs for model "
                        f"{self.model!r}; use scoring='auto' or 'grade'"
                    )
                else:
                    self._without_logprobs("returned no logprobs")
        body = self._grade_body(query, document)
        answer = self._chat(body, tally)
        grade = parse_grade(answer.content)
        if grade is None:
            raise self._cut_short(answer, body, "a grade from 0 to 10")
        tally.usage["scored_by_grade"] += 1
        return grade_score(grade)

    def _quote(self, answer: str, limit: int) -> str:
        """A model's answer as quoted in a message or a log line: scrubbed of the key (a model may repeat
        what it was sent), then cut to ``limit`` characters (the one scrubber of every HTTP message)."""
        return repr(shorten(answer, self._secrets(), limit))

    def _without_logprobs(self, reason: str) -> None:
        with self._lock:
            if self._logprobs_missing:
                return
            self._logprobs_missing = True
        warn_user(
            f"{self.name}: {self.endpoint} {reason} for model {self.model!r}; scoring by asking for a "
            "0-10 grade instead (coarser; out.attrs['rerank']['usage']['scored_by_grade'] counts them)"
        )

    # ----------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the connection pool and the window cache."""
        super().close()
        with self._lock:
            stores, self._window_stores = self._window_stores, {}
        for store in stores.values():
            if store is not None:
                store.close()

    # ----------------------------------------------------------------- cost
    def estimate_requests(self, query: str, documents: Sequence[str]) -> tuple[int, int]:
        """Requests and approximate prompt tokens one score call with ``documents`` would send.

        Pointwise: one request per document (the yes/no question, or the grade once logprobs are known to
        be missing). Listwise: one per window, each window's tokens counted as if the model kept the order
        it was given (which documents share a window later depends on the answers). Window cache hits and
        retries are not known in advance and not counted.
        """
        cut = [cut_document(d, self.max_doc_tokens)[0] for d in documents]
        if self.mode == "pointwise":
            body = self._grade_body if self._logprobs_missing else self._yes_no_body
            return len(cut), sum(prompt_tokens(body(query, d)["messages"]) for d in cut)
        starts = window_starts(len(cut), self.window, self.step) if len(cut) > 1 else []
        tokens = sum(
            prompt_tokens(listwise_messages(self.prompt, query, cut[s : s + self.window], self.system_prompt))
            for s in starts
        )
        return len(starts), tokens


def _first_token_alternatives(logprobs: Any) -> list | None:
    """``top_logprobs`` of the answer's first token, plus the token itself; None when no logprobs came back."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    tokens = logprobs["content"]
    if not tokens or not isinstance(tokens[0], dict):
        return []
    first = tokens[0]
    given = first.get("top_logprobs") or []
    if isinstance(given, dict):  # the legacy completions shape, {token: logprob}, which some gateways send
        given = [{"token": token, "logprob": logprob} for token, logprob in given.items()]
    alternatives = [a for a in given if isinstance(a, dict)]
    if first.get("token") not in {a.get("token") for a in alternatives}:
        alternatives.append({"token": first.get("token"), "logprob": first.get("logprob")})
    for alternative in alternatives:
        value = alternative.get("logprob")
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError:  # a number of hundreds of digits: a broken answer (retried), not a logprob
                raise BadResponseError(
                    f"a logprob of {len(str(value))} digits is not a number a model returns"
                ) from None
    return alternatives
