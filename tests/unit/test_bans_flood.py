"""The connection-flood rule on psutil-shaped samples: counting, streaks, ignore list, bans."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable
from typing import Any

from mailopsd.blocker.flood import FloodDetector, count_connections
from mailopsd.core.config.schema_firewall import FloodConfig
from mailopsd.core.config.types import Duration

Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "fd family type laddr raddr status pid")


def conns(ip: str, n: int, port: int = 25, status: str = "ESTABLISHED") -> list[Conn]:
    return [Conn(-1, 2, 1, Addr("192.0.2.1", port), Addr(ip, 40000 + i), status, None)
            for i in range(n)]


LISTEN = Conn(-1, 2, 1, Addr("0.0.0.0", 25), (), "LISTEN", None)


def test_counts_busy_connections_to_the_ports_only() -> None:
    sample = (conns("198.51.100.1", 3) + conns("198.51.100.1", 2, status="TIME_WAIT")
              + conns("198.51.100.1", 4, port=993) + conns("::ffff:198.51.100.2", 2)
              + conns("2001:db8::7", 1, status="SYN_RECV") + [LISTEN])
    assert count_connections(sample, [25]) == {"198.51.100.1": 3, "198.51.100.2": 2,
                                               "2001:db8::7": 1}


class Sampler:
    def __init__(self) -> None:
        self.next: list[Conn] = []

    def __call__(self) -> Iterable[Any]:
        return self.next


def detector(samples: int = 2, **kw: Any) -> tuple[FloodDetector, Sampler]:
    sampler = Sampler()
    cfg = FloodConfig(max_connections=5, samples=samples, bantime=Duration(600))
    det = FloodDetector(cfg, [25, 587], sampler=sampler,
                        ignored=kw.get("ignored", lambda ip: False),
                        banned=kw.get("banned", lambda ip: False), duration=kw.get("duration"))
    return det, sampler


def test_bans_after_enough_consecutive_samples_over_the_limit() -> None:
    det, s = detector(samples=2)
    s.next = conns("198.51.100.1", 6) + conns("198.51.100.2", 5)  # 5 is not "more than 5"
    assert det.sample(100.0) == []
    decisions = det.sample(105.0)
    assert [(d.ip, d.rule, d.count, d.duration) for d in decisions] == [
        ("198.51.100.1", "flood", 6, 600.0)]
    d = decisions[0]
    assert (d.first_seen, d.last_seen) == (100.0, 105.0)
    assert "6 concurrent connections to port(s) 25,587 (limit 5)" in d.reason


def test_a_gap_resets_the_streak() -> None:
    det, s = detector(samples=2)
    s.next = conns("198.51.100.1", 9)
    assert det.sample(1.0) == []
    s.next = conns("198.51.100.1", 2)
    assert det.sample(2.0) == []
    s.next = conns("198.51.100.1", 9)
    assert det.sample(3.0) == []
    assert [d.ip for d in det.sample(4.0)] == ["198.51.100.1"]


def test_ignored_and_already_banned_addresses_are_never_decided() -> None:
    det, s = detector(samples=1, ignored=lambda ip: ip == "192.0.2.50",
                      banned=lambda ip: ip == "198.51.100.9")
    s.next = conns("192.0.2.50", 50) + conns("198.51.100.9", 50) + conns("198.51.100.3", 50)
    assert [d.ip for d in det.sample(1.0)] == ["198.51.100.3"]


def test_duration_hook_stretches_repeat_offenders() -> None:
    det, s = detector(samples=1, duration=lambda ip, base: None if ip.endswith(".4") else base)
    s.next = conns("198.51.100.4", 10) + conns("198.51.100.5", 10)
    got = {d.ip: d.duration for d in det.sample(1.0)}
    assert got == {"198.51.100.4": None, "198.51.100.5": 600.0}


def test_flood_ports_override_the_firewall_ports() -> None:
    sampler = Sampler()
    det = FloodDetector(FloodConfig(max_connections=1, samples=1, ports=(587,)), [25],
                        ignored=lambda ip: False, banned=lambda ip: False, sampler=sampler)
    sampler.next = conns("198.51.100.1", 5, port=25) + conns("198.51.100.2", 5, port=587)
    assert [d.ip for d in det.sample(1.0)] == ["198.51.100.2"]
