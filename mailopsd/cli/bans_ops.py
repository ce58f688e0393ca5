"""What ``mailopsd bans`` does to the state database and the kernel, and the events it sends.

Order, under the bans lock (mailopsd.blocker.banlock) shared with the daemon: the state database
first, then the kernel. A running daemon reads the database's change records under the same lock
before its kernel check, so it never puts back an address the admin removed or flushed, and a
restart restores exactly what the database holds.

Events: ``ip_banned``, ``ip_unbanned`` and ``bans_flushed`` go to ``logging.journal_socket``
whenever that socket exists, whatever ``logging.target`` says, with ``IP=`` (one field per
address), ``EVENT=`` and ``SOURCE=cli`` (``journalctl SOURCE=cli``, ``journalctl IP=192.0.2.7``);
they also go to the configured target when that is not journald.
"""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any

MAX_IP_FIELDS = 1000  # a flush of more names the first ones and counts the rest


def iso(ts: float | None) -> str | None:
    """ISO 8601 local time with its offset (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def printable(text: str) -> str:
    """A log line safe for a terminal: control characters (escape sequences) shown as \\xNN."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def who() -> str:
    """The admin behind this command: the sudo caller, else the login of the uid."""
    user = os.environ.get("SUDO_USER")
    if user:
        return user
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def daemon_pid(cfg: Any) -> int | None:
    """The running daemon's pid, or None."""
    from mailopsd.core.locks import FileLock

    lock = FileLock(os.path.join(cfg.daemon.run_dir, "mailopsd.pid"))
    return lock.holder() if lock.held_elsewhere() else None


def ban_json(ban: Any, now: float | None = None) -> dict[str, Any]:
    """A Ban (or BanRecord) as JSON: every timestamp ISO 8601 with its offset."""
    out = dict(ban.as_dict()) if hasattr(ban, "as_dict") else dict(vars(ban))
    for key in ("first_seen", "last_seen", "banned_at", "expires", "lifted_at"):
        if key in out:
            out[key] = iso(out[key])
    if "evidence" in out:
        out["evidence"] = list(out["evidence"])
    return out


def journal_event(cfg: Any, event: str, ips: Sequence[str], priority: str = "5",
                  **fields: Any) -> bool:
    """Send one entry to ``logging.journal_socket`` if it exists; returns whether it was sent."""
    from mailopsd.core.journald import encode, field_name
    from mailopsd.core.logs import _text

    path = cfg.logging.journal_socket
    if not os.path.exists(path):
        return False
    text = " ".join([event, *(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)])
    shown = list(ips[:MAX_IP_FIELDS])
    head: dict[str, str] = {"MESSAGE": f"{event} ip={','.join(shown[:20])}"
                            + (f" (+{len(ips) - 20})" if len(ips) > 20 else "") + " " + text,
                            "PRIORITY": priority, "EVENT": event, "SOURCE": "cli",
                            "SYSLOG_IDENTIFIER": cfg.logging.syslog_identifier,
                            "LOGGER": "bans"}
    for key, value in fields.items():
        if value is not None:
            head.setdefault(field_name(key), _text(value))
    if len(ips) > len(shown):
        head["IPS_NOT_LISTED"] = str(len(ips) - len(shown))
    data = encode(head) + b"".join(encode({"IP": ip}) for ip in shown)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(data, path)
    except OSError:
        return False
    return True


def emit(cfg: Any, event: str, ips: Sequence[str], **fields: Any) -> None:
    """The event through the configured target (unless that is journald) and the journal."""
    from mailopsd.core.logs import choose_target, get_logger

    sent = journal_event(cfg, event, ips, **fields)
    if choose_target(cfg.logging.target) != "journald" or not sent:
        extra = {"ip": ips[0]} if len(ips) == 1 else {"ips": list(ips[:MAX_IP_FIELDS])}
        get_logger("bans").info(event, **extra, source="cli", **fields)
