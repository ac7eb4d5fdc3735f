"""A cross-encoder on your own CPU or GPU (``reranker="cross-encoder"``), with sentence-transformers.

The default model is ``BAAI/bge-reranker-v2-m3``, the model DMXAPI serves as ``bge-reranker-v2-m3-free``;
any Hugging Face cross-encoder id or local directory works. Install with ``pip install 'rerankpd[local]'``
(sentence-transformers, torch).

Weights come from a local directory or the Hugging Face cache: rerankpd never downloads a model. When the
model is not there, a :class:`~rerankpd.errors.RerankError` names the model, where it looked, and the one
command that fetches it (``hf download BAAI/bge-reranker-v2-m3``).

How a call is scored: the pipeline hands over up to ``batch_size * SORT_WINDOW`` pairs of one query; they
are sorted by length (longest first) and cut into forward passes of at most ``batch_size`` (a pass also ends
where the next pair is less than half as long as its first), so short pairs are not padded to the longest,
and the scores go back in the order given. On an out-of-memory error the forward
batch is halved and that batch retried (:func:`score_in_batches`), down to one pair. Pairs longer than
``max_length`` tokens are counted (``out.attrs["rerank"]["usage"]["truncated_pairs"]``) and the first
truncation warns, naming ``max_chunks_per_doc`` (client chunking) as the fix.

Examples
--------
The halving loop on its own, with a stand-in model that runs out of memory above 2 pairs:

>>> def predict(batch):
...     if len(batch) > 2:
...         raise MemoryError("out of memory")
...     return [float(len(text)) for text in batch]
>>> score_in_batches(["a", "bb", "ccc", "dddd", "e"], 4, predict, lambda exc: isinstance(exc, MemoryError))
([1.0, 2.0, 3.0, 4.0, 1.0], 2)
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pathlib
import pickle
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.chunking import chunk_spec
from ..core.options import boolean, one_of, whole
from ..errors import MissingDependencyError, RerankError, WarnOnce
from .base import Availability, BatchResult, Reranker, Scores

__all__ = ["DEFAULT_MODEL", "SORT_WINDOW", "CrossEncoderReranker", "ModelSource", "resolve_model", "score_in_batches"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "BAAI/bge-reranker-v2-m3"
#: Forward batches handed over per call: the pairs of a call are sorted by length across all of them.
SORT_WINDOW = 16
SCORES = ("probability", "logit")
DTYPES = ("float32", "float16", "bfloat16")
INSTALL = "pip install 'rerankpd[local]'"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5")

# One loaded model per (directory, revision, device, dtype) per process, with the lock held while it runs:
# reranker objects are cheap and many (one per df.rerank(reranker="cross-encoder") call), weights are not.
_MODELS: dict[tuple, tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def _require() -> Any:
    """Import sentence-transformers (and so torch), or say which extra to install."""
    try:
        import sentence_transformers
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"the cross-encoder reranker needs sentence-transformers and torch: {INSTALL}"
        ) from exc
    return sentence_transformers


# --------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are on this machine and which version they are.

    ``revision`` is the commit of the cached Hugging Face snapshot, or for a local directory
    ``"local-"`` plus a hash of its ``config.json`` and its weight files' names, sizes and modification times.
    """

    model: str
    path: str
    revision: str


def _fingerprint(directory: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name == "config.json":
            with open(path, "rb") as fh:
                digest.update(b"config\0" + fh.read())
        elif name.endswith(_WEIGHT_SUFFIXES) and os.path.isfile(path):
            stat = os.stat(path)  # a fine-tune saved over the same files keeps the sizes, not the times
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "~", os.sep)) or "\\" in model or model.count("/") > 1


def resolve_model(model: str, revision: str | None = None) -> ModelSource:
    """Find ``model`` on this machine without any network: a local directory or a Hugging Face cache entry.

    Raises
    ------
    RerankError
        Saying which model, where it looked, and the command that fetches it.
    """
    path = os.path.expanduser(model)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise RerankError(
                f"cross-encoder: the directory {os.path.abspath(path)} has no config.json; give the "
                "directory a model was saved to (model.save_pretrained / CrossEncoder.save)"
            )
        return ModelSource(model, os.path.abspath(path), "local-" + _fingerprint(path))
    if _looks_like_path(model):
        raise RerankError(
            f"cross-encoder: model {model!r} looks like a directory, but {os.path.abspath(path)} "
            "is not one; give the directory a model was saved to, or a Hugging Face model id"
        )
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = snapshot_download(model, revision=revision, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - not cached, or not a valid id: the same advice either way
        fetch = f"hf download {model}" + (f" --revision {revision}" if revision else "")
        raise RerankError(
            f"cross-encoder: model {model!r}{f' at revision {revision!r}' if revision else ''} is not on this "
            f"machine: it is not a local directory and not in the Hugging Face cache ({constants.HF_HUB_CACHE}). "
            f"rerankpd never downloads a model; fetch it once with:  {fetch}"
        ) from exc
    return ModelSource(model, snapshot, os.path.basename(os.path.normpath(snapshot)))


def _pick_device(device: str | None) -> str:
    import torch

    if device not in (None, "auto"):
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _load(source: ModelSource, device: str, dtype: str, trust_remote_code: bool) -> tuple[Any, threading.Lock]:
    key = (source.path, source.revision, device, dtype, trust_remote_code)
    with _MODELS_LOCK:
        if key not in _MODELS:
            sentence_transformers = _require()
            import torch

            try:
                model = sentence_transformers.CrossEncoder(
                    source.path,
                    device=device,
                    local_files_only=True,
                    trust_remote_code=trust_remote_code,
                    model_kwargs={"dtype": getattr(torch, dtype)},
                )
            except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused: nothing in it ran
                raise RerankError(_unsafe_weights_message(source, exc)) from None
            except (OSError, ValueError, KeyError) as exc:
                raise RerankError(
                    f"cross-encoder: could not load {source.model!r} from {source.path}: {exc}. If "
                    f"the download was interrupted, fetch it again:  hf download {source.model}"
                ) from exc
            if model.num_labels != 1:
                raise RerankError(
                    f"cross-encoder: {source.model!r} outputs {model.num_labels} labels; a reranker "
                    "outputs one relevance score per pair (num_labels=1)"
                )
            model.eval()
            _MODELS[key] = (model, threading.Lock())
        return _MODELS[key]


def _unsafe_weights_message(source: ModelSource, exc: BaseException) -> str:
    """Why a directory's pickled weights were refused: they hold more than tensors (code, or objects torch's
    ``weights_only`` loader does not allow), so loading them could run anything."""
    pickled = sorted(
        p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in pathlib.Path(source.path).glob(pattern)
    )
    detail = re.search(r"WeightsUnpickler error: *([^\n]+)", str(exc))
    return (
        f"cross-encoder: refused to load the weights in {source.path}: "
        f"{', '.join(pickled) or 'a weights file'} is a pickle that holds more than tensors"
        + (f" ({detail.group(1).strip()})" if detail else "")
        + "; unpickling it could run any code, so it was not loaded and nothing in it ran. Use a model from "
        "a source you trust, preferably with model.safetensors weights (which hold tensors only)"
    )


def _model_limit(encoder: Any) -> int | None:
    """The longest input the loaded sentence-transformers model takes, in tokens, when it says."""
    limit = getattr(encoder.tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    positions = getattr(encoder.config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) and positions > 0 else None


# --------------------------------------------------------------------------------------------- scoring
def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error and the "out of memory" RuntimeErrors of other backends."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def score_in_batches(
    items: Sequence[Any],
    batch_size: int,
    predict: Callable[[Sequence[Any]], Sequence[float]],
    out_of_memory: Callable[[BaseException], bool] = is_out_of_memory,
    after_out_of_memory: Callable[[], None] | None = None,
    lengths: Sequence[int] | None = None,
) -> tuple[list[float], int]:
    """Score ``items`` in order, ``batch_size`` at a time; when a batch runs out of memory, halve and retry it.

    ``lengths`` (the items' lengths, longest first) also ends a batch before an item shorter than half the
    batch's first, so no item is padded to more than twice its length (where long pairs meet short ones).
    Returns the scores and the batch size that worked last (so the next call starts there). A batch of one
    that still runs out of memory raises the error. At most ``log2(batch_size)`` retries in all.
    """
    scores: list[float] = []
    size, start = max(1, batch_size), 0
    while start < len(items):
        end = min(start + size, len(items))
        if lengths is not None:
            cut = start + 1
            while cut < end and 2 * lengths[cut] >= lengths[start]:
                cut += 1
            end = cut
        batch = items[start:end]
        try:
            values = predict(batch)
        except Exception as exc:
            if len(batch) == 1 or not out_of_memory(exc):
                raise
            size = (len(batch) + 1) // 2
            logger.warning("out of memory scoring %d pairs at once; retrying that batch %d at a time", len(batch), size)
            if after_out_of_memory is not None:
                after_out_of_memory()
            continue
        scores.extend(float(v) for v in values)
        start += len(batch)
    return scores, size


class CrossEncoderReranker(Reranker):
    """A cross-encoder run in this process (sentence-transformers ``CrossEncoder``, torch).

    Parameters
    ----------
    model
        A Hugging Face model id in your cache (``hf download <id>`` fetches it) or a local directory.
    device
        ``"cuda"``, ``"mps"``, ``"cpu"`` (or ``"cuda:1"``...); None: cuda, then mps, then cpu.
    dtype
        ``"float32"``, ``"float16"`` or ``"bfloat16"``; None: float16 on a GPU, float32 on the CPU.
    batch_size
        Pairs per forward pass (halved on an out-of-memory error). The pipeline hands over
        ``batch_size * SORT_WINDOW`` pairs per call (the declared ``self.batch_size``), sorted by length here.
    max_length
        Tokens per (query, document) pair, default 512, lowered to the model's own limit when that is smaller;
        longer pairs are truncated, counted and warned about.
    score
        ``"probability"`` (sigmoid of the logit, as the hosted rerank APIs return; default) or ``"logit"``.
    revision
        A branch, tag or commit of a Hugging Face model, as cached.
    trust_remote_code
        Run the model repository's own code (needed by some models, e.g. jina-reranker-v2); off by default.
    max_chunks_per_doc, chunk_tokens, overlap_tokens
        Client chunking of long documents, as for the HTTP rerankers (:mod:`rerankpd.core.chunking`).
    """

    name = "cross-encoder"
    kind = "cross-encoder"
    pairwise = True
    max_concurrency = 1

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        score: str = "probability",
        revision: str | None = None,
        trust_remote_code: bool = False,
        max_chunks_per_doc: int | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise RerankError(f"cross-encoder: model must be a Hugging Face model id or a directory, got {model!r}")
        self.forward_batch_size = whole("batch_size", batch_size, minimum=1)
        requested_length = whole("max_length", max_length, minimum=8)
        self.score_kind = one_of("score", score, SCORES)
        if dtype is not None:
            one_of("dtype", dtype, DTYPES)
        trust_remote_code = boolean("trust_remote_code", trust_remote_code)
        self.chunking = chunk_spec(max_chunks_per_doc, chunk_tokens, overlap_tokens)
        _require()
        self.model = os.fspath(model)
        self.source = resolve_model(self.model, revision)
        self.device = _pick_device(device)
        self.dtype = dtype or ("float32" if self.device.startswith("cpu") else "float16")
        self._model, self._lock = _load(self.source, self.device, self.dtype, trust_remote_code)
        limit = _model_limit(self._model)
        self.max_length = min(requested_length, limit) if limit else requested_length
        self.batch_size = self.forward_batch_size * SORT_WINDOW
        self._special_tokens = self._model.tokenizer.num_special_tokens_to_add(pair=True)
        import torch

        self._activation = torch.nn.Sigmoid() if self.score_kind == "probability" else torch.nn.Identity()
        self._truncation_warning = WarnOnce()

    @classmethod
    def availability(cls) -> Availability:
        if importlib.util.find_spec("sentence_transformers") is None:
            return Availability(False, "needs rerankpd[local]")
        return Availability(True, "local model")

    def identity(self) -> dict:
        return {
            "reranker": self.name,
            "model": self.model,
            "revision": self.source.revision,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "score": self.score_kind,
        }

    def __repr__(self) -> str:
        return (
            f"CrossEncoderReranker(model={self.model!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"max_length={self.max_length}, score={self.score_kind!r})"
        )

    # ----------------------------------------------------------------------------------------- scoring
    def count_truncated(self, query: str, documents: Sequence[str]) -> int:
        """How many (query, document) pairs are longer than ``max_length`` tokens.

        Only pairs whose UTF-8 length reaches half the limit are tokenized: a token is at least one byte of
        the normalised text, and the factor of two covers normalisers that expand a character (NFKC).
        """
        budget = (self.max_length - self._special_tokens) // 2
        query_bytes = len(query.encode("utf-8"))
        candidates = [d for d in documents if query_bytes + len(d.encode("utf-8")) > budget]
        if not candidates:
            return 0
        encoded = self._model.tokenizer(
            [query] * len(candidates),
            list(candidates),
            add_special_tokens=True,
            truncation=False,
            verbose=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return sum(len(ids) > self.max_length for ids in encoded["input_ids"])

    def _predict(self, pairs: Sequence[tuple[str, str]]) -> Any:
        return self._model.predict(
            list(pairs),
            batch_size=len(pairs),
            activation_fn=self._activation,
            show_progress_bar=False,
            convert_to_numpy=True,
            processing_kwargs={"text": {"max_length": self.max_length}},
        )

    def _after_out_of_memory(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def score_batch(self, query: str, documents: list[str]) -> BatchResult:
        if not documents:
            return BatchResult([], {"truncated_pairs": 0})
        truncated = self.count_truncated(query, documents)
        lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents)) + len(query)
        order = np.argsort(-lengths, kind="stable")  # longest first: an out-of-memory error comes at once
        pairs = [(query, documents[i]) for i in order]
        with self._lock:
            try:
                sorted_scores, self.forward_batch_size = score_in_batches(
                    pairs,
                    self.forward_batch_size,
                    self._predict,
                    is_out_of_memory,
                    self._after_out_of_memory,
                    lengths=lengths[order].tolist(),
                )
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise RerankError(
                        f"cross-encoder: out of memory on {self.device} scoring a single pair of up "
                        f"to {self.max_length} tokens; lower max_length, use dtype='float16', or "
                        "device='cpu'"
                    ) from exc
                raise
        scores = np.empty(len(documents), dtype=np.float64)
        scores[order] = sorted_scores
        if truncated:
            self._truncation_warning(
                f"cross-encoder: pairs longer than max_length={self.max_length} tokens are truncated (the "
                f"model reads only their first {self.max_length} tokens; {truncated} in the first batch). "
                "Set max_chunks_per_doc (get_reranker('cross-encoder', max_chunks_per_doc=4, "
                "chunk_tokens=...)) to score long documents by their best chunk; "
                "out.attrs['rerank']['usage']['truncated_pairs'] counts them"
            )
        return BatchResult(scores.tolist(), {"truncated_pairs": int(truncated)})

    def score(self, query: str, documents: list[str]) -> Scores:
        return self.score_batch(query, documents).scores
