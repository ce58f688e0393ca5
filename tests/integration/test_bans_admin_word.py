"""The admin's word stands: ``bans remove`` / ``bans flush`` while the real daemon runs.

A real ``mailopsd run`` inside a namespace (real iptables-legacy or nft there) bans addresses from
mainlog lines this test appends; a watcher lists the kernel every few milliseconds. After each
command no removed or flushed address may appear in the kernel at any moment of the next 10 s,
while new offenders are banned as usual (the daemon's kernel check runs every 300 ms, so a check
that put bans back would be caught); nor after a restart; a flushed address that offends again
is banned again. ``status --json`` shows the followed file, its position and bans per rule, and
``bans show`` the lines that decided a ban.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import scratch_root, wait_until
from tests.support.daemon import MAILOPSD, MailopsdProcess, write_config
from tests.support.netns import Netns, iptables_bans

pytestmark = pytest.mark.integration

WINDOW = 10.0


def stamp(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() + offset))


def offend(mainlog: Path, ips: list[str], times: int = 3) -> None:
    """Append ``times`` no-rdns lines per address, as Exim writes them."""
    with mainlog.open("a") as f:
        for ip in ips:
            for _ in range(times):
                f.write(f"{stamp(1)} no host name found for IP address {ip}\n")


class Kernel:
    """Lists our bans in the namespace's kernel; a watcher thread records every listing."""

    def __init__(self, ns: Netns, backend: str) -> None:
        self.ns, self.backend = ns, backend
        self.seen: list[tuple[float, set[str]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> set[str]:
        if self.backend == "nftables":
            r = self.ns.run(["nft", "list", "table", "inet", "mailopsd"], check=False)
            return set(re.findall(r"192\.0\.2\.\d+", r.stdout)) if r.returncode == 0 else set()
        return {ip for ip in iptables_bans(self.ns, v6=False) if ip.startswith("192.0.2.")}

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                t = time.monotonic()
                self.seen.append((t, self.now()))
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def seen_after(self, t0: float, ips: set[str]) -> list[tuple[float, set[str]]]:
        """Listings started after ``t0`` that hold any of ``ips``."""
        return [(t - t0, found & ips) for t, found in self.seen if t > t0 and found & ips]


@pytest.fixture(params=["iptables", "nftables"])
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[Path, Netns, Kernel, Path]]:
    backend = request.param
    with scratch_root() as root, Netns("moadm") as ns:
        mainlog = root / "mainlog"
        mainlog.touch()
        cfg = write_config(root, blocker={
            "enabled": True, "mainlog": str(mainlog), "flood": {"enabled": False},
            "rules": {"no-rdns": {"maxretry": 3, "findtime": "10m", "bantime": "1h"}},
            "firewall": {"backend": backend, "ports": [25], "check_interval": "100ms",
                         "verify_interval": "300ms", "ipv6": False}})
        kernel = Kernel(ns, backend)
        try:
            yield cfg, ns, kernel, mainlog
        finally:
            kernel.stop()
            ns.run([MAILOPSD, "--config", str(cfg), "bans", "flush"], check=False)


def daemon(ns: Netns, cfg: Path) -> MailopsdProcess:
    proc = MailopsdProcess(cfg, argv=ns.argv([MAILOPSD, "--config", str(cfg), "run"]))
    proc.wait_event("bans_restored", timeout=30)
    return proc


def cli(ns: Netns, cfg: Path, *args: str) -> Any:
    return ns.run([MAILOPSD, "--config", str(cfg), *args], check=False, timeout=60)


def test_removed_and_flushed_addresses_stay_out_while_new_offenders_are_banned(
        lab: tuple[Path, Netns, Kernel, Path]) -> None:
    cfg, ns, kernel, mainlog = lab
    first = [f"192.0.2.{i}" for i in range(100, 112)]
    d = daemon(ns, cfg)
    try:
        offend(mainlog, first)
        wait_until(lambda: set(first) <= kernel.now(), 30, what="the first bans in the kernel")

        def status() -> dict[str, Any] | None:  # the snapshot is at most a few seconds old
            st = cli(ns, cfg, "status", "--json")
            data: dict[str, Any] = json.loads(st.stdout)
            assert st.returncode == 0, (data["problems"], st.stderr)
            b = data["blocker"]
            done = (b["active_bans"] == {"no-rdns": len(first)}
                    and b["position"] == mainlog.stat().st_size and b["lag_bytes"] == 0
                    and b["kernel_check"]["ok"] is True)
            return data if done else None

        snap = wait_until(status, 10, 0.5, what="status showing the bans and the position")
        assert snap["blocker"]["file"] == str(mainlog) and snap["blocker"]["following"]
        shown = json.loads(cli(ns, cfg, "bans", "show", first[0], "--json").stdout)
        assert shown["in_kernel"] is True and len(shown["evidence"]) == 3
        assert all(first[0] in line for line in shown["evidence"])

        kernel.watch()
        removed = set(first[:4])
        r = cli(ns, cfg, "bans", "remove", *sorted(removed), "--json")
        t_remove = time.monotonic()
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert {b["ip"] for b in out["lifted"]} == removed and out["daemon_pid"] == d.pid
        newcomers = ["192.0.2.150", "192.0.2.151"]
        offend(mainlog, newcomers)  # banned as usual inside the window
        wait_until(lambda: set(newcomers) <= kernel.now(), 15, what="newcomers banned")
        time.sleep(WINDOW / 2)

        r = cli(ns, cfg, "bans", "flush", "--json")
        t_flush = time.monotonic()
        assert r.returncode == 0, r.stderr
        flushed = {b["ip"] for b in json.loads(r.stdout)["lifted"]}
        assert flushed == (set(first) - removed) | set(newcomers)
        late = ["192.0.2.160"]
        offend(mainlog, late)
        wait_until(lambda: set(late) <= kernel.now(), 15, what="a new offender after flush")
        wait_until(lambda: time.monotonic() > t_flush + WINDOW, WINDOW + 5, 0.2,
                   what="the 10 s window")
        kernel.stop()
        assert kernel.seen_after(t_remove, removed) == []
        assert kernel.seen_after(t_flush, flushed) == []
        assert len(kernel.seen) > 50  # the watcher really looked, many times
        print(f"{kernel.backend}: {len(kernel.seen)} kernel listings in "
              f"{kernel.seen[-1][0] - kernel.seen[0][0]:.1f} s; none held a removed or "
              f"flushed address")

        again = first[5]  # a flushed address offends again later: banned again normally
        offend(mainlog, [again])
        wait_until(lambda: again in kernel.now(), 15, what="the re-offender banned again")
        listed = json.loads(cli(ns, cfg, "bans", "list", "--json").stdout)
        assert all(row["agrees"] for row in listed), listed
    finally:
        assert d.stop(timeout=20) == 0
    assert not [e for e in d.events() if e.get("event") in ("firewall_bans_missing",
                                                             "service_degraded")]

    d2 = daemon(ns, cfg)  # a restart brings back exactly what the state database holds
    try:
        wait_until(lambda: again in kernel.now(), 15, what="restored bans")
        assert kernel.now() == set(late) | {again}
    finally:
        d2.stop(timeout=20)
