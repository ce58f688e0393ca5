"""The daemon's ``live-learn`` service: spool entries -> batches -> sa-learn -> entries removed.

One worker thread. watchdog (inotify) on spool_dir wakes it; after the first new entry it waits
``batch_wait`` to gather a batch, then (see ``batch.run_batch``) trains every pending entry with
ONE sa-learn per class, as the Bayes owner, under the shared Bayes lock. It also looks at the
spool at start (whatever was queued while the daemon was down or killed) and every
RESCAN seconds (a missed event costs at most that). A failed batch keeps its entries and is
retried after a backoff (5 s doubling to 5 min); the worker never stops for a bad entry.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from mailopsd.core.config.schema import Config
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB
from mailopsd.livelearn import spool
from mailopsd.livelearn.drain import Spool

SERVICE_NAME = "live-learn"
RESCAN = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 5.0, 300.0
NICE = 10  # the worker thread's (and so sa-learn's) niceness
DEGRADED_AFTER = 3  # failed batches in a row (5 + 10 + 20 s of backoff) before status says so


def create(config: Config, state: StateDB) -> LiveLearnService | None:
    """The service when ``[live-learn] enabled``; None otherwise."""
    return LiveLearnService(config, state) if config.live_learn.enabled else None


class _Wake:
    """watchdog handler: any new non-dot name in the spool wakes the worker."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.first: float | None = None  # monotonic time of the first event since the last batch

    def dispatch(self, event: Any) -> None:
        path = getattr(event, "dest_path", "") or getattr(event, "src_path", "")
        name = str(path).rsplit("/", 1)[-1]
        if getattr(event, "event_type", "") in ("created", "moved", "closed") and \
                not name.startswith("."):
            if self.first is None:
                self.first = time.monotonic()
            self.wake.set()


class LiveLearnService:
    """See the module docstring."""

    name = SERVICE_NAME

    def __init__(self, config: Config, state: StateDB) -> None:
        self.config = config
        self.state = state
        self.log = get_logger("live-learn")
        self.spool = Spool(config.live_learn.spool_dir)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._failures = 0
        self._handler = _Wake(self._wake)

    def start(self) -> None:
        """Create and check spool_dir (raises SpoolError), watch it, start the worker."""
        from watchdog.observers import Observer

        self.spool.ensure()
        self._stop.clear()
        self._observer = Observer()
        self._observer.daemon = True
        self._handler = _Wake(self._wake)
        self._observer.schedule(self._handler, self.spool.path, recursive=False)
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name=SERVICE_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop within ``timeout``: a running sa-learn is cancelled, its entries stay queued."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(max(0.1, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        self.spool.close()

    def alive(self) -> bool:
        """Whether the worker and the inotify observer run."""
        return (self._thread is not None and self._thread.is_alive()
                and (self._observer is None or self._observer.is_alive()))

    def status(self) -> dict[str, Any]:
        """For the daemon's status snapshot (``mailopsd status``, failure mails): degraded after
        DEGRADED_AFTER failed batches in a row (the entries are kept meanwhile)."""
        import os

        alive = self.alive()
        problems = [] if alive else ["a thread of the service has stopped"]
        if self._failures >= DEGRADED_AFTER:
            problems.append(f"{self._failures} batches in a row failed; the entries are kept "
                            "(journalctl -u mailopsd EVENT=live_learn_failed)")
        try:  # by path: listing through the worker's descriptor would share its offset
            pending: int | None = sum(1 for n in os.listdir(self.spool.path)
                                      if (p := spool.parse_name(n)) and p[0] == "learn")
        except OSError:
            pending = None
        return {"alive": alive, "degraded": bool(problems), "problems": problems,
                "spool_dir": self.spool.path, "pending": pending, "failures": self._failures}

    def _run(self) -> None:
        from mailopsd.livelearn.batch import Batcher

        batcher = Batcher(self.config, self.state, self.spool, self.log, self._stop)
        with contextlib.suppress(OSError):
            # Linux: nice is per thread and inherited by what it forks: sa-learn (~1 CPU-second
            # per batch) yields to the IMAP sessions and learn-enqueue runs the users wait for
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        try:
            batcher.cleanup_leftovers()
            self.log.info("live_learn_ready", spool_dir=self.spool.path,
                          pending=self.spool.pending())
            self.ready.set()
            retry_at = 0.0
            next_scan = 0.0  # at once: catch up on what waited while the daemon was down
            while not self._stop.is_set():
                now = time.monotonic()
                due = min(next_scan, retry_at) if retry_at else next_scan
                woke = self._wake.wait(max(0.0, due - now))
                if self._stop.is_set():
                    break
                if woke:
                    # batch_wait counts from the first new entry: entries that arrived while
                    # the previous batch ran have waited already; a backoff is waited out
                    start_at = (self._handler.first or now) + self.config.live_learn.batch_wait
                    if self._stop.wait(max(0.0, max(start_at, retry_at) - time.monotonic())):
                        break
                self._wake.clear()
                self._handler.first = None
                try:
                    ok = batcher.run_once()
                except Exception as exc:  # e.g. the state database: keep the entries, retry
                    self.log.exception("live_learn_failed", error=repr(exc))
                    ok = False
                next_scan = time.monotonic() + RESCAN
                if ok:
                    self._failures, retry_at = 0, 0.0
                else:
                    self._failures += 1
                    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
                    retry_at = time.monotonic() + delay
                    self.log.warning("live_learn_retry", retry_in=delay, failures=self._failures)
        except Exception as exc:  # alive() turns False: the daemon withholds the watchdog
            self.log.exception("live_learn_died", error=repr(exc))
        finally:
            batcher.close()
