"""A model directory whose weights are a malicious pickle: nothing runs, and the error says where and why."""

from __future__ import annotations

import os
import pathlib

import pytest

import rerankpd
from rerankpd.errors import RerankError

from .tiny_cross_encoder import build_tiny_cross_encoder


class _Payload:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickled_weights_are_a_rerank_error_naming_the_directory(tmp_path):
    pytest.importorskip("sentence_transformers")
    import torch

    directory = build_tiny_cross_encoder(tmp_path / "evil-model")
    for weights in directory.glob("*.safetensors"):
        weights.unlink()  # leave only the pickled checkpoint
    marker = tmp_path / "pwned"
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(marker)}, directory / "pytorch_model.bin")
    with pytest.raises(RerankError) as info:
        rerankpd.get_reranker("cross-encoder", model=str(directory))
    message = str(info.value)
    assert str(directory) in message and "pytorch_model.bin" in message
    assert "pickle" in message and "safetensors" in message
    assert not marker.exists()  # nothing in the file ran
