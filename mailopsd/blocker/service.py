"""The blocker service: Exim mainlog -> ban policy -> state database + firewall -> events.

Start: lift bans that expired while the daemon was down, then load every active ban into the
kernel in ONE commit (``FirewallBackend.restore``: the chain/sets are rebuilt, so a restart after
``kill -9`` leaves exactly the same rules, never duplicates), then follow the mainlog.

Threads: the log follower calls ``_on_lines``; a ``blocker-tick`` thread lifts expired bans,
follows what ``mailopsd bans`` changed (table ``ban_changes``: the CLI edits the kernel and the
database itself, the daemon only updates its view and the policy), samples connection floods and
warns about silent rules. One lock serialises the policy and every ban/unban.

``mailopsd bans`` changes the database first and then the kernel, holding the bans lock
(banlock.py) across both; the daemon reads those changes under the same lock before each kernel
check and each ban, so a verify tick can never put back an address the admin just removed.
Each ban keeps its evidence (evidence.py); ``status()`` feeds ``mailopsd status``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import datetime
from typing import Any

from mailopsd.blocker import counts
from mailopsd.blocker.banlock import BanLock
from mailopsd.blocker.cluster_apply import ClusterApply
from mailopsd.blocker.evidence import Evidence
from mailopsd.blocker.flood import RULE as FLOOD_RULE
from mailopsd.blocker.flood import FloodDetector
from mailopsd.blocker.ignore import IgnoreList
from mailopsd.blocker.policy import BanDecision, BanPolicy
from mailopsd.blocker.rules import RuleSpec, rule_specs
from mailopsd.blocker.store import Ban, BanStore
from mailopsd.core.config.schema import Config
from mailopsd.core.errors import FirewallError, MailopsError, StateError
from mailopsd.core.logs import get_logger
from mailopsd.core.state import StateDB
from mailopsd.firewall import make_backend
from mailopsd.firewall.base import FirewallBackend, canonical, is_v6

SILENT_REWARN = 86400.0  # a still-silent rule is reported again once a day
PRUNE_EVERY = 3600.0
KEEP_CHANGES = 86400.0


def when(ts: float | None) -> str | None:
    """Local ISO time for events and tables (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def duration_field(seconds: float | None) -> float | str:
    """DURATION as events carry it: whole seconds, or "permanent"."""
    return "permanent" if seconds is None else round(seconds)


class BlockerService(ClusterApply):
    """``SERVICES["blocker"]``: bans abusive SMTP clients found in the Exim mainlog."""

    name = "blocker"

    def __init__(self, config: Config, state: StateDB,
                 backend: FirewallBackend | None = None) -> None:
        self.config = config
        self.state = state
        self.log = get_logger("blocker")
        self.store = BanStore(state, source="daemon")
        self.backend = backend or make_backend(config)
        self.banlock = BanLock(config.daemon.run_dir)
        self.evidence = Evidence(rule_specs(config.blocker),
                                 ipv6_aggregate=config.blocker.ipv6_aggregate)
        self.lines_read = 0
        self.kernel_check: dict[str, Any] = {"at": None, "ok": None}
        self.started_at: float | None = None  # monotonic; status gives the follower a moment
        self.ignore = IgnoreList.from_config(config.blocker)
        self.policy = BanPolicy(config.blocker, self.ignore,
                                previous_bans=self.store.times_banned)
        self.policy.track_changes()  # counts survive restarts (saved with the log position)
        fl = config.blocker.flood
        self.flood: FloodDetector | None = None
        if fl.enabled:
            # repeat flooders get longer bans exactly like the log rules' offenders
            spec = RuleSpec(name=FLOOD_RULE, enabled=True, maxretry=fl.samples,
                            findtime=fl.interval * fl.samples, bantime=float(fl.bantime))
            self.flood = FloodDetector(
                fl, config.blocker.firewall.ports, ignored=self.ignore.contains,
                banned=lambda ip: ip in self._banned,
                duration=lambda ip, _base: self.policy.ban_duration(
                    spec, self.store.times_banned(ip)))
        self._lock = threading.RLock()
        self._banned: dict[str, float | None] = {}  # ip -> expires, as the kernel has them
        self._failed: set[str] = set()  # bans the kernel refused; retried each tick
        self._seq = 0
        self._stop = threading.Event()
        self._tick: threading.Thread | None = None
        self._follower: Any = None
        self._silent: dict[str, float] = {}
        self._link = None  # the cluster link (hooks.ClusterLink), set by bind()
        self._remote_hits = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Restore bans in one commit, then follow the log; raises MailopsError."""
        from mailopsd.logtail.follow import LogFollower

        t0 = time.monotonic()
        now = time.time()
        with self.banlock.held():  # a `mailopsd bans` change lands before or after, not between
            lifted, active = self._restore(now)
        self.log.info("bans_restored", count=len(active), expired=len(lifted),
                      backend=self.backend.name, duration=round(time.monotonic() - t0, 3))
        mainlog = self.config.blocker.mainlog
        self._follower = LogFollower(f"blocker:{mainlog}", mainlog, self.state, self._on_lines,
                                     on_save=self._save_counts)
        self._follower.start()
        self.started_at = time.monotonic()
        self._stop.clear()
        self._tick = threading.Thread(target=self._tick_loop, name="blocker-tick", daemon=True)
        self._tick.start()
        if self._link is not None:
            self._link.attach(self)  # now other nodes' bans may come in

    def _restore(self, now: float) -> tuple[list[Ban], list[Ban]]:
        """Lift bans expired while stopped, load the rest into the kernel in one commit."""
        lifted = self.store.lift([b.ip for b in self.store.due(now)], "expired", now)
        for ban in lifted:
            self._log_unban(ban, "expired", while_stopped=True)
        # an address added to blocker.ignore (the reload restarts this service) is let go now
        ignored = [b.ip for b in self.store.active() if self.ignore.contains(b.ip)]
        for ban in self.store.lift(ignored, "ignored", now):
            self._log_unban(ban, "ignored", message="the address is in blocker.ignore now")
        active = self.store.active()
        if not self.config.blocker.firewall.ipv6:
            # banned before IPv6 was switched off: keep them in the database, not the kernel
            v6 = [b.ip for b in active if is_v6(b.ip)]
            if v6:
                self.log.warning("bans_not_restored", count=len(v6), ips=v6[:10],
                                 message="IPv6 bans kept but not applied: "
                                         "blocker.firewall.ipv6 is false")
            active = [b for b in active if not is_v6(b.ip)]
        self.backend.restore({b.ip: b.remaining(now) for b in active})
        with self._lock:
            self._load_counts()
            self._banned = {b.ip: b.expires for b in active}
            for ban in active:
                self.policy.note_banned(ban.ip, ban.expires)
            self._seq = self.store.last_change()
        return lifted, active

    def stop(self, timeout: float) -> None:
        """Stop following and ticking; bans stay in the kernel (restored at the next start)."""
        deadline = time.monotonic() + timeout
        if self._link is not None:
            self._link.detach()
        self._stop.set()
        if self._follower is not None:
            self._follower.stop(max(0.1, deadline - time.monotonic()))
        if self._tick is not None:
            self._tick.join(max(0.1, deadline - time.monotonic()))
        self.store.close()

    def alive(self) -> bool:
        """True while the follower and the tick thread both run."""
        return bool(self._follower is not None and self._follower.alive()
                    and self._tick is not None and self._tick.is_alive())

    def _load_counts(self) -> None:
        """Hits read before the last stop or crash count again (``blocker.counts``)."""
        conn = self.state.connect()
        try:
            loaded = counts.load(conn, self.policy)
        finally:
            conn.close()
        if loaded:
            self.log.info("counts_restored", addresses=loaded, tracked=self.policy.tracked())

    def _save_counts(self) -> Any:
        """The log follower's on_save: the changed counts, taken under our lock BEFORE the
        follower's transaction begins (never wait for our lock while holding the database's),
        written in that transaction, so they commit with the position they belong to."""
        with self._lock:
            return counts.writer(self.policy, self._lock)

    # -- bans ---------------------------------------------------------------------------------
    def _on_lines(self, lines: list[str]) -> None:
        with self._lock:
            self.lines_read += len(lines)
            for line in lines:
                self.evidence.add(line)
                try:
                    self._cluster_line(line)
                    decision = self.policy.feed_line(line)
                except Exception as exc:  # hostile input: log it, never die, never ban
                    self.log.error("blocker_line_failed", error=repr(exc), line=line[:300])
                    continue
                if decision is not None:
                    self.apply(decision)

    def apply(self, d: BanDecision) -> Ban | None:
        """Ban as decided: state database first (survives a crash), then the kernel, then the
        ``ip_banned`` event. Returns the stored ban, or None if nothing was done."""
        now = time.time()
        try:
            # one spelling everywhere (database, kernel listing, CLI): 2001:db8::/64
            d = dataclasses.replace(d, ip=canonical(d.ip))
        except ValueError:
            self.log.error("ban_refused_bad_ip", ip=d.ip[:100], rule=d.rule)
            return None
        if is_v6(d.ip) and not self.config.blocker.firewall.ipv6:
            self.log.warning("ban_skipped_ipv6", ip=d.ip, rule=d.rule, count=d.count,
                             message="blocker.firewall.ipv6 is false")
            return None
        with self._lock, self.banlock.held():
            self._sync()  # what `mailopsd bans` did so far counts before this ban
            evidence = self.evidence.take(d.ip, d.rule, d.count, d.first_seen, d.last_seen)
            if d.ip in self._banned:
                return None
            if d.expired(now):
                # a replay of old lines: that ban would already be over
                self.log.info("ban_skipped_expired", ip=d.ip, rule=d.rule, count=d.count,
                              last_seen=when(d.last_seen))
                return None
            expires = None if d.duration is None else now + d.duration
            times: int | None = None
            try:
                ban = self.store.record(d.ip, d.rule, d.reason, count=d.count,
                                        first_seen=d.first_seen, last_seen=d.last_seen,
                                        expires=expires, now=now, evidence=evidence,
                                        by="mailopsd")
                times = ban.times_banned
            except StateError as exc:
                # block anyway; only surviving a restart is lost (and the daemon says so)
                ban = None
                self.log.error("ban_not_saved", ip=d.ip, rule=d.rule, error=str(exc))
            self._banned[d.ip] = expires
            self.policy.note_banned(d.ip, expires)
            try:
                self.backend.ban(d.ip, d.duration)
            except FirewallError as exc:
                self._failed.add(d.ip)
                self.log.error("ban_failed", ip=d.ip, rule=d.rule, error=str(exc))
            self.log.info("ip_banned", ip=d.ip, rule=d.rule, count=d.count,
                          duration=duration_field(d.duration), reason=d.reason,
                          expires=when(expires), times_banned=times,
                          first_seen=when(d.first_seen), last_seen=when(d.last_seen),
                          backend=self.backend.name)
            self._published_ban(ban, d.ip, d.rule, d.reason, d.count, now, expires)
            return ban

    def _log_unban(self, ban: Ban, why: str, **extra: Any) -> None:
        self.log.info("ip_unbanned", ip=ban.ip, rule=ban.rule, count=ban.count,
                      duration=duration_field(ban.duration), why=why,
                      banned_at=when(ban.banned_at), **extra)

    def expire(self, now: float) -> int:
        """Lift bans whose time is up (kernel, database, policy); returns how many."""
        due = self.store.due(now)
        if not due:
            return 0
        with self._lock:
            for ban in self.store.lift([b.ip for b in due], "expired", now):
                try:
                    self.backend.unban(ban.ip)
                except FirewallError as exc:
                    self.log.error("unban_failed", ip=ban.ip, error=str(exc))
                self._banned.pop(ban.ip, None)
                self._failed.discard(ban.ip)
                self.policy.forget(ban.ip)
                self._log_unban(ban, "expired")
                self._published_unban(ban, "expired", ban.expires or now)
        return len(due)

    def _sync(self) -> None:
        """Follow ``mailopsd bans`` changes (it already changed the kernel and the database)."""
        changes = self.store.changes_since(self._seq)
        if not changes:
            return
        with self._lock:
            for ch in changes:
                self._seq = max(self._seq, ch.seq)
                if ch.action == "ban":
                    self._banned[ch.ip] = ch.expires
                    self._failed.discard(ch.ip)
                    self.policy.note_banned(ch.ip, ch.expires)
                elif ch.action == "unban":
                    self._banned.pop(ch.ip, None)
                    self._failed.discard(ch.ip)
                    self.policy.forget(ch.ip)
                    self.evidence.forget(ch.ip)
                elif ch.action == "flush":
                    # the database says what survived the flush (bans made after it)
                    active = {b.ip: b.expires for b in self.store.active()}
                    for ip in [ip for ip in self._banned if ip not in active]:
                        self.policy.forget(ip)
                        del self._banned[ip]
                    self._failed &= set(active)
                    self.backend.setup()  # keep blocking: our (now empty) chain/table again
            self.log.info("bans_changed_outside", changes=len(changes), active=len(self._banned))

    def _retry_failed(self) -> None:
        with self._lock:
            for ip in sorted(self._failed):
                expires = self._banned.get(ip, 0.0)
                left = None if expires is None else expires - time.time()
                try:
                    self.backend.ban(ip, left)
                except FirewallError:
                    continue
                self._failed.discard(ip)
                self.log.info("ban_applied_late", ip=ip)

    def verify(self, now: float) -> int:
        """Put our bans back if the kernel lost them; returns how many were missing.

        Someone may flush the firewall under us: ``systemctl reload nftables`` runs Debian's
        /etc/nftables.conf, which starts with ``flush ruleset``; an admin may ``iptables-legacy
        -F``. Missing bans are restored from the database in one commit; otherwise setup()
        puts back a removed INPUT jump or chain rule.
        """
        with self._lock, self.banlock.held():
            self._sync()  # never restore what `mailopsd bans` has just removed
            try:
                kernel = self.backend.list()
                missing = [ip for ip, exp in self._banned.items()
                           if ip not in kernel and ip not in self._failed
                           and (exp is None or exp > now + 2)]  # nft may drop it a moment early
                if missing:
                    self.log.warning("firewall_bans_missing", count=len(missing),
                                     ips=missing[:10],
                                     message="the firewall lost bans (flushed?); restoring them")
                    self.backend.restore({ip: None if exp is None else exp - now
                                          for ip, exp in self._banned.items()})
                else:
                    self.backend.setup()
            except FirewallError as exc:
                self.kernel_check = {"at": now, "ok": False, "error": str(exc)}
                raise
            self.kernel_check = {"at": now, "ok": True, "missing": len(missing),
                                 "in_kernel": len(kernel)}
        return len(missing)

    def status(self) -> dict[str, Any]:
        """What ``mailopsd status`` shows: followed file, position, lag, bans, kernel check."""
        from mailopsd.blocker.status import blocker_status

        return blocker_status(self)

    def _check_silent(self, now: float) -> None:
        stale = set(self.policy.stale_rules(now))
        for rule in stale:
            if now - self._silent.get(rule, -math.inf) >= SILENT_REWARN:
                self._silent[rule] = now
                self.log.warning("rule_silent", rule=rule,
                                 message="the rule matched nothing for a long time while the "
                                         "log kept growing: is its pattern still right?")
        for rule in list(self._silent):
            if rule not in stale:
                del self._silent[rule]

    def _tick_loop(self) -> None:
        fw = self.config.blocker.firewall
        next_flood = next_silent = next_prune = 0.0
        next_verify = time.time() + fw.verify_interval
        while not self._stop.is_set():
            now = time.time()
            try:
                self.expire(now)
                self._sync()
                if self._failed:
                    self._retry_failed()
                if self.flood is not None and now >= next_flood:
                    next_flood = now + self.config.blocker.flood.interval
                    for decision in self.flood.sample(now):
                        self.apply(decision)
                if now >= next_verify:
                    next_verify = now + fw.verify_interval
                    self.verify(now)
                if now >= next_silent:
                    next_silent = now + 60.0
                    self._check_silent(now)
                    self.prune_remote_hits(now)
                if now >= next_prune:
                    next_prune = now + PRUNE_EVERY
                    self.store.prune_changes(now - KEEP_CHANGES)
            except MailopsError as exc:  # a locked database or a firewall hiccup: try again
                self.log.error("blocker_tick_failed", error=str(exc))
            except Exception as exc:  # a bug must show, but must not stop expiry for good
                self.log.exception("blocker_tick_crashed", error=repr(exc))
            self._stop.wait(fw.check_interval)
        self.store.close()


def create(config: Config, state: StateDB) -> BlockerService | None:
    """The daemon's factory: None when ``blocker.enabled`` is false."""
    if not config.blocker.enabled:
        return None
    return BlockerService(config, state)
