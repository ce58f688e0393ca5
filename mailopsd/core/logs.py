"""Logging: structlog events rendered to journald, a terminal, or JSON lines.

Every event is a snake_case name plus fields. Under systemd (JOURNAL_STREAM set) or with
``logging.target = "journald"`` each event becomes a native journal entry whose fields an admin
can filter on: PRIORITY, SYSLOG_IDENTIFIER, MESSAGE, EVENT, JOB and every event field upper-cased
(``journalctl -u mailopsd JOB=learn-spam``). Stdlib logging (APScheduler, watchdog) is routed
through the same pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, TextIO

import structlog

from mailopsd.core.journald import JournalSender, field_name

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
PRIORITY = {"debug": "7", "info": "6", "warning": "4", "error": "3", "critical": "2",
            "exception": "3"}
_SKIP_FIELDS = {"event", "level", "timestamp", "logger"}
_state = threading.local()


def _message(event: MutableMapping[str, Any]) -> str:
    """A one-line human message: the event name followed by key=value pairs."""
    if event.get("event") == "library_message":
        return str(event.get("message", ""))
    parts = [str(event.get("event", ""))]
    for key, value in event.items():
        if key in _SKIP_FIELDS or key == "exception":
            continue
        parts.append(f"{key}={_text(value)}")
    text = " ".join(parts)
    if event.get("exception"):
        text += "\n" + str(event["exception"])
    return text


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


class JournaldRenderer:
    """Final processor: sends the event to journald and returns the fallback JSON text.

    If journald cannot be reached the event is written to stderr as a JSON line instead,
    so nothing is lost silently.
    """

    def __init__(self, socket_path: str, identifier: str) -> None:
        self.sender = JournalSender(socket_path)
        self.identifier = identifier

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        level = str(event.get("level", method))
        fields = {"MESSAGE": _message(event), "PRIORITY": PRIORITY.get(level, "6"),
                  "SYSLOG_IDENTIFIER": self.identifier, "EVENT": str(event.get("event", ""))}
        if event.get("logger"):
            fields["LOGGER"] = str(event["logger"])
        for key, value in event.items():
            if key in _SKIP_FIELDS:
                continue
            name = field_name(key)
            if name not in fields:
                fields[name] = _text(value)
        try:
            self.sender.send(fields)
            return ""
        except OSError:
            return json.dumps(dict(event), default=str)


class _Printer:
    """The structlog 'logger': writes whatever the renderer produced, if anything."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        if not message:
            return
        with self._lock:
            try:
                self.stream.write(message + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def choose_target(target: str, environ: dict[str, str] | None = None,
                  stream: TextIO | None = None) -> str:
    """Resolve "auto": journald under systemd, console on a terminal, else JSON lines."""
    if target != "auto":
        return target
    env = os.environ if environ is None else environ
    if env.get("JOURNAL_STREAM"):
        return "journald"
    s = stream or sys.stderr
    return "console" if s.isatty() else "json"


def configure_from(cfg: Any, level: str | None = None) -> str:
    """Set up logging from the ``[logging]`` table; ``level`` (``--log-level``) overrides it."""
    lg = cfg.logging
    return configure(lg.target, level or lg.level, lg.journal_socket, lg.syslog_identifier)


def configure(target: str = "auto", level: str = "info",
              journal_socket: str = "/run/systemd/journal/socket",
              identifier: str = "mailopsd", stream: TextIO | None = None) -> str:
    """Set up structlog and the stdlib bridge; returns the target actually used."""
    out = stream or sys.stderr
    chosen = choose_target(target, stream=out)
    renderer: Any
    if chosen == "journald":
        renderer = JournaldRenderer(journal_socket, identifier)
    elif chosen == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(default=str)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _timestamp,  # ISO 8601 local time WITH its offset (structlog's "iso" has none)
        structlog.processors.format_exc_info,
        _capture,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *_a: _Printer(out),
        cache_logger_on_first_use=False,
    )
    _bridge_stdlib(level)
    _state.configured = True
    return chosen


class _StructlogHandler(logging.Handler):
    """Routes stdlib records (APScheduler, watchdog) into the structlog pipeline."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger().bind(logger=record.name)
            method = record.levelname.lower()
            fields: dict[str, Any] = {"message": record.getMessage()}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            getattr(log, method if method in LEVELS else "info")("library_message", **fields)
        except Exception:  # a logging failure must never take the daemon down
            self.handleError(record)


def _bridge_stdlib(level: str) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _StructlogHandler):
            root.removeHandler(h)
    root.addHandler(_StructlogHandler())
    root.setLevel(LEVELS[level])
    # APScheduler narrates every run at INFO; our own job events say more, so keep it quieter.
    noisy = logging.WARNING if level != "debug" else logging.DEBUG
    for name in ("apscheduler", "watchdog"):
        logging.getLogger(name).setLevel(noisy)


def get_logger(name: str = "mailopsd") -> Any:
    """A structlog logger bound with the component name."""
    return structlog.get_logger().bind(logger=name)


def bind_job(job: str) -> None:
    """Attach JOB=<id> to every event logged by this thread until unbind_job()."""
    structlog.contextvars.bind_contextvars(job=job)


def unbind_job() -> None:
    """Remove the JOB binding from this thread's events."""
    structlog.contextvars.unbind_contextvars("job")


# -- the last events of a job run, quoted in its failure mail (mailopsd.daemon.notify) ---------
_captures: dict[str, deque[str]] = {}


def capture_job_events(job: str, keep: int = 20) -> deque[str]:
    """Keep the last ``keep`` events carrying JOB=<job> (as text) until end_capture(job)."""
    buf: deque[str] = deque(maxlen=keep)
    _captures[job] = buf
    return buf


def end_capture(job: str) -> None:
    """Stop keeping events of ``job``."""
    _captures.pop(job, None)


def _timestamp(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    event["timestamp"] = datetime.now().astimezone().isoformat(timespec="microseconds")
    return event


def _capture(_logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    if _captures:
        buf = _captures.get(str(event.get("job", "")))
        if buf is not None:
            buf.append(f"{event.get('timestamp', '')} {event.get('level', method)} "
                       f"{_message(event)}"[:2000])
    return event
