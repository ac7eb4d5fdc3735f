"""Keep secrets out of every text rerankpd shows: one scrub for error messages, log lines and result columns.

A server may echo the key back in an error body, and not always verbatim: HTML-escaped, JSON-escaped
(``\\u0073\\u006b...``), URL-encoded, or with its backslashes doubled by a ``repr``. It may also be cut: an
error body is shortened for the message, and the cut can land inside the key. :func:`scrub` replaces every
run of 8 or more consecutive characters of a secret (so a prefix or a tail cut off by the server too), in any
of those encodings (mixed too); :func:`shorten` scrubs *before* it cuts, so a key split by the cut cannot
leave its first half behind.
:func:`mask_url` hides ``user:password@`` in a URL.

Examples
--------
>>> scrub("bad key sk-canary-4f1d2b7e9a here", ["sk-canary-4f1d2b7e9a"])
'bad key *** here'
>>> scrub("key=sk%2Dcanary%2D4f1d and \\\\u0073k-canary", ["sk-canary-4f1d2b7e9a"])
'key=*** and ***'
>>> shorten("x" * 290 + "sk-canary-4f1d2b7e9a", ["sk-canary-4f1d2b7e9a"], 300)[-5:]
'xx***'
>>> scrub("invalid key 'sk-canary-4f1d2b7...'", ["sk-canary-4f1d2b7e9a"])  # a server's own cut
"invalid key '***...'"
>>> mask_url("https://me:hunter2@example.com/v1")
'https://***:***@example.com/v1'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "MIN_RUN", "mask_url", "scrub", "shorten", "url_secrets"]

#: What a secret is replaced with.
MASK = "***"
#: The shortest run of a secret's characters that is scrubbed (shorter secrets are scrubbed whole).
MIN_RUN = 8
_NAMED = {"&": ("amp",), "<": ("lt",), ">": ("gt",), '"': ("quot",), "'": ("apos", "#39")}


def _forms(char: str) -> str:
    """A regex matching ``char`` as itself or as a server may echo it back."""
    code = ord(char)
    hex2, hex4 = f"{code:02x}", f"{code:04x}"
    forms = [
        re.escape(char),
        rf"\\{{1,4}}u(?i:{hex4})",  # JSON \u0073, repr-doubled \\u0073
        rf"%(?:25)?(?i:{hex2})",  # URL-encoded, or encoded twice
        rf"&#0*{code};",
        rf"&#(?i:x0*{code:x});",
    ]  # HTML character references
    forms += [f"&{name};" for name in _NAMED.get(char, ())]
    if char in '"\\/':
        forms.append(rf"\\{{1,4}}{re.escape(char)}")  # JSON's \" \\ \/ (doubled by a repr)
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


@functools.lru_cache(maxsize=32)
def _pattern(secret: str) -> re.Pattern[str] | None:
    """Every run of ``MIN_RUN`` or more consecutive characters of ``secret``, in any echoed form."""
    if not secret:
        return None
    atoms = [_forms(c) for c in secret]
    run = min(MIN_RUN, len(secret))
    branches = []
    for start in range(len(secret) - run + 1):
        tail = ""
        for atom in reversed(atoms[start + run :]):  # the longest run from here: greedy optional extensions
            tail = f"(?:{atom}{tail})?"
        branches.append("".join(atoms[start : start + run]) + tail)
    return re.compile("|".join(branches))


def _secrets(secrets: Iterable[str | None]) -> list[str]:
    return sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every run of 8+ characters of each secret (in any echoed form) replaced by ``***``.

    Secrets shorter than 4 characters are ignored (they would mask ordinary words).
    """
    if not text:
        return text
    for secret in _secrets(secrets):
        pattern = _pattern(secret)
        if pattern is not None:
            text = pattern.sub(MASK, text)
    return text


def shorten(text: str, secrets: Iterable[str | None], limit: int = 300) -> str:
    """``text`` scrubbed, cut to ``limit`` characters, and scrubbed again at the cut.

    A secret cut in two by the limit would leave its first characters: after the cut, any trailing part of
    the text that begins a secret's run (8+ characters, any echoed form) is masked too.
    """
    secrets = _secrets(secrets)
    text = scrub(text, secrets)
    if len(text) <= limit:
        return text
    return scrub(text[:limit], secrets)  # a run of 8+ left at the cut is one scrub() already masked


def url_secrets(url: str) -> list[str]:
    """The user name and password of ``url`` (``[]`` when it has none)."""
    parts = urlsplit(url)
    return [s for s in (parts.username, parts.password) if s]


def mask_url(url: str) -> str:
    """``url`` with ``user:password@`` replaced by ``***:***@`` (unchanged when it has none)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    auth = MASK if parts.password is None else f"{MASK}:{MASK}"
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))
