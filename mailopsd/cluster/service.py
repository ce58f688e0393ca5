"""``SERVICES["cluster"]``: the node's link to the shared store (``blocker.hooks.ClusterLink``).

Started before the blocker; the blocker binds to it, queues its decisions and hits through it,
and attaches itself once its own bans are in the kernel, after which other nodes' rows are
applied. Every publishing call only queues and wakes the sync thread: the log follower is never
held up by the store.
"""

from __future__ import annotations

import threading
from typing import Any

from mailopsd.cluster.db import psycopg
from mailopsd.cluster.outbox import Outbox
from mailopsd.cluster.sync import SyncLoop
from mailopsd.core.config.schema import Config
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB


class ClusterService:
    """Publishes this node's bans, unbans and hits; applies other nodes' rows."""

    name = "cluster"

    def __init__(self, config: Config, state: StateDB) -> None:
        assert config.cluster is not None
        self.cfg = config.cluster
        self.node = self.cfg.node_name
        self.log = get_logger("cluster")
        self.outbox = Outbox(state, self.node)
        self._sink: Any = None
        self.loop = SyncLoop(self.cfg, self.outbox, self.log, lambda: self._sink)
        self._thread: threading.Thread | None = None

    # -- service contract ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the sync thread (it connects on its own; a store away is no start failure)."""
        psycopg()  # a missing psycopg is a configuration problem: say so at start
        self._thread = threading.Thread(target=self.loop.run, name="cluster-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the sync thread; what is still queued stays in the outbox for the next start."""
        self.loop.stop.set()
        self.loop.wake()
        if self._thread is not None:
            self._thread.join(max(0.1, timeout))
        self.loop.close()
        self.outbox.close()

    def alive(self) -> bool:
        """True while the sync thread runs (a store outage does not make it unhealthy)."""
        return self._thread is not None and self._thread.is_alive()

    # -- ClusterLink --------------------------------------------------------------------------
    def attach(self, sink: Any) -> None:
        """Apply other nodes' rows to ``sink`` from now on."""
        self._sink = sink
        self.loop.notified = True
        self.loop.wake()

    def detach(self) -> None:
        """Stop applying rows (the blocker stops)."""
        self._sink = None

    def _queued(self) -> None:
        self.loop.outbox_waiting = True
        self.loop.wake()

    def publish_ban(self, ip: str, rule: str, reason: str, hits: int, decided: float,
                    expires: float | None) -> None:
        """Queue a ban this node decided."""
        self.outbox.put("ban", ip, rule, reason, hits, decided, expires)
        self._queued()

    def publish_unban(self, ip: str, why: str, decided: float) -> None:
        """Queue an unban; it lifts bans decided up to ``decided`` on every node."""
        self.outbox.put("unban", ip, "", why, 0, decided, None)
        self._queued()

    def publish_hit(self, rule: str, ip: str, when: float) -> None:
        """Queue a hit from this node's own log (kept in memory only)."""
        if self.cfg.share_hits:
            self.loop.hits.append((rule, ip, when))
            self.loop.wake()


def create(config: Config, state: StateDB) -> ClusterService | None:
    """The daemon's factory: None without a [cluster] table (single host, no psycopg)."""
    if config.cluster is None:
        return None
    return ClusterService(config, state)
