"""SmtpSink: an aiosmtpd SMTP server on loopback standing in for "the internet".

It records every message a private Exim relays to it (``PrivateExim(sink_port=sink.port)``)
and can be told to answer the next messages with a temporary failure to exercise retries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.common import free_port, wait_until


@dataclass(frozen=True)
class SinkMessage:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.sink._lock:
            if self.sink._failures:
                self.sink._failures -= 1
                self.sink.rejected += 1
                return self.sink._failure_reply
            content = envelope.original_content or envelope.content or b""
            if isinstance(content, str):
                content = content.encode("utf-8", "surrogateescape")
            self.sink.messages.append(SinkMessage(
                envelope.mail_from, tuple(envelope.rcpt_tos), bytes(content),
                str(session.peer[0])))
        return "250 2.0.0 OK queued by test sink"


class SmtpSink:
    """Records messages; ``with SmtpSink() as sink: ... sink.wait_for(1)``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.messages: list[SinkMessage] = []
        self.rejected = 0
        self._lock = threading.Lock()
        self._failures = 0
        self._failure_reply = "451 4.3.0 test sink: try again later"
        self._controller: Controller | None = None

    def fail_next(self, count: int = 1,
                  reply: str = "451 4.3.0 test sink: try again later") -> None:
        """Answer the next ``count`` DATA commands with ``reply`` (4xx = retry, 5xx = bounce)."""
        with self._lock:
            self._failures = count
            self._failure_reply = reply

    def start(self) -> SmtpSink:
        """Start serving (aiosmtpd checks it accepts connections before returning)."""
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                      ready_timeout=10, decode_data=False)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server thread."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[SinkMessage]:
        """Wait until at least ``count`` messages arrived; return a copy of all of them.

        Raises TimeoutError.
        """
        def enough() -> list[SinkMessage] | None:
            with self._lock:
                return list(self.messages) if len(self.messages) >= count else None
        return wait_until(enough, timeout, what=f"{count} message(s) at the SMTP sink")
