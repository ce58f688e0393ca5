"""The copy-to-Sent fixup itself: correlate a Sent copy with its recipients and fix it.

A copy is "server-made" when the Exim id in its top ``Received:`` header has a recipients entry
(from the filter's log) whose sender is the folder's owner. Then Bcc = envelope recipients not in
To or Cc; a ``Bcc:`` header is added if that is non-empty and the copy has none (a new file under
a new name: never in place), and the copy is marked \\Seen. A copy without a Received id is a
client's IMAP APPEND and is left alone. Either side may come first: a copy whose recipients are not
known yet is remembered in ``sent_pending``; recipients wait in ``sent_recipients``.
Used by the service (mailopsd/sent/service.py) and by ``mailopsd sent-fixup``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.errors import MailopsError, UnsafePathError
from mailopsd.core.logs import get_logger
from mailopsd.core.users import Account, mailbox_accounts
from mailopsd.maildir.folder import Folder, FolderMissing, Maildir, MessageRef
from mailopsd.maildir.names import split_info, valid_message_name
from mailopsd.maildir.rewrite import open_exact, rename_with_flags, replace_streaming
from mailopsd.sent.addresses import Address, bcc_addresses, parse_address_list
from mailopsd.sent.message import Header, HeaderError, bcc_field, is_submission, read_header
from mailopsd.sent.reclog import RecipientsLineError, parse_line
from mailopsd.sent.store import SentStore

# outcomes of handle()
FIXED, PENDING, IGNORED, ALREADY, GONE, UNSAFE, FAILED = (
    "fixed", "pending", "ignored", "already", "gone", "unsafe", "failed")


class SentFixer:
    """Fixes Sent copies of the configured accounts; one instance per thread (one DB conn)."""

    def __init__(self, config: Config, conn: sqlite3.Connection, *,
                 poll_log: Callable[[], Any] | None = None) -> None:
        self.cfg = config.sent
        self.mailboxes = config.mailboxes
        self.store = SentStore(conn)
        self.poll_log = poll_log  # reads the recipients log now (a copy's recipients unknown)
        self.log = get_logger("sent")
        self.accounts: dict[str, Account] = {}
        self.counts: Counter[str] = Counter()
        self.produced: set[str] = set()  # names our own fixes created (their events: skip)
        # a batch (scans): replaced originals to unlink in finish_batch, None = one by one
        self.deferred: list[MessageRef] | None = None
        self.cancel = threading.Event()  # set by the service's stop: scans end early

    # -- accounts ---------------------------------------------------------------------------
    def refresh_accounts(self, only: str | None = None) -> dict[str, Account]:
        """Read the accounts to look after afresh from passwd (``only``: just that user).

        Raises MailopsError if ``only`` is not an account mailopsd looks after.
        """
        m = self.mailboxes
        listed = self.cfg.users or m.users
        if only and listed and only not in listed:
            raise MailopsError(f"user {only!r} is not in sent.users / mailboxes.users")
        users = (only,) if only else listed
        found: dict[str, Account] = {}
        for name in users or (None,):
            try:
                for acct in mailbox_accounts((name,) if name else (), m.min_uid, m.max_uid,
                                             m.exclude):
                    found[acct.name] = acct
            except MailopsError as exc:
                if only:
                    raise
                self.log.warning("sent_user_unknown", user=name, error=str(exc))
        if only and only not in found:
            raise MailopsError(f"user {only!r} is excluded by [mailboxes] / [sent] settings")
        self.accounts = found
        return found

    def open_folder(self, account: Account) -> Folder:
        """The account's Sent folder, opened safely; raises FolderMissing or UnsafePathError."""
        with Maildir.open(account.home, self.mailboxes.maildir, account.uid) as md:
            return md.folder(self.cfg.folder)

    # -- recipients -------------------------------------------------------------------------
    def store_lines(self, lines: Iterable[str], now: float | None = None) -> list[str]:
        """Parse recipients-log lines and store them; returns the Exim ids that are new."""
        entries = []
        for line in lines:
            try:
                entry = parse_line(line)
            except RecipientsLineError as exc:
                self.log.warning("sent_recipients_line_bad", error=str(exc), line=line[:200])
                continue
            if entry is None:
                continue
            parsed = len(entry.recipients())
            if parsed != entry.count:
                self.log.warning("sent_recipients_count_mismatch", exim_id=entry.exim_id,
                                 logged=entry.count, parsed=parsed)
            entries.append(entry)
        return self.store.add_recipients(entries, time.time() if now is None else now)

    def fix_pending_for(self, exim_ids: Iterable[str]) -> None:
        """Fix the copies that were waiting for these ids' recipients."""
        for exim_id in exim_ids:
            for p in self.store.pending(exim_id=exim_id):
                acct = self.accounts.get(p.user)
                if acct is None:
                    self.store.drop_pending(p.user, p.base)
                    continue
                self.handle(acct, p.sub, p.name)

    # -- one copy ---------------------------------------------------------------------------
    def handle(self, account: Account, sub: str, name: str, folder: Folder | None = None) -> str:
        """Examine (and fix, if it is a server-made copy) ``<Sent>/<sub>/<name>``; an outcome.

        Never raises for bad input or I/O trouble: those become an event and an outcome.
        """
        if sub not in ("new", "cur") or not valid_message_name(name):
            return IGNORED
        own = folder is None
        try:
            if folder is None:
                folder = self.open_folder(account)
            outcome = self._handle(account, folder, sub, name)
        except FolderMissing:
            outcome = GONE
        except UnsafePathError as exc:
            self.log.warning("sent_copy_unsafe", user=account.name, file=f"{sub}/{name}",
                             error=str(exc))
            outcome = UNSAFE
        except (OSError, HeaderError, MailopsError, sqlite3.Error) as exc:
            self.log.error("sent_fix_failed", user=account.name, file=f"{sub}/{name}",
                           error=str(exc))
            outcome = FAILED
        finally:
            if own and folder is not None:
                folder.close()
        self.counts[outcome] += 1
        return outcome

    def _find(self, folder: Folder, sub: str, name: str) -> MessageRef | str:
        """The message seen as sub/name, or under its base name if Dovecot moved it."""
        found = folder.lookup(sub, name)
        if found != "vanished":
            return found
        base = split_info(name)[0]
        for s, n in (("cur", base + ":2,"), ("new", base)):
            found = folder.lookup(s, n)
            if isinstance(found, MessageRef):
                return found
        for n in folder.names("cur"):
            if split_info(n)[0] == base:
                return folder.lookup("cur", n)
        return "vanished"

    def _handle(self, account: Account, folder: Folder, sub: str, name: str) -> str:
        user = account.name
        base = split_info(name)[0]
        ref = self._find(folder, sub, name)
        if isinstance(ref, str):
            if ref == "vanished":
                self.store.drop_pending(user, base)
                return GONE
            raise UnsafePathError(f"{sub}/{name}: {ref.replace('_', ' ')}")
        fd, st = open_exact(folder, ref, max_size=self.cfg.max_message_bytes)
        try:
            header = read_header(fd, self.cfg.max_header_bytes)
            exim_id, protocol = header.received_id()
            if exim_id is None:
                return IGNORED  # no Exim id: a client's APPEND, not a server-made copy
            rec = self.store.recipients(exim_id)
            if rec is None and self.poll_log is not None:
                self.poll_log()  # the filter logs before it saves: the line is probably there
                rec = self.store.recipients(exim_id)
            if rec is None:
                if not is_submission(protocol):
                    return IGNORED  # e.g. a received message a client moved into Sent
                self.store.add_pending(user, base, ref.subdir, ref.name, exim_id, time.time())
                return PENDING
            if rec.fixed is not None:
                self.store.drop_pending(user, base)
                return ALREADY  # our own output, or a second copy of a fixed message
            sender = parse_address_list(rec.sender)
            if self.cfg.require_sender_match and (
                    not sender or sender[0].local.lower() != user.lower()):
                self.store.drop_pending(user, base)
                self.log.info("sent_copy_not_senders", user=user, exim_id=exim_id,
                              sender=rec.sender)
                return IGNORED
            bcc = self._bcc(account, exim_id, header, parse_address_list(rec.recipients))
            where = self._apply(folder, ref, fd, st, header, bcc)
        finally:
            os.close(fd)
        if where is None:
            self.store.drop_pending(user, base)
            return GONE
        self.store.mark_fixed(exim_id, user, time.time())
        self.produced.add(where[1])
        self.log.info("sent_fixed", user=user, exim_id=exim_id, bcc_count=len(bcc),
                      file=f"{where[0]}/{where[1]}")
        return FIXED

    def _bcc(self, account: Account, exim_id: str, header: Header,
             recipients: list[Address]) -> list[Address]:
        """The Bcc addresses to add (empty if the copy already has a Bcc: header)."""
        if header.has("bcc"):
            return []
        out = []
        for addr in bcc_addresses(recipients, header.visible_recipients()):
            try:
                addr.render()
            except ValueError:
                self.log.warning("sent_bcc_address_skipped", user=account.name,
                                 exim_id=exim_id, reason="control character in address")
                continue
            out.append(addr)
        return out

    def _apply(self, folder: Folder, ref: MessageRef, fd: int, st: os.stat_result,
               header: Header, bcc: list[Address]) -> tuple[str, str] | None:
        """Write the fixed copy (or just rename it for \\Seen); returns (subdir, name) of the
        result, or None if the copy vanished meanwhile."""
        flags = "S" if self.cfg.mark_read else ""
        if bcc:
            head = header.raw if header.raw.endswith(b"\n") else header.raw + header.newline
            head += bcc_field(bcc, header.newline)
            name = replace_streaming(folder, ref, fd, st, head, header.body_offset,
                                     add_flags=flags, defer=self.deferred)
        elif flags:
            name = rename_with_flags(folder, ref, flags, sync=self.deferred is None)
        else:
            return (ref.subdir, ref.name)
        return None if name is None else ("cur", name)
