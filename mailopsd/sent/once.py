"""``mailopsd sent-fixup``: process the copy-to-Sent backlog once, without the daemon."""

from __future__ import annotations

from collections import Counter

from mailopsd.core.config.schema import Config
from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower
from mailopsd.sent.fixer import SentFixer
from mailopsd.sent.scan import expire, fixup_all
from mailopsd.sent.service import MAX_LINE, follower_name, lock_for


def run_once(config: Config, state: StateDB, user: str | None = None) -> Counter[str]:
    """Read the recipients log to its end, then fix every waiting copy (of ``user`` only, if
    given); returns outcome counts.

    Raises JobBusyError if the daemon's sent-fixer or another sent-fixup holds the lock,
    MailopsError if ``user`` is not an account mailopsd looks after.
    """
    lock = lock_for(config)
    lock.acquire()
    conn = state.connect()
    try:
        fixer = SentFixer(config, conn)
        fixer.refresh_accounts(user)

        def on_lines(lines: list[str]) -> None:
            fixer.store_lines(lines)  # a full scan follows: the new ids need no notice

        follower = LogFollower(follower_name(config), config.sent.recipients_log, state,
                               on_lines, max_line=MAX_LINE)
        fixer.poll_log = follower.poll_once
        try:
            while follower.poll_once():
                pass
            counts = fixup_all(fixer)
            # copies of other users may still wait: only a full run judges what is overdue
            if user is None:
                expire(fixer)
        finally:
            follower.stop(5.0)
        counts["pending_total"] = len(fixer.store.pending(user=user) if user else
                                      fixer.store.pending())
        return counts
    finally:
        conn.close()
        lock.release()
