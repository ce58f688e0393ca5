"""One live-learn batch: every pending entry, checked, limited, copied, learned, removed.

Order of one ``run_once``: (1) names that are not ours, links, FIFOs, stale half-writes are
refused and removed; (2) refusal markers from learn-enqueue are counted and removed; (3) per
user, entries past the daily limit (``live_learn_daily`` in the state database, the only count
that grants) are refused, counted and removed; (4) the rest are copied through verified
descriptors into a private staging directory for the Bayes owner, with a digest; the same
message queued twice keeps only its latest entry (moved into Spam and out again: learned as
ham); (5) ONE sa-learn per class reads the copies, as the Bayes owner under the Bayes lock; only
when it examined every listed message are the digests recorded, the counts added and the
entries removed. A failure keeps every entry of that class for the next try.
"""

from __future__ import annotations

import contextlib
import pwd
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.errors import MailopsError
from mailopsd.core.state import StateDB, immediate
from mailopsd.livelearn import spool as names
from mailopsd.livelearn import store
from mailopsd.livelearn.drain import Entry, Spool

STAGING_PREFIX = "mailopsd-live-learn."
LOCK_WAIT = 10.0  # a longer holder (the learn-spam job) makes this batch retry later
LEARN_TIMEOUT = 600.0
PRUNE_EVERY = 3600.0


def user_name(uid: int) -> str:
    """The passwd name of ``uid`` (the uid as text when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def latest_per_digest(entries: list[Entry]) -> tuple[list[Entry], dict[str, list[Entry]]]:
    """(the newest entry of each message, digest -> the older entries it supersedes)."""
    newest: dict[str, Entry] = {}
    older: dict[str, list[Entry]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: (e.queued_ns, e.name)):
        if e.digest in newest:
            older[e.digest].append(newest[e.digest])
        newest[e.digest] = e
    return sorted(newest.values(), key=lambda e: (e.queued_ns, e.name)), dict(older)


class Batcher:
    """Runs batches for the live-learn service (one thread)."""

    def __init__(self, config: Config, state: StateDB, spool: Spool, log: Any,
                 cancel: threading.Event) -> None:
        self.config = config
        self.cfg = config.live_learn
        self.spool = spool
        self.log = log
        self.cancel = cancel
        self.conn = state.connect()
        self._pruned = 0.0
        self._stuck: set[str] = set()  # rejected names that could not be removed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def cleanup_leftovers(self) -> None:
        """Remove staging directories a killed daemon left behind."""
        from mailopsd.spam.staging import remove_leftovers

        for path in remove_leftovers(self.config.jobs.learn_spam.staging_dir, STAGING_PREFIX):
            self.log.warning("live_learn_leftover_removed", path=path)

    # -- one batch --------------------------------------------------------------------------
    def run_once(self) -> bool:
        """One batch over everything pending; False when something must be tried again."""
        try:
            scan = self.spool.scan()
        except OSError as exc:
            self.log.error("live_learn_failed", error=f"cannot list the spool: {exc}")
            return False
        day = names.today()
        for name, uid, why in scan.rejected:
            removed = self.spool.remove(name)
            if removed or name not in self._stuck:  # one event for what cannot be removed
                self.log.warning("live_learn_rejected", user=user_name(uid), uid=uid,
                                 reason=why, entry=name, removed=removed)
            if not removed:
                self._stuck.add(name)
        self._count_markers(scan.refused, scan.markers, day)
        self._maybe_prune()
        if not scan.entries:
            return True
        entries = self._apply_limit(scan.entries, day)
        if not entries:
            return True
        try:
            return self._learn_all(entries, day)
        except MailopsError as exc:
            self.log.error("live_learn_failed", error=str(exc), kept=len(entries))
            return False

    def _count_markers(self, refused: Counter[tuple[int, str]], markers: list[str],
                       day: str) -> None:
        if not refused:
            return
        by_uid: Counter[int] = Counter()
        for (uid, _reason), n in refused.items():
            by_uid[uid] += n
        with immediate(self.conn):
            for uid, n in by_uid.items():
                store.add_daily(self.conn, uid, day, refused=n)
        for name in markers:
            self.spool.remove(name)
        for (uid, reason), n in sorted(refused.items()):
            self.log.warning("live_learn_refused", user=user_name(uid), uid=uid, reason=reason,
                             count=n, by="learn-enqueue")

    def _refuse(self, entries: list[Entry], reason: str, day: str) -> None:
        """Count, remove and report entries that will not be learned."""
        by: Counter[tuple[int, str]] = Counter((e.uid, e.klass) for e in entries)
        with immediate(self.conn):
            for (uid, _klass), n in by.items():
                store.add_daily(self.conn, uid, day, refused=n)
        for e in entries:
            self.spool.remove(e.name)
        for (uid, klass), n in sorted(by.items()):
            self.log.warning("live_learn_refused", user=user_name(uid), uid=uid, reason=reason,
                             count=n, **{"class": klass})

    def _apply_limit(self, entries: list[Entry], day: str) -> list[Entry]:
        """The entries within each user's daily limit; the others are refused."""
        if not self.cfg.daily_limit:
            return entries
        per_uid: dict[int, list[Entry]] = defaultdict(list)
        for e in entries:
            per_uid[e.uid].append(e)
        keep: list[Entry] = []
        over: list[Entry] = []
        for uid, mine in per_uid.items():
            room = max(0, self.cfg.daily_limit - store.learned_today(self.conn, uid, day))
            keep += mine[:room]
            over += mine[room:]
            if len(mine) > room:
                with contextlib.suppress(OSError):
                    self.spool.publish_daily(uid, day, store.learned_today(self.conn, uid, day))
        if over:
            self._refuse(over, "daily_limit", day)
        return sorted(keep, key=lambda e: (e.queued_ns, e.name))

    def _learn_all(self, entries: list[Entry], day: str) -> bool:
        from mailopsd.spam.bayes_db import BayesDB
        from mailopsd.spam.staging import Staging

        db = BayesDB.from_config(self.config)
        if db.owner.uid == 0:
            raise MailopsError("spamassassin.bayes_owner must not be root: spamd would lose Bayes")
        try:
            staging = Staging(self.config.jobs.learn_spam.staging_dir, STAGING_PREFIX, db.owner)
        except OSError as exc:
            raise MailopsError(f"cannot create a staging directory in "
                               f"{self.config.jobs.learn_spam.staging_dir}: {exc}") from exc
        try:
            blocked = staging.unreachable_by(db.owner)
            if blocked:
                raise MailopsError(f"{db.owner.name} cannot reach {blocked}: set "
                                   "jobs.learn-spam.staging_dir to a directory it can traverse")
            copied, refused, ok = [], defaultdict(list), True
            for e in entries:
                try:
                    why = self.spool.copy(e, staging, self.config.jobs.learn_spam.max_size)
                except OSError as exc:
                    self.log.error("live_learn_read_failed", entry=e.name, error=str(exc))
                    ok = False
                    continue
                if why:
                    refused[why].append(e)
                else:
                    copied.append(e)
            for why, group in refused.items():
                self._refuse(group, why, day)
            winners, older = latest_per_digest(copied)
            for klass in names.CLASSES:
                mine = [e for e in winners if e.klass == klass]
                if mine and not self.cancel.is_set():
                    ok = self._learn(db, staging, klass, mine, older, day) and ok
            return ok and not self.cancel.is_set()
        finally:
            staging.remove()

    def _learn(self, db: Any, staging: Any, klass: str, entries: list[Entry],
               older: dict[str, list[Entry]], day: str) -> bool:
        """One sa-learn over ``entries`` (one class); on success record, count and remove.

        When sa-learn ran but did not examine every message (a message it cannot read would
        otherwise hold the whole queue back forever), the batch is halved until the culprits
        are alone; they are refused (``not_learnable``) only if others of the batch were
        learned: if none was, the fault is not the messages', and everything stays queued.
        """
        status, why = self._try(db, staging, klass, entries, older, day)
        if status == "ok":
            return True
        if status == "error" or len(entries) == 1:
            self.log.error("live_learn_failed", error=why, kept=len(entries), **{"class": klass})
            return False
        self.log.warning("live_learn_split", error=why, count=len(entries), **{"class": klass})
        bad: list[Entry] = []
        errors: list[str] = []
        learned_any = self._isolate(db, staging, klass, entries, older, day, bad, errors)
        if bad and learned_any:
            self._refuse(bad + [o for e in bad for o in older.get(e.digest, [])],
                         "not_learnable", day)
        if errors or (bad and not learned_any):
            self.log.error("live_learn_failed", error=(errors or [why])[0],
                           kept=len(bad) + len(errors), **{"class": klass})
            return False
        return True

    def _isolate(self, db: Any, staging: Any, klass: str, entries: list[Entry],
                 older: dict[str, list[Entry]], day: str, bad: list[Entry],
                 errors: list[str]) -> bool:
        """Learn ``entries`` in halves; collect the ones sa-learn will not examine in ``bad``.
        Returns whether anything was learned."""
        half = len(entries) // 2
        learned = False
        for part in (entries[:half], entries[half:]):
            status, why = self._try(db, staging, klass, part, older, day)
            if status == "ok":
                learned = True
            elif status == "error":
                errors.append(why)
            elif len(part) == 1:
                bad.extend(part)
            else:
                learned = self._isolate(db, staging, klass, part, older, day, bad,
                                        errors) or learned
        return learned

    def _try(self, db: Any, staging: Any, klass: str, entries: list[Entry],
             older: dict[str, list[Entry]], day: str) -> tuple[str, str]:
        """Run sa-learn over ``entries``: ("ok", "") after committing them; ("partial", why)
        when it ran but did not examine every one; ("error", why) when it failed to run."""
        from mailopsd.core.errors import ProcessError
        from mailopsd.core.process import run
        from mailopsd.spam.bayes import learn_outcome, list_file_text, sa_learn_argv
        from mailopsd.spam.bayes_db import hold_bayes_lock

        started = time.time()
        try:
            listfile = staging.write_file(f"{klass}.list.", list_file_text(
                klass, [e.staged for e in entries]).encode("utf-8", "surrogateescape"))  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            return "error", f"cannot write the sa-learn list: {exc}"
        argv = sa_learn_argv(self.config.binaries.sa_learn, dbpath=db.dbpath or None,
                             listfile=listfile, klass=klass)  # type: ignore[arg-type]
        try:
            with hold_bayes_lock(self.config.daemon.run_dir, LOCK_WAIT, self.cancel):
                res = run(argv, timeout=LEARN_TIMEOUT, account=db.owner, ok_codes=(0, 1),
                          cancel=self.cancel)
        except (ProcessError, MailopsError) as exc:
            return "error", str(exc)
        ok, got, why = learn_outcome(res.returncode, res.stdout, len(entries))
        if not ok:
            return "partial", why
        self._commit(klass, entries, older, day, got.learned, started)
        return "ok", ""

    def _commit(self, klass: str, entries: list[Entry], older: dict[str, list[Entry]],
                day: str, sa_learned: int, started: float) -> None:
        """Record the digests, add the counts, remove the entries, report per user."""
        done = entries + [o for e in entries for o in older.get(e.digest, [])]
        per_uid: Counter[int] = Counter(e.uid for e in done)
        with immediate(self.conn):
            store.record_learned(self.conn, [(e.digest, klass, e.uid) for e in entries])
            counts = {uid: store.add_daily(self.conn, uid, day, learned=n)
                      for uid, n in per_uid.items()}
        for e in done:
            self.spool.remove(e.name)
        for uid, count in counts.items():
            with contextlib.suppress(OSError):
                self.spool.publish_daily(uid, day, count)
        now = time.time()
        for uid in sorted(per_uid):
            mine = [e for e in entries if e.uid == uid]
            ages = [round(now - e.queued_ns / 1e9, 3) for e in mine]
            self.log.info("live_learn_learned", user=user_name(uid), uid=uid, count=len(mine),
                          superseded=per_uid[uid] - len(mine), ages=ages,
                          learned_today=counts[uid], sa_learn_learned=sa_learned,
                          duration=round(now - started, 3), **{"class": klass})

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        with immediate(self.conn):
            store.prune(self.conn)
