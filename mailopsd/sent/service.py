"""The ``sent-fixer`` service: watch every user's Sent new/ and cur/, fix copies as they appear.

Threads: the recipients-log follower (mailopsd.logtail.follow, woken by inotify on the log
directory) stores each new recipients line in the state database before its position is saved, then
queues the ids; watchdog queues every file created in or moved into a watched Sent ``new/`` or
``cur/``; ONE worker thread does all the Maildir work (in-process, as root through verified
descriptors: see mailopsd.maildir.rewrite and docs/copy-to-sent.md for why not a
worker process per message). It also rescans every folder and re-reads passwd every
``sent.rescan_interval``, so a missed event or a new user costs at most that delay.
A file lock keeps ``mailopsd sent-fixup`` and the service from working at the same time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.errors import JobBusyError, MailopsError
from mailopsd.core.locks import FileLock
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB
from mailopsd.logtail.follow import LogFollower
from mailopsd.sent.addresses import parse_address_list
from mailopsd.sent.fixer import SentFixer
from mailopsd.sent.scan import expire, scan_user

SERVICE_NAME = "sent-fixer"
# A recipients line is as long as the base64 of $recipients (logwrite does not truncate):
# 1 MiB holds ~19000 typical addresses. Longer lines are cut by the follower (the n= check
# then warns). Not larger: the follower re-reads up to max_line bytes per poll.
MAX_LINE = 1 << 20
_Item = tuple[str, Any, Any]  # ("file", user, (sub, name)) | ("ids", None, [ids]) | ("stop",..)


def lock_for(config: Config) -> FileLock:
    """The lock the service and ``mailopsd sent-fixup`` share."""
    return FileLock(os.path.join(config.daemon.run_dir, "locks", f"{SERVICE_NAME}.lock"))


def follower_name(config: Config) -> str:
    """The log_positions name of the recipients-log follower."""
    return f"sent:{config.sent.recipients_log}"


class SentService:
    """See the module docstring. ``create()`` builds it when ``sent.enabled``."""

    name = SERVICE_NAME

    def __init__(self, config: Config, state: StateDB) -> None:
        self.config = config
        self.cfg = config.sent
        self.state = state
        self.log = get_logger("sent")
        self.queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the backlog is done and folders are watched
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._watches: dict[str, list[Any]] = {}        # user -> watchdog watches
        self._known: dict[str, set[str]] = {}
        self._awaiting: dict[str, float] = {}  # user -> until when to look for a new folder
        self._local = threading.local()
        self.follower = LogFollower(follower_name(config), self.cfg.recipients_log, state,
                                    self._on_lines, poll_interval=self.cfg.log_poll_interval,
                                    max_line=MAX_LINE)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (it takes the lock, catches up, then watches)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sent-fixer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop watching and working within ``timeout`` seconds; nothing pending is lost."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.queue.put(("stop", None, None))
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))

    def alive(self) -> bool:
        """Whether the worker (and, once started, the follower and observer) run."""
        if self._thread is None or not self._thread.is_alive():
            return False
        if self._observer is not None and not self._observer.is_alive():
            return False
        return not (self._started_follow() and not self.follower.alive())

    def _started_follow(self) -> bool:
        return getattr(self, "_follow_started", False)

    # -- recipients log (follower's thread, or the worker through poll_once) ---------------
    def _on_lines(self, lines: list[str]) -> None:
        fixer = getattr(self._local, "fixer", None)
        if fixer is None:  # the follower's own thread: its own connection
            fixer = self._local.fixer = SentFixer(self.config, self.state.connect())
        new = fixer.store_lines(lines)
        if new:
            self.queue.put(("ids", None, new))

    # -- the worker ---------------------------------------------------------------------------
    def _run(self) -> None:
        lock = lock_for(self.config)
        while not self._stop.is_set():
            try:
                lock.acquire()
                break
            except JobBusyError as exc:
                self.log.warning("sent_fixer_waiting", error=str(exc))
                self._stop.wait(5.0)
        else:
            return
        conn = self.state.connect()
        fixer = SentFixer(self.config, conn, poll_log=self.follower.poll_once)
        fixer.cancel = self._stop
        self._local.fixer = fixer
        try:
            self._serve(fixer)
        except Exception as exc:  # alive() turns False: the daemon withholds the watchdog
            self.log.exception("sent_fixer_died", error=repr(exc))
        finally:
            with contextlib.suppress(Exception):
                if self._observer is not None:
                    self._observer.stop()
                    self._observer.join(5)
            if self._started_follow():
                self.follower.stop(5)
            conn.close()
            lock.release()

    def _serve(self, fixer: SentFixer) -> None:
        from watchdog.observers import Observer

        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self.follower.start()  # resumes where it stopped; its thread reads from now on
        self._follow_started = True
        self._catch_up(fixer)
        self.log.info("sent_fixer_ready", users=len(fixer.accounts),
                      watched=len(self._watches), pending=len(fixer.store.pending()))
        self.ready.set()
        next_scan = time.monotonic() + self.cfg.rescan_interval
        while not self._stop.is_set():
            timeout = max(0.0, next_scan - time.monotonic())
            if self._awaiting:
                timeout = min(timeout, 0.05)
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            try:
                while item is not None and not self._stop.is_set():
                    self._do(fixer, item)
                    item = self.queue.get_nowait()
            except queue.Empty:
                pass
            except Exception as exc:  # never die on one bad message or a bug
                self.log.exception("sent_fixer_error", error=repr(exc))
            if self._awaiting:
                self._check_awaiting(fixer)
            if time.monotonic() >= next_scan and not self._stop.is_set():
                next_scan = time.monotonic() + self.cfg.rescan_interval
                try:
                    self._rescan(fixer)
                except Exception as exc:
                    self.log.exception("sent_fixer_error", error=repr(exc))

    def _catch_up(self, fixer: SentFixer) -> None:
        """Read the whole unread log, watch every folder, fix what is waiting."""
        while self.follower.poll_once():
            pass
        self._drain_ids()
        self._rescan(fixer)

    def _drain_ids(self) -> None:
        """Drop queued id notices: a full scan is about to look at everything anyway."""
        with contextlib.suppress(queue.Empty):
            while True:
                item = self.queue.get_nowait()
                if item[0] == "file":
                    self.queue.put(item)
                    return

    def _do(self, fixer: SentFixer, item: _Item) -> None:
        kind, user, data = item
        if kind == "file":
            acct = fixer.accounts.get(user)
            if data[1] in fixer.produced:
                fixer.produced.discard(data[1])  # our own fixed copy arriving in cur/
            elif acct is not None:
                fixer.handle(acct, data[0], data[1])
        elif kind == "ids":
            self._watch_senders(fixer, data)
            fixer.fix_pending_for(data)

    def _rescan(self, fixer: SentFixer) -> None:
        fixer.produced.clear()
        fixer.refresh_accounts()
        since = time.time() - self.cfg.recipients_keep
        for acct in fixer.accounts.values():
            self._watch(fixer, acct)
            scan_user(fixer, acct, since=since, known=self._known.setdefault(acct.name, set()))
        for gone in set(self._watches) - set(fixer.accounts):
            self._unwatch(gone)
        expire(fixer)

    def _watch_senders(self, fixer: SentFixer, ids: list[str]) -> None:
        """A first sent message creates the Sent folder (just after the recipients line):
        start watching it as soon as it exists."""
        for exim_id in ids:
            rec = fixer.store.recipients(exim_id)
            sender = parse_address_list(rec.sender) if rec else []
            user = sender[0].local.lower() if sender else ""
            if not user or user in self._watches or user in self._awaiting:
                continue
            if user not in fixer.accounts:
                with contextlib.suppress(MailopsError):
                    fixer.refresh_accounts()
            if user in fixer.accounts:
                self._awaiting[user] = time.monotonic() + 60.0

    def _check_awaiting(self, fixer: SentFixer) -> None:
        now = time.monotonic()
        for user, until in list(self._awaiting.items()):
            acct = fixer.accounts.get(user)
            if acct is not None and self._watch(fixer, acct):
                del self._awaiting[user]
                scan_user(fixer, acct, since=time.time() - self.cfg.recipients_keep,
                          known=self._known.setdefault(user, set()))
            elif acct is None or now > until:
                del self._awaiting[user]

    # -- watches ------------------------------------------------------------------------------
    def _watch(self, fixer: SentFixer, acct: Any) -> bool:
        """Watch the account's Sent new/ and cur/ if not yet; True if watches were added."""
        if acct.name in self._watches:
            return False
        try:  # verify the path through descriptors first: events only trigger safe work
            fixer.open_folder(acct).close()
        except (MailopsError, OSError):
            return False
        # ONE recursive watch on the folder, not one per new/ and cur/: watchdog holds an
        # unpaired IN_MOVED_FROM for 0.5 s and everything queued behind it waits, so the
        # new/ -> cur/ renames (Dovecot's, ours) must pair up inside one watch.
        base = os.path.abspath(os.path.join(acct.home, self.config.mailboxes.maildir,
                                            self.cfg.folder))
        try:
            # no event_filter=: Debian 12's watchdog 2.2.1 lacks it; the handler filters
            watch = self._observer.schedule(_Handler(self, acct.name, base), base,
                                            recursive=True)
        except OSError as exc:
            self.log.warning("sent_watch_failed", user=acct.name, path=base, error=str(exc))
            return False
        self._watches[acct.name] = [watch]
        return True

    def _unwatch(self, user: str) -> None:
        for w in self._watches.pop(user, []):
            with contextlib.suppress(Exception):
                self._observer.unschedule(w)
        self._known.pop(user, None)


class _Handler:
    """The watchdog handler of one user's Sent folder: queues names arriving in new/ or cur/."""

    def __init__(self, service: SentService, user: str, base: str) -> None:
        self.service = service
        self.user = user
        self.dirs = {os.path.join(base, "new"): "new", os.path.join(base, "cur"): "cur"}

    def dispatch(self, event: Any) -> None:
        if event.is_directory or event.event_type not in ("created", "moved"):
            return
        target = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        sub = self.dirs.get(os.path.dirname(target))
        if sub is not None:
            self.service.queue.put(("file", self.user, (sub, os.path.basename(target))))


def create(config: Config, state: StateDB) -> SentService | None:
    """The service when ``sent.enabled``, else None."""
    if not config.sent.enabled:
        return None
    return SentService(config, state)
