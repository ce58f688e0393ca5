"""The blocker's cluster half: publish this node's decisions and hits, enforce other nodes'.

A mixin of ``BlockerService`` (it uses the service's lock, store, backend, policy and view of
the kernel), so that service.py only carries short hooks. Without a cluster link every method
here is a no-op.

Trust: rows from other nodes pass this node's own ignore list (loopback, own addresses,
``blocker.ignore``); the cluster side has already refused rows that are not addresses, are
wider than /24 or /64, or expired before they were written.

Cross-node counting: hits other nodes publish wait in ``_remote_hits``; they join the policy's
count when a hit for the same rule and address shows up in THIS node's log, so a node decides a
ban only on a hit in its own log, and 3 failed AUTHs on mx1 plus 2 on mx2 ban at maxretry 5.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailopsd.core.errors import FirewallError, StateError
from mailopsd.firewall.base import canonical, is_v6

if TYPE_CHECKING:
    from mailopsd.blocker.hooks import ClusterLink, RemoteRow
    from mailopsd.blocker.ignore import IgnoreList
    from mailopsd.blocker.policy import BanDecision, BanPolicy
    from mailopsd.blocker.store import Ban, BanStore
    from mailopsd.core.config.schema import Config
    from mailopsd.firewall.base import FirewallBackend

SKEW = 2.0  # seconds: an unban lifts bans decided up to this long after it (clocks differ)
BULK = 100  # more rows than this in one batch: one summary event instead of one per ban
REMOTE_HITS_MAX = 200_000  # pending remote hits kept at most (memory bound under a flood)


class ClusterApply:
    """Mixin: the cluster link's hooks inside the blocker service."""

    config: Config
    log: Any
    store: BanStore
    backend: FirewallBackend
    policy: BanPolicy
    ignore: IgnoreList
    _lock: threading.RLock
    _banned: dict[str, float | None]
    _failed: set[str]
    _link: ClusterLink | None
    _remote_hits: dict[tuple[str, str], list[float]]

    def apply(self, d: BanDecision) -> Ban | None:  # implemented by the service
        raise NotImplementedError

    def bind(self, running: dict[str, Any]) -> None:
        """Take the cluster link from the daemon's running services (before start())."""
        self._link = running.get("cluster")

    # -- publishing ---------------------------------------------------------------------------
    def _published_ban(self, ban: Ban | None, ip: str, rule: str, reason: str, count: int,
                       decided: float, expires: float | None) -> None:
        if self._link is not None and (ban is None or ban.origin is None):
            self._link.publish_ban(ip, rule, reason, count, decided, expires)

    def _published_unban(self, ban: Ban, why: str, decided: float) -> None:
        if self._link is None:
            return
        if why == "expired" and ban.origin is not None:
            return  # every node lifts at the absolute expiry; the deciding node says so
        self._link.publish_unban(ban.ip, why, decided)

    def _cluster_line(self, line: str) -> None:
        """Publish a counted hit from this node's log, and join waiting remote hits to it."""
        if self._link is None:
            return
        rule, ip, when = self.policy.parser.fields(line)
        if ip is None or rule is None or rule not in self.policy.rules:
            return
        if self.policy.rules[rule].maxretry > 1 and ip not in self._banned:
            self._link.publish_hit(rule, ip, when)
        waiting = self._remote_hits.pop((rule, ip), None)
        if not waiting:
            return
        for t in waiting:
            decision = self.policy.count(rule, ip, t)
            if decision is not None:  # decided now, on this node's own hit
                self.apply(decision)
                return

    # -- other nodes' rows --------------------------------------------------------------------
    def remote_hits(self, hits: Sequence[tuple[str, str, float]]) -> None:
        """Keep other nodes' hits until this node's own log shows the same rule and address."""
        with self._lock:
            for rule, ip, when in hits:
                if rule in self.policy.rules and ip not in self._banned:
                    self._remote_hits.setdefault((rule, ip), []).append(when)
            if len(self._remote_hits) > REMOTE_HITS_MAX:
                self.prune_remote_hits(time.time())

    def prune_remote_hits(self, now: float) -> int:
        """Drop remote hits that left every rule's window; returns how many keys went."""
        with self._lock:
            old = []
            for (rule, ip), times in self._remote_hits.items():
                spec = self.policy.rules.get(rule)
                if spec is None or max(times) <= now - spec.findtime:
                    old.append((rule, ip))
            for key in old:
                del self._remote_hits[key]
            return len(old)

    def apply_remote(self, rows: Sequence[RemoteRow]) -> None:
        """Enforce other nodes' bans (kernel in one batch) and unbans, in row order."""
        now = time.time()
        with self._lock:
            batch: dict[str, RemoteRow] = {}
            for row in rows:
                if row.action == "ban":
                    ip = row.ip  # the cluster's trust checks made it canonical
                    if self.ignore.contains(ip):
                        self.log.warning("cluster_row_refused", ip=ip, node=row.node, id=row.id,
                                         rule=row.rule, why="on this node's ignore list")
                        continue
                    if is_v6(ip) and not self.config.blocker.firewall.ipv6:
                        continue
                    if ip in self._banned or ip in batch:
                        continue  # one ban per address: never applied twice
                    if row.expires is not None and row.expires <= now:
                        continue  # ran out while on its way (a catch-up after a long absence)
                    batch[ip] = row
                else:
                    self._flush_remote(batch, now)
                    batch = {}
                    self._unban_remote(row, now)
            self._flush_remote(batch, now)

    def _save_remote(self, batch: dict[str, RemoteRow], now: float, *,
                     worker: bool = False) -> None:
        try:
            self.store.record_remote(
                [(ip, r.rule, r.reason, r.hits, r.decided, r.expires, r.node)
                 for ip, r in batch.items()], now)
        except StateError as exc:  # enforce anyway; only surviving a restart is lost
            self.log.error("ban_not_saved", count=len(batch), error=str(exc))
        finally:
            if worker:
                self.store.close()  # this thread's connection

    def _flush_remote(self, batch: dict[str, RemoteRow], now: float) -> None:
        if not batch:
            return
        timeouts = {ip: None if r.expires is None else max(1.0, r.expires - now)
                    for ip, r in batch.items()}
        errors: list[FirewallError] = []

        def kernel() -> None:
            try:
                self.backend.ban_many(timeouts)
            except FirewallError as exc:
                errors.append(exc)

        workers: list[threading.Thread] = []
        if len(batch) > BULK:
            # a burst or a new node's snapshot: nft loads the kernel and SQLite writes while
            # this thread updates the policy
            workers = [threading.Thread(target=kernel, name="cluster-kernel"),
                       threading.Thread(target=self._save_remote, args=(batch, now),
                                        kwargs={"worker": True}, name="cluster-save")]
            for w in workers:
                w.start()
        else:
            self._save_remote(batch, now)
        for ip, r in batch.items():
            self._banned[ip] = r.expires
            self.policy.note_banned(ip, r.expires)
        if workers:
            for w in workers:
                w.join()
        else:
            kernel()
        if errors:
            self._failed.update(batch)
            self.log.error("ban_failed", count=len(batch), error=str(errors[0]))
        if len(batch) > BULK:
            nodes = sorted({r.node for r in batch.values()})
            self.log.info("cluster_bans_applied", count=len(batch), nodes=nodes,
                          backend=self.backend.name)
            return
        for ip, r in batch.items():
            self.log.info("ip_banned", ip=ip, rule=r.rule, count=r.hits, origin=r.node,
                          source="cluster", reason=r.reason, expires=_iso(r.expires),
                          duration="permanent" if r.expires is None
                          else round(r.expires - r.decided), backend=self.backend.name)

    def _unban_remote(self, row: RemoteRow, now: float) -> None:
        try:
            ip = canonical(row.ip)
        except ValueError:
            return
        if ip not in self._banned:
            return
        ban = self.store.get(ip)
        if ban is not None and ban.active:
            if row.reason == "expired":
                # an expiry lifts only a ban that is itself over by then, never a newer one
                if ban.expires is None or ban.expires > row.decided + SKEW:
                    return
            elif ban.banned_at > row.decided + SKEW:
                return  # banned again after that unban was decided
        lifted = self.store.lift([ip], f"cluster:{row.node}", now)
        try:
            self.backend.unban(ip)
        except FirewallError as exc:
            self.log.error("unban_failed", ip=ip, error=str(exc))
        self._banned.pop(ip, None)
        self._failed.discard(ip)
        self.policy.forget(ip)
        rule = lifted[0].rule if lifted else row.rule
        self.log.info("ip_unbanned", ip=ip, rule=rule, why="cluster", origin=row.node,
                      cluster_why=row.reason, source="cluster")


def _iso(ts: float | None) -> str | None:
    from datetime import datetime

    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")
