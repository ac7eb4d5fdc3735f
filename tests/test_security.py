"""Security: the API key never shows (canary grep everywhere), the cache is JSON in a private directory,
plain http to a remote host warns, redirects never carry the key to another host, TLS is verified."""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import shutil
import sqlite3
import ssl
import stat
import subprocess
import threading
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import requests

import rerankpd
from rerankpd import errors
from rerankpd.cli import commands as cli
from rerankpd.testing import LoopbackRerankServer
from tests.conftest import API_KEY

CANARY = API_KEY  # "sk-canary-..." - must appear nowhere but in the Authorization header


def _leaks(text: str) -> bool:
    return CANARY in text or CANARY[3:] in text


def _error_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_canary_key_never_appears_in_reprs_errors_logs_progress_cli_or_cache(tmp_path, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    cache_dir = tmp_path / "cache"
    seen: list[str] = []
    df = pd.DataFrame({"text": [f"text {i} about colds" for i in range(40)]})
    with LoopbackRerankServer(api_key=CANARY) as server, LoopbackRerankServer(api_key="sk-some-other-key") as refusing:
        r = rerankpd.get_reranker(
            "dmxapi",
            api_key=CANARY,
            base_url=server.url,
            batch_size=10,
            backoff_base=0.001,
            backoff_cap=0.002,
            max_retries=2,
        )
        seen += [repr(r), str(r), repr(vars(r)), repr(r._api_key), f"{r._api_key}"]
        # a run with the progress bar forced on, retries and DEBUG logs
        server.fail_next("503")
        server.fail_next("html")
        out = rerankpd.rerank(df, "colds", reranker=r, cache=cache_dir, progress=True)
        seen.append(repr(out.attrs))
        # errors and their tracebacks: a refused key, a dead port, exhausted retries with a partial result
        bad = rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url=refusing.url, max_retries=0)
        with pytest.raises(errors.AuthenticationError) as refused:
            bad.score("q", ["a"])
        seen.append(_error_text(refused.value))
        dead = rerankpd.get_reranker(
            "dmxapi", api_key=CANARY, base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=(0.5, 0.5)
        )
        with pytest.raises(errors.APIConnectionError) as unreachable:
            dead.score("q", ["a"])
        seen.append(_error_text(unreachable.value))
        server.fail_next("500", count=10)
        r2 = rerankpd.get_reranker(
            "dmxapi", api_key=CANARY, base_url=server.url, max_retries=1, backoff_base=0.001, backoff_cap=0.002
        )
        with pytest.raises(errors.ServerError) as failed:
            rerankpd.rerank(pd.DataFrame({"text": ["x", "y"]}), "colds", reranker=r2, cache=False, progress=False)
        seen.append(_error_text(failed.value) + repr(failed.value.partial.attrs) + failed.value.partial.to_string())
        with pytest.raises(TypeError) as pickled:
            pickle.dumps(r)
        seen.append(_error_text(pickled.value))
        # the command line, verbose, with the key in the environment; then a refused key
        table = tmp_path / "in.csv"
        df.to_csv(table, index=False)
        monkeypatch.setenv("DMXAPI_API_KEY", CANARY)
        monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
        assert cli.main(["-v", "rank", str(table), "--query", "more colds", "--cache-dir", str(cache_dir)]) == 0
        monkeypatch.setenv("DMXAPI_BASE_URL", refusing.url)
        assert cli.main(["-v", "rank", str(table), "--query", "colds", "--no-cache"]) == 1
        assert server.requests and all(req.headers.get("Authorization") == CANARY for req in server.requests)
    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    assert "rerank [dmxapi]" in captured.err  # the progress bar did draw
    assert "DEBUG" in caplog.text or caplog.records  # DEBUG logging was on
    for text in seen:
        assert not _leaks(text), text[:2000]
    files = [os.path.join(d, f) for d, _, fs in os.walk(cache_dir) for f in fs]
    assert files
    for path in files:
        with open(path, "rb") as fh:
            assert CANARY.encode() not in fh.read(), path
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700


def test_cache_values_are_score_records_never_pickle_or_json(tmp_path):
    cache_dir = tmp_path / "c"
    with LoopbackRerankServer(api_key=CANARY) as server:
        r = rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url=server.url)
        out = rerankpd.rerank(
            pd.DataFrame({"text": ["a b", "c d", "预防感冒"]}), "q", reranker=r, cache=cache_dir, progress=False
        )
    con = sqlite3.connect(cache_dir / "store-v4" / "cache.db")
    try:
        rows = con.execute(
            "SELECT key, typeof(key), raw, mode, filename, value, typeof(value) FROM Cache ORDER BY length(key)"
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == 1  # the one request's block
    for key, key_type, raw, mode, filename, _, value_type in rows:
        assert key_type == "blob" and raw == 1 and key[:1] == b"S"  # digests, never text
        assert mode == 1 and filename is None and value_type == "blob"  # raw bytes inline: no pickle, no file
    block = rows[0][5]
    assert len(block) == 3 * 24  # three text digests, then three float64 scores
    assert sorted(np.frombuffer(block[48:], "<f8").tolist()) == sorted(out["rerank_score"].tolist())
    for text in ["a b", "c d", "预防感冒"]:
        assert text.encode() not in block and text.encode() not in rows[0][0]
    assert os.listdir(cache_dir) == ["store-v4"]
    assert sorted(os.listdir(cache_dir / "store-v4")) == ["cache.db"]  # no value files beside the table


def test_plain_http_to_a_remote_host_warns_but_not_to_loopback_or_https():
    with pytest.warns(UserWarning, match="unencrypted"):
        rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url="http://rerank.example.com/v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url="https://rerank.example.com/v1")
        rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url="http://127.0.0.1:8080/v1")
        rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url="http://localhost:8080/v1")
        rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url="http://[::1]:8080/v1")


class _Redirector(BaseHTTPRequestHandler):
    target = ""
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(dict(self.headers.items()))
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize("target_host", ["localhost", "127.0.0.1"])
def test_redirect_never_carries_the_key_to_another_host(target_host):
    """A 307 to another host (or another port) is followed without the Authorization header."""
    with LoopbackRerankServer() as other:  # accepts any caller, records headers
        handler = type("R", (_Redirector,), {"target": f"http://{target_host}:{other.port}", "seen": []})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            r = rerankpd.get_reranker(
                "dmxapi", api_key=CANARY, base_url=f"http://127.0.0.1:{httpd.server_port}/v1", max_retries=0
            )
            scores = r.score("q", ["a", "b"])
        finally:
            httpd.shutdown()
            httpd.server_close()
        assert len(scores) == 2
        assert handler.seen[0].get("Authorization") == CANARY  # the configured host got the key
        assert len(other.requests) == 1
        assert "Authorization" not in other.requests[0].headers  # the other one did not
        assert all(CANARY not in v for v in other.requests[0].headers.values())


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command (Debian package openssl) is needed to make a test certificate"
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_is_verified(self_signed):
    cert, key = self_signed
    with LoopbackRerankServer(api_key=CANARY) as plain:
        handler = plain._httpd.RequestHandlerClass
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"https://127.0.0.1:{httpd.server_port}/v1"
        try:
            r = rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url=url, max_retries=0, timeout=(2, 5))
            assert r.session().verify is True
            with pytest.raises(errors.APIConnectionError) as info:
                r.score("q", ["a"])
            assert "SSLError" in str(info.value)
            assert plain.requests == []  # nothing (and no key) was sent to the unverified server
            # The server itself works: trusting its certificate explicitly, the same request succeeds.
            body = {"model": "m", "query": "q", "documents": ["a"]}
            ok = requests.post(
                url + "/rerank", json=body, headers={"Authorization": CANARY}, verify=str(cert), timeout=5
            )
            assert ok.status_code == 200
        finally:
            httpd.shutdown()
            httpd.server_close()


def test_canary_key_never_appears_in_the_panel():
    df = pd.DataFrame({"text": ["cats purr", "dogs bark", "cats and dogs"]})
    shown: list[str] = []
    with LoopbackRerankServer(api_key=CANARY) as server, LoopbackRerankServer(api_key="sk-other") as refusing:
        for url in (server.url, refusing.url):
            r = rerankpd.get_reranker("dmxapi", api_key=CANARY, base_url=url, max_retries=0)
            panel = df.rerank.panel(query="cats", reranker=r, cache=False)
            panel.run_button.click()
            panel.wait(30)
            shown += [
                panel.status.value,
                panel.results.value,
                panel.progress_text.value,
                repr(panel),
                repr(panel.call_arguments()),
                repr(panel._repr_mimebundle_()),
            ]
            if panel.error is not None:
                shown.append(_error_text(panel.error))
    assert any("Failed" in text for text in shown)  # the refused run did fail, visibly
    for text in shown:
        assert not _leaks(text), text[:2000]


# ----------------------------------------------------------------------- the key echoed back, in every form
def _windows(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


ENCODINGS = {
    "verbatim": lambda s: s,
    "html-decimal": lambda s: "".join(f"&#{ord(c)};" for c in s),
    "html-hex": lambda s: "".join(f"&#x{ord(c):x};" for c in s),
    "json-unicode": lambda s: "".join(f"\\u{ord(c):04x}" for c in s),
    "json-unicode-upper": lambda s: "".join(f"\\u{ord(c):04X}" for c in s),
    "repr-doubled": lambda s: "".join(f"\\\\u{ord(c):04x}" for c in s),
    "url-encoded": lambda s: "".join(f"%{ord(c):02X}" for c in s),
    "url-encoded-lower": lambda s: "".join(f"%{ord(c):02x}" for c in s),
}


def _leaks_any_form(text: str, secret: str = CANARY) -> list[str]:
    """Every (encoding, 8-character piece of the key) found in ``text``."""
    return [(name, piece) for name, encode in ENCODINGS.items() for piece in _windows(secret) if encode(piece) in text]


ECHOES = {
    # a plain-text body cut at 300 characters inside the key: 17 of its 20 characters before the fix
    "cut-at-300": lambda k: ("x" * 283 + k + " was refused").encode(),
    "html-escaped": lambda k: f"<html><body>key {ENCODINGS['html-decimal'](k)} refused</body></html>".encode(),
    "json-escaped": lambda k: json.dumps({"message": "bad key " + ENCODINGS["json-unicode"](k)}).encode(),
    "url-encoded": lambda k: f"error=invalid&key={ENCODINGS['url-encoded'](k)}".encode(),
    "repr-doubled": lambda k: f"ValueError('key {ENCODINGS['repr-doubled'](k)}')".encode(),
    "server-cut-prefix": lambda k: f"invalid key '{k[:12]}...'".encode(),
}


@pytest.mark.parametrize("echo", list(ECHOES), ids=list(ECHOES))
def test_a_key_echoed_back_in_any_form_is_scrubbed_everywhere(echo, tmp_path, caplog, capsys, monkeypatch):
    """The exception and its traceback, the retry log line, a coerce run's rerank_error column and its CSV,
    and the CLI's error line: none holds 8 consecutive characters of the key, in any echoed form."""
    caplog.set_level(logging.DEBUG)
    body = ECHOES[echo](CANARY)
    seen: list[str] = []
    df = pd.DataFrame({"text": ["cold hands", "warm tea"]})
    with LoopbackRerankServer(api_key=CANARY) as server:
        r = rerankpd.get_reranker(
            "dmxapi", api_key=CANARY, base_url=server.url, max_retries=1, backoff_base=0.001, backoff_cap=0.002
        )
        # a retried 500 (the retry log line), then the same body as a 400: the exception and its traceback
        server.fail_next("raw", status=500, body=body)
        server.fail_next("raw", status=400, body=body)
        with pytest.raises(errors.BadRequestError) as info:
            r.score("q", ["a"])
        seen.append(_error_text(info.value))
        assert "answered HTTP 400" in str(info.value)
        # errors="coerce": the message lands in the rerank_error column, and in a CSV written from it
        server.fail_next("raw", count=4, status=500, body=body)
        out = rerankpd.rerank(df, "colds", reranker=r, cache=False, progress=False, errors="coerce")
        assert out["rerank_error"].notna().all()
        csv = tmp_path / "out.csv"
        out.to_csv(csv)
        seen += [out.to_string(), csv.read_text(encoding="utf-8"), repr(out.attrs)]
        # the command line's one-line error
        table = tmp_path / "in.csv"
        df.to_csv(table, index=False)
        monkeypatch.setenv("DMXAPI_API_KEY", CANARY)
        monkeypatch.setenv("DMXAPI_BASE_URL", server.url)
        server.fail_next("raw", count=20, status=400, body=body)
        assert cli.main(["-v", "rank", str(table), "--query", "colds", "--no-cache"]) != 0
    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    assert "retry 1 of 1" in caplog.text  # the retry log line was written
    assert "answered HTTP" in captured.err  # the CLI did report the failure
    for text in seen:
        assert not _leaks_any_form(text), (_leaks_any_form(text), text[:3000])


def test_url_credentials_are_masked_in_repr_errors_and_logs(caplog):
    caplog.set_level(logging.DEBUG)
    password = "hunter2-very-secret"
    with LoopbackRerankServer(dialect="tei") as server:
        url = server.url.replace("http://", f"http://admin:{password}@")
        r = rerankpd.get_reranker("tei", base_url=url, max_retries=1, backoff_base=0.001, backoff_cap=0.002)
        assert r.score("q", ["a"])  # basic auth is sent...
        sent = server.requests[0].headers.get("Authorization", "")
        assert sent.startswith("Basic ")
        server.fail_next("raw", count=2, status=500, body=f"denied for admin:{password}".encode())
        with pytest.raises(errors.ServerError) as info:
            r.score("q", ["a"])
        shown = [
            repr(r),
            str(r),
            r.endpoint,
            repr(vars(r)),
            json.dumps(r.identity() or {}),
            _error_text(info.value),
            caplog.text,
        ]
    assert "***:***@" in repr(r)
    for text in shown:
        assert password not in text and "admin:" not in text, text[:2000]
    with pytest.raises(errors.ConfigurationError) as bad:
        rerankpd.get_reranker("tei", base_url=f"ftp://admin:{password}@example.com")
    assert password not in str(bad.value)


def test_scrubber_masks_runs_of_eight_or_more_and_short_secrets_whole_but_ignores_tiny_ones():
    from rerankpd.redact import MIN_RUN, scrub

    secret = "sk-AbCdEfGhIjKlMnOp"
    assert MIN_RUN == 8
    assert scrub(f"key {secret} end", [secret]) == "key *** end"
    assert scrub(f"saw {secret[3:11]}!", [secret]) == "saw ***!"  # any run of eight
    assert scrub(f"saw {secret[3:10]}!", [secret]) == f"saw {secret[3:10]}!"  # seven are ordinary text
    assert scrub("tail ...IjKlMnOp", [secret]) == "tail ...***"
    assert scrub("a pin of 4821 and 48", ["4821"]) == "a pin of *** and 48"  # 4 to 7 characters: whole only
    assert scrub("abc abcd", ["abc"]) == "abc abcd"  # under 4: would mask words
    assert scrub("x %73k-AbCdEfGh y", [secret]) == "x *** y"  # an echoed form counts too
    assert scrub("", [secret]) == "" and scrub("nothing here", [None, ""]) == "nothing here"


def test_the_model_is_part_of_the_cache_key(tmp_path):
    """Scores cached for one model are never served for another model of the same service."""
    df = pd.DataFrame({"text": ["cats purr", "dogs bark"]})
    with LoopbackRerankServer(api_key=API_KEY) as srv:
        make = functools.partial(rerankpd.get_reranker, "dmxapi", api_key=API_KEY, base_url=srv.url)
        a, b = make(model="model-a"), make(model="model-b")
        assert a.identity()["model"] == "model-a" and b.identity()["model"] == "model-b"
        df.rerank("cats", reranker=a, cache=tmp_path, progress=False)
        again_a = df.rerank("cats", reranker=a, cache=tmp_path, progress=False)
        other = df.rerank("cats", reranker=b, cache=tmp_path, progress=False)
        assert again_a.attrs["rerank"]["from_cache"] == 2 and again_a.attrs["rerank"]["sent"] == 0
        assert other.attrs["rerank"]["from_cache"] == 0 and other.attrs["rerank"]["sent"] == 2
        assert [r.body["model"] for r in srv.requests] == ["model-a", "model-b"]
