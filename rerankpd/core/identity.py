"""A reranker's identity as text and as a digest: the one rule every cache keys on.

A reranker's ``identity()`` is a dict of everything that decides its scores (provider, endpoint, model, every
score-affecting option; never a key). :func:`identity_text` writes it as canonical JSON (sorted keys, UTF-8,
anything else by ``str``); :func:`identity_digest` is the SHA-256 of that text, in hex. The score cache, the
shared store for Dask and a chat reranker's window cache all derive their keys from this digest, so the same
reranker finds the same entries wherever it runs.

Examples
--------
>>> identity_text({"model": "m", "provider": "p"})
'{"model": "m", "provider": "p"}'
>>> identity_digest({"provider": "p", "model": "m"}) == identity_digest('{"model": "m", "provider": "p"}')
True
>>> len(identity_digest({"model": "m"}))
64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["identity_digest", "identity_text"]


def identity_text(identity: Mapping[str, Any]) -> str:
    """``identity`` as canonical JSON text: sorted keys, non-ASCII kept, other values by ``str``."""
    return json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)


def identity_digest(identity: Mapping[str, Any] | str) -> str:
    """The SHA-256 (hex) of an identity: a dict, or its canonical text (:func:`identity_text`) as it is."""
    text = identity if isinstance(identity, str) else identity_text(identity)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
