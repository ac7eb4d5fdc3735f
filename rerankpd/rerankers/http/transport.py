"""The wire under the HTTP rerankers: one pooled session per reranker, and a POST bounded in total time.

:func:`make_session` reads the environment's proxy and CA settings once (``requests`` would read them, and
``~/.netrc``, for every request); :func:`post` sends one body and reads the answer one socket read at a
time, so a server trickling a byte every 0.1 s cannot hold an attempt past its deadline (the read timeout
only bounds each read). Errors are ``requests``/``urllib3`` exceptions and :class:`DeadlinePassed`; the
reranker turns them into :mod:`rerankpd.errors`.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ... import config

__all__ = ["AnswerTooLarge", "DeadlinePassed", "make_session", "post"]


class DeadlinePassed(Exception):
    """An attempt ran past its total deadline while its body was still arriving."""


class AnswerTooLarge(Exception):
    """The answer's body, decoded (gzip, deflate, ...), grew past the limit while it was read."""

    def __init__(self, limit: int, encoding: str | None) -> None:
        super().__init__(f"more than {limit} bytes decoded" + (f" from a {encoding} body" if encoding else ""))
        self.limit, self.encoding = limit, encoding


class BasicAuth(requests.auth.AuthBase):
    """HTTP basic auth from ``user:password@`` in the base URL, kept as secrets (never in a repr)."""

    def __init__(self, user: config.Secret, password: config.Secret) -> None:
        self._user, self._password = user, password

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if "Authorization" not in request.headers:  # an API key's header wins
            return requests.auth.HTTPBasicAuth(self._user.reveal(), self._password.reveal())(request)
        return request

    def __repr__(self) -> str:
        return "BasicAuth('***')"


def make_session(
    url: str, pool_size: int, basic_auth: tuple[config.Secret, config.Secret] | None = None
) -> tuple[requests.Session, bool | str]:
    """A session for ``url`` with the environment's proxies resolved once; (session, verify).

    ``verify`` is True or the CA bundle the environment names (``REQUESTS_CA_BUNDLE``), to pass per request.
    """
    session = requests.Session()
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.trust_env = False  # resolved above, once
    session.proxies.update(settings.get("proxies") or {})
    if basic_auth is not None:
        session.auth = BasicAuth(*basic_auth)
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    verify = settings.get("verify")
    return session, True if verify is None else verify  # None: requests' default, check certificates


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: tuple[float, float],
    deadline: float,
    verify: bool | str = True,
    limit: int | None = None,
) -> tuple[int, Any, bytes]:
    """POST ``body``; (status, headers, raw body), the body read by ``deadline`` (a ``time.monotonic()``) and
    decoded to at most ``limit`` bytes (:class:`AnswerTooLarge` beyond)."""
    response = session.post(url, data=body, headers=headers, timeout=timeout, stream=True, verify=verify)
    try:
        raw = read_body(response.raw, deadline, limit)
    except BaseException:
        response.close()  # the connection is half-read: never back to the pool
        raise
    response.raw.release_conn()
    return response.status_code, response.headers, raw


def read_body(raw: Any, deadline: float, limit: int | None = None) -> bytes:
    """The whole body of a urllib3 response, one socket read at a time, giving up at ``deadline``, and at
    ``limit`` decoded bytes (each read decodes at most 64 KiB, so a gzip bomb is stopped at the limit, not
    inflated whole)."""
    read = getattr(raw, "read1", None) or raw.read  # read1: urllib3 >= 2.1; one recv per call
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise DeadlinePassed()
        chunk = read(65536, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise AnswerTooLarge(limit, (getattr(raw, "headers", None) or {}).get("Content-Encoding"))
        chunks.append(chunk)
