"""A tiny random cross-encoder saved to a directory, for tests: no download, well under a second.

A 2-layer BERT (hidden size 32) with one output label, and a WordPiece tokenizer over single characters
(every letter and digit, with its ``##`` continuation, and the CJK characters the tests use), so a text's
length in tokens is about its length in characters. Weights are random but seeded: the same seed gives the
same model.
"""

from __future__ import annotations

import pathlib
import string

CJK = "如何预防感冒应勤洗手戴口罩今天气很好流疫苗每年月接种"
PUNCTUATION = ".,!?;:'\"()-、，。（）"


def build_tiny_cross_encoder(
    directory: pathlib.Path, *, seed: int = 0, layers: int = 2, hidden: int = 32, max_positions: int = 128
) -> pathlib.Path:
    """Save a random ``BertForSequenceClassification`` (num_labels=1) and its tokenizer in ``directory``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    singles = list(string.ascii_lowercase + string.digits)
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + singles
        + ["##" + c for c in singles]
        + list(CJK)
        + list(PUNCTUATION)
    )
    tokenizer = BertTokenizerFast(
        vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))}, model_max_length=max_positions
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
        num_labels=1,
        initializer_range=0.5,
    )
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
