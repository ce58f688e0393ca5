"""TLS probes against hostile or broken servers end in time with a clear error, never hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mailopsd.health.model import Samples
from mailopsd.health.tls import Endpoint, ProbeError, check_endpoint, served_certificate


def serve(behaviour: str) -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def run() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    if behaviour == "chatty":
                        while not stop.is_set():  # a multi-line greeting that never ends
                            conn.sendall(b"220-still greeting\r\n")
                            stop.wait(0.01)
                    elif behaviour == "garbage":
                        conn.sendall(b"\x00\xff not smtp at all\r\n")
                        stop.wait(2)
                    elif behaviour == "silent":
                        stop.wait(3)
                except OSError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield port
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.fixture(params=["chatty", "garbage", "silent"])
def hostile(request: pytest.FixtureRequest) -> Iterator[int]:
    yield from serve(request.param)


def test_hostile_smtp_server_gives_probe_error_within_the_timeout(hostile: int) -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError):
        served_certificate(f"smtp://127.0.0.1:{hostile}", timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_closed_port_is_left_out_for_a_default_endpoint_but_crit_when_configured() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        url = f"imaps://127.0.0.1:{port}"
        assert check_endpoint(Endpoint(url, "/nonexistent", implicit_default=True), 1.0,
                              14 * 86400, Samples()) is None
        check = check_endpoint(Endpoint(url, "/nonexistent"), 1.0, 14 * 86400, Samples())
        assert check is not None and check.status == "CRIT" and check.event == "tls_probe_failed"
