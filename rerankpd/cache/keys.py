"""The keys of every cache entry: what a reranker's identity, a query, a text and a window hash to.

Every key is bytes and starts with one byte naming its kind (:data:`SCORES`, :data:`EMBEDDINGS`,
:data:`WINDOWS`), so one store holds all three and :func:`rerankpd.cache.cache_info` counts them apart.

A pair's key (what :meth:`rerankpd.cache.ScoreCache.key` returns) is 32 bytes: the query's 16-byte prefix,
``SHA-256(tag, identity digest, query)[:16]`` with each field length-prefixed, then the text's BLAKE2b-128.
No two pairs share a key, and a text's hash does not depend on the query: a lookup hashes each text once
however many queries it appears under.

Examples
--------
>>> len(query_prefix(identity_digest({"provider": "demo"}), "q")), text_hashes(["a", "b"]).shape
(16, (2, 16))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..core.identity import identity_digest

__all__ = ["EMBEDDINGS", "SCORES", "WINDOWS", "field", "identity_digest", "pair_keys", "query_prefix", "text_hashes"]

#: The first byte of each kind's keys.
SCORES, EMBEDDINGS, WINDOWS = b"S", b"E", b"W"
KINDS = {SCORES: "scores", EMBEDDINGS: "embeddings", WINDOWS: "windows"}

#: Bytes of a text's hash.
HASH_BYTES = 16
#: Starts every query prefix's hash input: a new format gets a new one.
_KEY_TAG = b"rerankpd score key v4\x00"


def encode(text: str) -> bytes:
    """A text's bytes for hashing (UTF-8; lone surrogates kept, so no two texts share bytes)."""
    return text.encode("utf-8", "surrogatepass")


def field(data: bytes) -> bytes:
    """``data`` with its length in front, so that consecutive fields never run into each other."""
    return len(data).to_bytes(8, "little") + data


def digest(*fields: bytes) -> bytes:
    """SHA-256 of length-prefixed fields (32 bytes)."""
    return hashlib.sha256(b"".join(field(f) for f in fields)).digest()


def query_prefix(identity_digest: str, query: str) -> bytes:
    """The 16 bytes every pair key of ``query`` under that identity starts with."""
    return hashlib.sha256(_KEY_TAG + field(identity_digest.encode("ascii")) + field(encode(query))).digest()[:16]


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """The 16-byte hash of each text, as an ``(n, 16)`` uint8 array (BLAKE2b-128 of its UTF-8)."""
    blake2b = hashlib.blake2b  # encode() inlined: this runs once per text of every request
    joined = b"".join([blake2b(t.encode("utf-8", "surrogatepass"), digest_size=HASH_BYTES).digest() for t in texts])
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), HASH_BYTES)


def pair_keys(prefixes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """32-byte keys from per-pair prefixes ``(n, 16)`` and text hashes ``(n, 16)``, as an ``S32`` array
    (compare, sort and search it as a whole; never read single items: NumPy drops their trailing NULs)."""
    keys = np.empty((len(hashes), 32), dtype=np.uint8)
    keys[:, :16] = prefixes
    keys[:, 16:] = hashes
    return keys.view("S32").reshape(-1)
