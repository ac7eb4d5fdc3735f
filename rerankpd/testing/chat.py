"""The ``"openai-chat"`` dialect of the loopback server: a deterministic fake LLM behind ``/v1/chat/completions``.

``LoopbackRerankServer(dialect="openai-chat")`` speaks it (registered with
:func:`rerankpd.testing.register_dialect` when :mod:`rerankpd.testing` is imported); give an
``OpenAIChatDialect(FakeChatModel(logprobs=False))`` object for a provider without logprobs, and reach
the model of a running server as ``server.dialect.model`` (``server.dialect.model.malform_next("missing")``).

It checks each request body against OpenAI's chat completions reference
(https://developers.openai.com/api/reference/python/resources/chat/subresources/completions/): ``model`` and
``messages`` required, only documented fields, ``top_logprobs`` from 0 to 20 and only with
``logprobs: true``, not both ``max_tokens`` and ``max_completion_tokens``; it answers in that reference's
shape (``choices[0].message.content``, ``choices[0].logprobs.content[].top_logprobs[]``, ``usage``).

It reads the default prompts of :mod:`rerankpd.rerankers.llm.prompts` like a model would (the text between
their tags, unescaped), and answers with the
character-bigram overlap of query and document (the server's ``score_fn``,
:func:`rerankpd.testing.overlap_score` by default, unless the model was given its own):

* a yes/no question: one token, with ``top_logprobs`` where ``P(yes) = 0.97 p`` (split between ``"Yes"`` and
  ``" yes"``) and ``P(no) = 0.97 (1 - p)`` (``"No"``, ``"no"``), ``p`` the overlap clipped to [0.02, 0.98];
* a 0-10 grade question: ``round(10 p)``;
* a ranking of ``[i]`` passages: the permutation the overlap implies, ``[3] > [1] > [2]``.

It can be told to answer without logprobs (``logprobs=False``), to return malformed rankings (``"unknown"``,
``"repeat"``, ``"missing"``, ``"garbage"``) or an unclear first token (``"unclear"``: neither yes nor no)
for the next requests, and it counts prompt tokens with its own rule: CJK characters plus the
whitespace-separated pieces of the rest of every message.

Examples
--------
>>> from rerankpd.testing import overlap_score
>>> body = {"model": "m", "messages": [{"role": "user", "content": "Query: <query>cold</query>\\n\\n"
...         "[1] <passage>stocks</passage>\\n[2] <passage>a cold</passage>\\n\\nRank the 2 passages above"}]}
>>> OpenAIChatDialect().respond(check_chat_request(body), overlap_score)["choices"][0]["message"]["content"]
'[2] > [1]'
"""

from __future__ import annotations

import html
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from .dialects import Dialect, RequestRejected, register_dialect

__all__ = ["CHAT_FIELDS", "MALFORMED_KINDS", "FakeChatModel", "OpenAIChatDialect", "check_chat_request", "count_tokens"]

#: The request fields of the chat completions reference this fake accepts (others are a 400, as OpenAI does).
CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "logprobs",
        "top_logprobs",
        "n",
        "seed",
        "stop",
        "stream",
        "user",
        "frequency_penalty",
        "presence_penalty",
        "response_format",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant"})
MALFORMED_KINDS = ("unknown", "repeat", "missing", "garbage", "unclear")

_CJK_CHAR = re.compile(
    "[\u1100-\u11ff\u3040-\u30ff\u3100-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)
_POINTWISE = re.compile(
    r"Query: <query>(?P<query>.*?)</query>\n\nDocument: <document>(?P<document>.*?)</document>"
    r"\n\n(?P<ask>[^\n]*)\Z",
    re.DOTALL,
)
_LISTWISE = re.compile(
    r"Query: <query>(?P<query>.*?)</query>\n\n(?P<passages>\[1\] <passage>.*?)\n\nRank the", re.DOTALL
)
_PASSAGE = re.compile(r"^\[(\d+)\] <passage>(.*)</passage>$", re.MULTILINE)


def count_tokens(text: str) -> int:
    """The fake's token count: each CJK character, plus each whitespace-separated piece of the rest.

    >>> count_tokens("Query: 如何预防感冒 [1] wash")
    9
    """
    return len(_CJK_CHAR.findall(text)) + len(_CJK_CHAR.sub(" ", text).split())


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_chat_request(body: Any) -> dict:
    """``body`` if it is a valid chat completions request by the reference; RequestRejected if not."""
    if not isinstance(body, dict):
        raise RequestRejected("the request body must be a JSON object")
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        raise RequestRejected(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestRejected("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("messages must be a non-empty array")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise RequestRejected(
                f"messages[{i}] must be an object with a role ({', '.join(sorted(ROLES))}) and text content"
            )
    if "max_tokens" in body and "max_completion_tokens" in body:
        raise RequestRejected("give max_tokens or max_completion_tokens, not both")
    for name in ("max_tokens", "max_completion_tokens"):
        if name in body and (not _whole(body[name]) or body[name] < 1):
            raise RequestRejected(f"{name} must be an integer >= 1")
    temperature = body.get("temperature", 1)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise RequestRejected("temperature must be a number between 0 and 2")
    if "logprobs" in body and not isinstance(body["logprobs"], bool):
        raise RequestRejected("logprobs must be a boolean")
    if "top_logprobs" in body:
        top = body["top_logprobs"]
        if not _whole(top) or not 0 <= top <= 20:
            raise RequestRejected("top_logprobs must be an integer between 0 and 20")
        if body.get("logprobs") is not True:
            raise RequestRejected("logprobs must be set to true if top_logprobs is used")
    if body.get("n", 1) != 1 or body.get("stream", False) is not False:
        raise RequestRejected("this server answers n=1 without streaming")
    return body


class FakeChatModel:
    """A deterministic chat model that reads rerankpd's default prompts (see the module notes).

    Parameters
    ----------
    score_fn
        ``score_fn(query, document) -> float`` in [0, 1]; None (default) uses the server's.
    logprobs
        False answers every request with ``"logprobs": null``, as some providers do.
    reasoning_tokens
        When set, a reasoning model (OpenAI's o-series, GPT-5): it refuses a ``temperature`` other than 1,
        ``max_tokens`` and ``logprobs`` with OpenAI's 400s, and spends this many completion tokens thinking
        before it answers; a budget (``max_completion_tokens``) they use up gives empty content with
        ``finish_reason: "length"``.
    """

    def __init__(
        self, score_fn: Callable[[str, str], float] | None = None, logprobs: bool = True, reasoning_tokens: int = 0
    ) -> None:
        self.score_fn = score_fn
        self.logprobs = logprobs
        self.reasoning_tokens = reasoning_tokens
        self._lock = threading.Lock()
        self._malformed: list[str] = []
        self.served = 0
        self.prompt_tokens = 0

    def malform_next(self, kind: str, count: int = 1) -> None:
        """Give the next ``count`` rankings (or, for ``"unclear"``, yes/no answers) the malformed ``kind``."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; choose one of {', '.join(MALFORMED_KINDS)}")
        with self._lock:
            self._malformed.extend([kind] * count)

    def _take_malformed(self, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            for i, kind in enumerate(self._malformed):
                if kind in kinds:
                    return self._malformed.pop(i)
        return None

    def _p(self, score_fn, query: str, document: str) -> float:
        return min(0.98, max(0.02, float(score_fn(query, document))))

    def complete(self, body: dict, score_fn: Callable[[str, str], float]) -> dict:
        """The ``chat.completion`` answer to a checked request body (``score_fn`` unless the model has its own)."""
        score_fn = self.score_fn or score_fn
        prompt = body["messages"][-1]["content"]
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or 4096
        thinking = min(self.reasoning_tokens, limit)
        limit -= thinking
        alternatives = None
        pointwise, listwise = _POINTWISE.search(prompt), _LISTWISE.search(prompt)
        if pointwise and "yes or no" in pointwise["ask"]:
            alternatives = self._yes_no(
                score_fn, html.unescape(pointwise["query"]), html.unescape(pointwise["document"])
            )
            content = alternatives[0]["token"].strip()
        elif pointwise and "0" in pointwise["ask"] and "10" in pointwise["ask"]:
            content = str(
                round(10 * self._p(score_fn, html.unescape(pointwise["query"]), html.unescape(pointwise["document"])))
            )
        elif listwise:
            content = self._ranking(score_fn, html.unescape(listwise["query"]), listwise["passages"])
        else:
            content = "I do not understand the question."
        pieces = content.split(" ")
        finish = "length" if len(pieces) > limit or limit == 0 else "stop"
        content = " ".join(pieces[:limit])
        used = sum(count_tokens(m["content"]) for m in body["messages"])
        with self._lock:
            self.served += 1
            self.prompt_tokens += used
            serial = self.served
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": finish,
        }
        if body.get("logprobs") and self.logprobs:
            choice["logprobs"] = {
                "content": _token_logprobs(content, alternatives, body.get("top_logprobs", 0)),
                "refusal": None,
            }
        completion = max(1, count_tokens(content)) + thinking
        return {
            "id": f"chatcmpl-loopback-{serial}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": used, "completion_tokens": completion, "total_tokens": used + completion},
        }

    def _yes_no(self, score_fn, query: str, document: str) -> list[dict]:
        if self._take_malformed(("unclear",)):
            return [
                {"token": "Sure", "logprob": math.log(0.6)},
                {"token": "The", "logprob": math.log(0.3)},
                {"token": "Maybe", "logprob": math.log(0.05)},
            ]
        p = self._p(score_fn, query, document)
        shares = [
            ("Yes", 0.97 * p * 0.7),
            (" yes", 0.97 * p * 0.3),
            ("No", 0.97 * (1 - p) * 0.8),
            ("no", 0.97 * (1 - p) * 0.2),
            ("Maybe", 0.03),
        ]
        ranked = sorted(shares, key=lambda item: -item[1])
        return [{"token": token, "logprob": math.log(share)} for token, share in ranked]

    def _ranking(self, score_fn, query: str, passages: str) -> str:
        texts = {int(number): html.unescape(text) for number, text in _PASSAGE.findall(passages)}
        ids = sorted(texts, key=lambda i: (-float(score_fn(query, texts[i])), i))
        kind = self._take_malformed(("unknown", "repeat", "missing", "garbage"))
        if kind == "unknown":
            ids = ids[:1] + [len(ids) + 7] + ids[1:]
        elif kind == "repeat":
            ids = ids[:2] + ids[:1] + ids[2:]
        elif kind == "missing":
            ids = ids[1:]
        elif kind == "garbage":
            return "I am sorry, but I cannot rank these passages."
        return " > ".join(f"[{i}]" for i in ids)


def _token_logprobs(content: str, alternatives: list[dict] | None, top: int) -> list[dict]:
    """``logprobs.content``: one entry per answer token (the first with its alternatives, if any)."""

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    out = []
    for i, piece in enumerate(content.split(" ") if content else []):
        token = piece if i == 0 else " " + piece
        if i == 0 and alternatives:
            first = dict(entry(alternatives[0]["token"], alternatives[0]["logprob"]))
            first["top_logprobs"] = [entry(a["token"], a["logprob"]) for a in alternatives[:top]]
            out.append(first)
        else:
            item = entry(token, 0.0)
            item["top_logprobs"] = [entry(token, 0.0)][:top]
            out.append(item)
    return out


class OpenAIChatDialect(Dialect):
    """The ``"openai-chat"`` wire format: ``POST /v1/chat/completions`` answered by a :class:`FakeChatModel`."""

    path = "/v1/chat/completions"
    base_path = "/v1"

    def __init__(self, model: FakeChatModel | None = None, **options) -> None:
        self.model = model or FakeChatModel(**options)

    def parse_request(self, body: Any) -> dict:
        """The body, checked against the reference (RequestRejected in OpenAI's words if it is not valid); a
        reasoning model also refuses what OpenAI's reasoning models refuse."""
        body = check_chat_request(body)
        if self.model.reasoning_tokens:
            if body.get("temperature", 1) != 1:
                raise RequestRejected(
                    f"Unsupported value: 'temperature' does not support {body['temperature']} "
                    "with this model. Only the default (1) value is supported."
                )
            if "max_tokens" in body:
                raise RequestRejected(
                    "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead."
                )
            if body.get("logprobs"):
                raise RequestRejected("Unsupported parameter: 'logprobs' is not supported with this model.")
        return body

    def texts(self, request: dict) -> list[str]:
        """The messages' text."""
        return [m["content"] for m in request["messages"]]

    def respond(self, request: dict, score_fn: Callable[[str, str], float]) -> dict:
        return self.model.complete(request, score_fn)

    def incomplete(self, request: dict) -> dict:
        """A 200 answer a client cannot use (no choices), for the server's ``missing_index`` fault."""
        return {
            "id": "chatcmpl-loopback-broken",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def error_body(self, status: int, message: str) -> dict:
        kind = {401: "authentication_error", 429: "rate_limit_exceeded"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )
        return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


register_dialect("openai-chat", OpenAIChatDialect)
