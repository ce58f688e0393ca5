"""post-email against a real HTTP server on 127.0.0.1: status codes to exit codes, the form
encoding, the time bound, and the command with and without a configuration file.

``RecordingServer`` is reused by tests/integration/test_post_email_exim.py.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from mailopsd.forward.post_email import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, post_email

MAILOPSD = str(Path(sys.executable).with_name("mailopsd"))
MESSAGE = ("From: Alice <alice@example.test>\nTo: Bob <bob@site.example>\nSubject: Hi\n"
           "Message-ID: <m1@example.test>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n"
           "Content-Type: text/plain; charset=utf-8\n\nGrüße & more=stuff\n").encode()


@dataclass
class Post:
    """One request the server received."""

    path: str
    status: int
    content_type: str
    fields: dict[str, str]


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1:<free port> that records every POST.

    ``statuses`` are answered in order, the last one repeats; ``set_statuses`` changes them.
    ``delay`` seconds pass before each answer (interrupted by stop()).
    """

    def __init__(self, statuses: Sequence[int] = (200,), delay: float = 0.0) -> None:
        self.posts: list[Post] = []
        self.delay = delay
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("ascii")
                fields = {k: v[0] for k, v in urllib.parse.parse_qs(
                    body, keep_blank_values=True, encoding="utf-8", errors="strict").items()}
                status = outer._next_status()
                with outer._lock:
                    outer.posts.append(Post(self.path, status,
                                            self.headers.get("Content-Type", ""), fields))
                if outer.delay:
                    outer._stopping.wait(outer.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    def _next_status(self) -> int:
        with self._lock:
            return self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]

    def set_statuses(self, statuses: Sequence[int]) -> None:
        with self._lock:
            self._statuses = list(statuses)

    def url(self, path: str = "/post") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self) -> list[Post]:
        """The posts answered with 2xx."""
        with self._lock:
            return [p for p in self.posts if 200 <= p.status < 300]

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


def post(url: str, data: bytes = MESSAGE, timeout: float = 5.0, max_size: int = 1 << 20) -> int:
    import io

    return post_email(url, io.BytesIO(data), timeout=timeout, max_size=max_size)


def test_success_posts_utf8_form_fields(server: RecordingServer) -> None:
    assert post(server.url("/in/{to_domain}?key=1")) == EX_OK
    [p] = server.posts
    assert p.path == "/in/site.example?key=1"
    assert p.content_type == "application/x-www-form-urlencoded"
    assert p.fields == {"id": "m1@example.test", "date": "Tue, 24 Nov 2026 10:00:00 +0000",
                        "from": "Alice <alice@example.test>", "to": "Bob <bob@site.example>",
                        "subject": "Hi", "body": "Grüße & more=stuff\n"}


@pytest.mark.parametrize(("status", "code"), [
    (200, EX_OK), (201, EX_OK), (204, EX_OK),
    (500, EX_TEMPFAIL), (502, EX_TEMPFAIL), (503, EX_TEMPFAIL), (408, EX_TEMPFAIL),
    (429, EX_TEMPFAIL),
    (400, EX_UNAVAILABLE), (403, EX_UNAVAILABLE), (404, EX_UNAVAILABLE),
    (413, EX_UNAVAILABLE), (301, EX_UNAVAILABLE), (302, EX_UNAVAILABLE),
    (307, EX_UNAVAILABLE),
])
def test_http_status_maps_to_exit_code(server: RecordingServer, status: int, code: int) -> None:
    server.set_statuses([status])
    assert post(server.url()) == code
    assert len(server.posts) == 1  # a redirect is never followed (it would become a GET)


def test_connection_refused_is_tempfail() -> None:
    with RecordingServer() as srv:
        url = srv.url()
    assert post(url) == EX_TEMPFAIL


def test_slow_server_is_cut_off_by_the_timeout() -> None:
    with RecordingServer(delay=10.0) as srv:
        started = time.monotonic()
        assert post(srv.url(), timeout=0.5) == EX_TEMPFAIL
        assert time.monotonic() - started < 3.0


def test_oversize_message_is_refused_before_posting(server: RecordingServer) -> None:
    assert post(server.url(), data=MESSAGE + b"x" * 5000, max_size=4096) == EX_DATAERR
    assert server.posts == []


def test_missing_to_domain_is_a_permanent_error(server: RecordingServer) -> None:
    assert post(server.url("/{to_domain}"), data=b"Subject: no To\n\nx\n") == EX_DATAERR
    assert server.posts == []


def run_cli(args: Sequence[str], env_extra: dict[str, str] | None = None,
            data: bytes = MESSAGE) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **(env_extra or {})}
    return subprocess.run([MAILOPSD, *args], input=data, capture_output=True, env=env,
                          timeout=30, check=False)


@pytest.mark.skipif(os.path.exists("/etc/mailopsd/mailopsd.toml"),
                    reason="this host has a real default config")
def test_cli_works_without_any_config_file(server: RecordingServer) -> None:
    res = run_cli(["post-email", server.url("/{to_domain}")])
    assert res.returncode == EX_OK, res.stderr
    assert server.accepted()[0].path == "/site.example"
    assert b'"event": "post_email_sent"' in res.stderr and b'"config": "defaults"' in res.stderr


def test_cli_applies_the_config_file(server: RecordingServer, tmp_path: Path) -> None:
    cfg = tmp_path / "mailopsd.toml"
    cfg.write_text('[logging]\ntarget = "json"\n[post-email]\nmax_message_size = 100\n'
                   'to_domains = ["other.example"]\n')
    res = run_cli(["--config", str(cfg), "post-email", server.url()])
    assert res.returncode == EX_DATAERR
    assert b"over the post-email limit of 100 bytes" in res.stderr
    res = run_cli(["post-email", "--max-size", "100000", server.url("/{to_domain}")],
                  env_extra={"MAILOPSD_CONFIG": str(cfg)})
    assert res.returncode == EX_DATAERR  # To is site.example, only other.example allowed
    assert server.posts == []


def test_cli_bad_config_defers_the_message(server: RecordingServer, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[post-email]\ntimeout = -1\nno_such_key = 1\n")
    res = run_cli(["--config", str(cfg), "post-email", server.url()])
    assert res.returncode == EX_TEMPFAIL
    assert b"post-email.no_such_key" in res.stderr and b"Exim will retry" in res.stderr
    assert server.posts == []
