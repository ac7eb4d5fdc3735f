"""Private: where an HTTP reranker sends its requests, and which key goes there (keys stay home).

:class:`EndpointAndKey` is the part of :class:`rerankpd.rerankers.http.client.HTTPReranker` that decides the
base URL (``base_url=``, the service's variables, its default) and the key: ``api_key=`` goes wherever
``base_url`` says; a key read from a variable goes only to its provider's domains (and to the host of that
provider's own base-URL variable), so a key is never sent to a host it does not belong to.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ... import config
from ...errors import ConfigurationError
from ...redact import mask_url, url_secrets
from ..base import Availability

__all__ = ["EndpointAndKey", "openai_key_homes"]

logger = logging.getLogger("rerankpd.rerankers.http.client")


class EndpointAndKey:
    """The base URL and the key of an HTTP reranker (mixed into ``HTTPReranker``)."""

    name = "http"
    default_base_url = ""
    #: The variable(s) naming the base URL, first set one wins (a tuple when the official SDK has its own).
    base_url_env: str | tuple[str, ...] | None = None
    key_env: tuple[str, ...] = ()
    key_required = True
    #: Where a key read from ``key_env`` may be sent: domain names, each matching itself and its subdomains
    #: (``()``: the host of ``default_base_url``). The host of a URL set in ``base_url_env`` counts too (the
    #: user set both). None: any host (a self-hosted server's own variable). A key passed as ``api_key=`` goes
    #: wherever ``base_url`` says.
    key_domains: tuple[str, ...] | None = ()
    #: True for a generic client (an OpenAI-compatible chat or embeddings API): with ``base_url`` on a host no
    #: key variable belongs to, and no ``api_key=``, it sends no key (a local server) instead of refusing.
    keyless_elsewhere = False
    base_url: str
    _url: str
    _basic_auth: tuple[config.Secret, config.Secret] | None

    @classmethod
    def configured_base_url(cls) -> str | None:
        """The base URL the environment sets (the first set variable of ``base_url_env``), else None."""
        return next((config.env(n) for n in cls.base_url_env_names() if config.env(n)), None)

    @classmethod
    def base_url_env_names(cls) -> tuple[str, ...]:
        """``base_url_env`` as a tuple."""
        return (cls.base_url_env,) if isinstance(cls.base_url_env, str) else tuple(cls.base_url_env or ())

    def default_base_for(self, key: str | None) -> str:
        """The base URL when neither ``base_url=`` nor the environment names one (Voyage: by the key's kind)."""
        return self.default_base_url

    def _init_url(self, base_url: str | None, key: str | None = None) -> None:
        base = base_url or self.configured_base_url() or self.default_base_for(key)
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            shown = mask_url(base) if isinstance(base, str) else base
            raise ConfigurationError(f"base_url must be an http:// or https:// URL, got {shown!r}")
        base = base.rstrip("/")
        user_password = url_secrets(base)
        #: The base URL as shown (credentials masked); requests go to the same URL without them.
        self.base_url = mask_url(base)
        parts = urlsplit(base)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._url = parts._replace(netloc=netloc).geturl()
        self._basic_auth = None
        if user_password:
            from urllib.parse import unquote

            user = unquote(parts.username or "")
            password = unquote(parts.password or "")
            self._basic_auth = (config.Secret(user), config.Secret(password))

    @classmethod
    def availability(cls) -> Availability:
        """Ready when the key is set; a self-hosted server (no key required) when its port answers."""
        if not cls.key_required:
            url = cls.configured_base_url() or cls.default_base_url
            shown = mask_url(url)
            parts = urlsplit(url)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                with socket.create_connection((parts.hostname or "", port), timeout=0.3):
                    pass
            except (OSError, ValueError):
                return Availability(False, f"self-hosted: needs a server at {shown} (none answers there)")
            return Availability(True, f"server at {shown} answers")
        if any(config.env(var) for var in cls.key_env):
            return Availability(True, "key set")
        return Availability(False, f"no key: set {' or '.join(cls.key_env) if cls.key_env else 'api_key='}")

    def key_homes(self) -> dict[str, tuple[str, ...] | None]:
        """Each key variable and the domains a key read from it may be sent to (None: anywhere)."""
        if self.key_domains is None:
            return dict.fromkeys(self.key_env)
        domains = self.key_domains or (urlsplit(self.default_base_url).hostname or "",)
        configured = urlsplit(self.configured_base_url() or "").hostname
        return {var: domains + ((configured,) if configured else ()) for var in self.key_env}

    def _key_candidate(self, api_key: Any) -> str | None:
        """The key before its host is checked (to choose a default base URL by the key's kind)."""
        if isinstance(api_key, config.Secret):
            return api_key.reveal()
        if api_key is not None:
            return api_key if isinstance(api_key, str) else None
        return next((config.env(var) for var in self.key_env if config.env(var)), None)

    def _resolve_key(self, api_key: str | config.Secret | None) -> config.Secret | None:
        """The key to send, from ``api_key=`` or the first variable of ``key_env`` whose key may go to
        ``base_url``'s host; remembers where it came from (:attr:`key_source`) for the authentication hint."""
        #: Where the key came from: "api_key=", a variable's name, or None (no key is sent).
        self.key_source: str | None = None
        #: Variables that are set but whose key does not go to this host.
        self.withheld_key_env: tuple[str, ...] = ()
        key: str | None
        if isinstance(api_key, config.Secret):
            key = api_key.reveal()
        else:
            key = api_key
        if key is not None:
            self.key_source = "api_key="
        else:
            host = urlsplit(self._url).hostname or ""
            withheld = []
            for var, domains in self.key_homes().items():
                value = config.env(var)
                if not value:
                    continue
                if domains is None or _host_in(host, domains):
                    key, self.key_source = value, var
                    break
                withheld.append(var)
            self.withheld_key_env = tuple(withheld)
            if key is None and withheld:
                logger.info(
                    "%s: %s is set, but its key is sent only to %s; %s gets no key (pass api_key=...)",
                    self.name,
                    withheld[0],
                    ", ".join(self.key_homes()[withheld[0]] or ()),
                    host,
                )
        if key is not None and not isinstance(key, str):
            raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
        if not key or not key.strip():
            self.key_source = None
            host = urlsplit(self._url).hostname or ""
            elsewhere = not any(d is None or _host_in(host, d) for d in self.key_homes().values())
            if self.key_required and not (self.keyless_elsewhere and elsewhere):
                if self.withheld_key_env:
                    var = self.withheld_key_env[0]
                    raise ConfigurationError(
                        f"{self.name}: {var} is set, but its key is sent only to "
                        f"{', '.join(self.key_homes()[var] or ())}, and base_url points at {host}: pass "
                        f"api_key=... for that host"
                        + (
                            f" (or set {self.base_url_env_names()[0]} to it, which sends the key there)"
                            if self.base_url_env_names()
                            else ""
                        )
                    )
                where = " or ".join(self.key_env) or "api_key="
                raise ConfigurationError(
                    f"{self.name} needs an API key: set {where} or pass api_key=... to the reranker"
                )
            return None
        key = key.strip()
        if not (key.isascii() and key.isprintable()):
            source = self.key_source or " or ".join(self.key_env)
            raise ConfigurationError(
                f"{self.name}: the API key (from {source}) contains a line break, a control character or a "
                "non-ASCII character (often a stray zero-width space from copy and paste); paste it again"
            )
        return config.Secret(key)

    def auth_hint(self, status: int) -> str:
        """Words added to an authentication error: where the key came from, or why none was sent."""
        if self.key_source == "api_key=":
            return " (check the API key passed as api_key=)"
        if self.key_source:
            return f" (check the API key in {self.key_source})"
        host = urlsplit(self._url).hostname
        if self.withheld_key_env:
            var = self.withheld_key_env[0]
            return (
                f" (no API key was sent: {var} is set, but its key goes only to "
                f"{', '.join(self.key_homes()[var] or ())}; pass api_key=... for {host})"
            )
        where = " or ".join(self.key_env)
        return f" (no API key was sent: {'set ' + where + ' or ' if where else ''}pass api_key=...)"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def openai_key_homes(homes: dict[str, tuple[str, ...] | None]) -> dict[str, tuple[str, ...] | None]:
    """``homes`` with ``OPENAI_API_KEY`` sent only to OpenAI: ``api.openai.com`` and the host of
    ``OPENAI_BASE_URL`` (the official SDK's variables), for the OpenAI-compatible rerankers."""
    configured = urlsplit(config.env("OPENAI_BASE_URL") or "").hostname
    return {**homes, "OPENAI_API_KEY": ("api.openai.com",) + ((configured,) if configured else ())}


def _host_in(host: str, domains: Sequence[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one.

    >>> _host_in("api.cohere.com", ["cohere.com"]), _host_in("cohere.com.evil.io", ["cohere.com"])
    (True, False)
    """
    host = host.lower().rstrip(".")
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains if d)
