"""Failure mail, like cron's MAILTO: a failed job or a degraded service mails ``notify.mail_to``.

At most one mail per key (a job id, or ``service:<id>``) per ``notify.interval``, counted in the
state database (table ``notify_sent``) so the daemon, a ``run-job`` from a shell and a catch-up run
share one budget. Mails that the interval holds back are counted and mentioned in the next one.
The mail goes through ``[binaries] sendmail`` (``sendmail -oi -t``: recipients from the headers);
a mail that cannot be sent is an event (``notify_failed``), never an error of the job.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from mailopsd.core.config.schema import Config
from mailopsd.core.errors import MailopsError
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB

SEND_TIMEOUT = 60.0


def claim(state: StateDB, key: str, interval: float, now: float | None = None) -> int | None:
    """Take the right to mail about ``key`` now; returns how many mails were held back since
    the last one, or None while the interval since the last mail has not passed.

    Raises StateError if the database cannot be written.
    """
    now = time.time() if now is None else now
    with state.transaction() as c:
        row = c.execute("SELECT sent_at, suppressed FROM notify_sent WHERE key = ?",
                        (key,)).fetchone()
        if row is not None and now - row["sent_at"] < interval:
            c.execute("UPDATE notify_sent SET suppressed = suppressed + 1 WHERE key = ?", (key,))
            return None
        c.execute("INSERT INTO notify_sent (key, sent_at, suppressed) VALUES (?, ?, 0) "
                  "ON CONFLICT(key) DO UPDATE SET sent_at = excluded.sent_at, suppressed = 0",
                  (key, now))
        return int(row["suppressed"]) if row is not None else 0


def build_message(config: Config, subject: str, facts: Sequence[tuple[str, str]],
                  lines: Sequence[str], held_back: int) -> EmailMessage:
    """The mail: short facts, then the last log lines; headers safe for ``sendmail -t``."""
    host = socket.gethostname()
    msg = EmailMessage()
    # no From: sendmail fills in the calling user (root), as for cron's mails
    msg["To"] = ", ".join(config.notify.mail_to)
    msg["Subject"] = f"mailopsd on {host}: {subject}"[:200].replace("\n", " ")
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=host if "." in host else None)
    msg["Auto-Submitted"] = "auto-generated"
    body = [f"{k}: {v}" for k, v in facts]
    if held_back:
        body.append(f"(mails held back since the last one: {held_back}; notify.interval is "
                    f"{int(config.notify.interval)} s)")
    if lines:
        body += ["", "Last log lines:", *lines]
    body += ["", f"More: journalctl -u mailopsd --since '{_ago(3600)}'",
             "Sent by mailopsd because notify.mail_to is set."]
    msg.set_content("\n".join(body) + "\n")
    return msg


def _ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds).strftime("%Y-%m-%d %H:%M:%S")


def send_failure_mail(config: Config, state: StateDB, key: str, subject: str,
                      facts: Sequence[tuple[str, str]], lines: Sequence[str] = ()) -> bool:
    """Mail about ``key`` if notify.mail_to is set and its interval allows; returns whether a
    mail was handed to sendmail. Never raises: problems become events."""
    from mailopsd.core.process import run

    log = get_logger("notify")
    if not config.notify.mail_to:
        return False
    try:
        held_back = claim(state, key, float(config.notify.interval))
    except MailopsError as exc:
        log.error("notify_failed", key=key, error=str(exc))
        return False
    if held_back is None:
        log.info("notify_held_back", key=key, interval=int(config.notify.interval))
        return False
    msg = build_message(config, subject, facts, lines, held_back)
    argv = (config.binaries.sendmail, "-oi", "-t")
    try:
        run(argv, timeout=SEND_TIMEOUT, input=msg.as_bytes())
    except MailopsError as exc:
        log.error("notify_failed", key=key, to=list(config.notify.mail_to), error=str(exc))
        return False
    log.info("notify_sent", key=key, to=list(config.notify.mail_to), subject=str(msg["Subject"]))
    return True
