"""Scans of whole Sent folders (start-up, periodic, ``mailopsd sent-fixup``) and expiry."""

from __future__ import annotations

import os
import time
from collections import Counter

from mailopsd.core.errors import UnsafePathError
from mailopsd.core.users import Account
from mailopsd.maildir.folder import FolderMissing, MessageRef
from mailopsd.maildir.names import split_info, valid_message_name
from mailopsd.maildir.rewrite import finish_batch
from mailopsd.sent.fixer import FIXED, PENDING, SentFixer

# Fixed copies per batch: their directory fsyncs are shared (a backlog goes ~5x faster).
BATCH = 200
# Outcomes after which a name needs no second look while it keeps that name.
_FINAL = frozenset({"ignored", "already", "unsafe"})


def scan_user(fixer: SentFixer, account: Account, *, since: float,
              known: set[str] | None = None) -> Counter[str]:
    """Handle every message in the account's Sent new/ and cur/ (cur/: mtime >= ``since``).

    ``known`` (names already examined with a final outcome) is updated and pruned to the
    names present. Pending rows of copies that are gone are dropped. Returns outcome counts.
    """
    counts: Counter[str] = Counter()
    try:
        folder = fixer.open_folder(account)
    except FolderMissing:
        return counts
    except UnsafePathError as exc:
        fixer.log.warning("sent_folder_unsafe", user=account.name, error=str(exc))
        counts["unsafe"] += 1
        return counts
    except OSError as exc:
        # a passwd user in range without a home (a service account, a removed home): name
        # the user and go on with the others
        home_gone = not os.path.isdir(account.home)
        fixer.log.warning("sent_user_skipped", user=account.name, home=account.home,
                          reason="home directory does not exist" if home_gone
                          else f"cannot open the Maildir: {exc.strerror or exc}")
        counts["users_skipped"] += 1
        return counts
    present: set[str] = set()
    batched = 0
    deferred: list[MessageRef] = []
    bases: set[str] = set()
    try:
        listed: list[tuple[str, str, float]] = []
        for sub in ("new", "cur"):  # list both first: our fixed copies land in cur/
            try:
                with os.scandir(folder.sub(sub)) as it:
                    listed += [(sub, e.name, e.stat(follow_symlinks=False).st_mtime)
                               for e in it if valid_message_name(e.name)]
            except (FolderMissing, FileNotFoundError):
                continue
        fixer.deferred = deferred
        for sub, name, mtime in listed:
            if fixer.cancel.is_set():
                break
            present.add(name)
            bases.add(split_info(name)[0])
            if (known is not None and name in known) or name in fixer.produced:
                continue
            if sub == "cur" and mtime < since:
                continue  # older than any recipients we still hold
            outcome = fixer.handle(account, sub, name, folder)
            counts[outcome] += 1
            batched += outcome == FIXED
            if batched >= BATCH:
                finish_batch(folder, deferred)
                batched = 0
            if known is not None and outcome in _FINAL:
                known.add(name)
    finally:
        try:
            if batched:  # also after an error: the new copies are in place, finish the job
                finish_batch(folder, deferred)
        finally:
            fixer.deferred = None
            folder.close()
    if known is not None:
        known.intersection_update(present)
    for p in fixer.store.pending(user=account.name):
        if p.base not in bases:
            fixer.store.drop_pending(p.user, p.base)
    return counts


def expire(fixer: SentFixer, now: float | None = None) -> None:
    """Warn about copies that waited too long for recipients; forget old recipients."""
    now = time.time() if now is None else now
    for p in fixer.store.overdue(now - fixer.cfg.pending_hold):
        fixer.log.warning("sent_recipients_missing", user=p.user, exim_id=p.exim_id,
                          file=f"{p.sub}/{p.name}", waited=round(now - p.first_seen),
                          message="no recipients were logged for this Sent copy: is the "
                                  "Exim filter installed and sent.recipients_log right?")
        fixer.store.mark_warned(p.user, p.base)
    unfixed, _fixed = fixer.store.prune(now - fixer.cfg.recipients_keep)
    if unfixed:
        fixer.log.info("sent_recipients_expired", count=unfixed,
                       message="recipients whose Sent copy never appeared were forgotten")


def fixup_all(fixer: SentFixer, *, since: float | None = None) -> Counter[str]:
    """One pass over every account's Sent folder; returns outcome counts."""
    since = time.time() - fixer.cfg.recipients_keep if since is None else since
    total: Counter[str] = Counter()
    for account in list(fixer.accounts.values()):
        total.update(scan_user(fixer, account, since=since))
    return total


__all__ = ["FIXED", "PENDING", "expire", "fixup_all", "scan_user"]
