"""mailopsd installed before Exim (a fresh host): it starts, says it waits for the mainlog, does
not crash-loop, and acts on the log once it appears. Real systemd (PID 1) in a container."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.common import wait_until
from tests.support.container import Container
from tests.support.debpkg import build_deb
from tests.support.systemd_scene import journal, show

pytestmark = [pytest.mark.integration, pytest.mark.systemd]


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    deb = build_deb(tmp_path_factory.mktemp("deb"))
    with Container() as container:
        container.put(deb, f"/srv/{deb.name}")
        # no Exim at all: purge it from this container (offline: removal needs no registry)
        container.run(["apt-get", "purge", "-y", "exim4-daemon-heavy", "exim4-base",
                       "exim4-config"], timeout=300)
        container.run(["rm", "-rf", "/var/log/exim4"])
        container.run(["apt-get", "install", "-y", "--no-install-recommends",
                       f"/srv/{deb.name}"], timeout=300)
        yield container


def test_without_exim_the_service_runs_and_waits_for_the_mainlog(ct: Container) -> None:
    assert ct.run(["dpkg-query", "-W", "-f", "${Status}", "exim4-base"],
                  check=False).stdout.strip() in ("", "unknown ok not-installed")
    assert show(ct, "ActiveState") == "active"
    waiting = wait_until(lambda: journal(ct, "EVENT=log_missing",
                                         "PATH=/var/log/exim4/mainlog"),
                         timeout=30, interval=0.5, what="the log_missing event")
    assert "waiting" in waiting[-1]["MESSAGE"]
    pid = show(ct, "MainPID")
    wait_until(lambda: journal(ct, "EVENT=daemon_started"), timeout=30, interval=0.5,
               what="daemon_started")
    # a few seconds later: the same process, never restarted (no crash loop)
    ct.run(["sleep", "5"])
    assert show(ct, "MainPID") == pid
    assert int(show(ct, "NRestarts")) == 0
    assert show(ct, "ActiveState") == "active"


def test_the_mainlog_that_appears_later_is_followed(ct: Container) -> None:
    now = ct.run(["date", "+%Y-%m-%d %H:%M:%S"]).stdout.strip()
    ct.run(["install", "-d", "-m", "0750", "/var/log/exim4"])
    log = ct.path("/var/log/exim4/mainlog")
    log.write_text("".join(f"{now} H=(client.test) [198.51.100.20] F=<a@client.test> rejected "
                           f"RCPT <v{n}@elsewhere.test>: relay not permitted\n"
                           for n in range(5)))
    wait_until(lambda: "198.51.100.20" in ct.run(["ipset", "save", "mailopsd-v4"],
                                                  check=False).stdout,
               timeout=60, interval=0.5, what="the ban from the late mainlog")
    assert any(e.get("IP") == "198.51.100.20" for e in journal(ct, "EVENT=ip_banned"))
    assert int(show(ct, "NRestarts")) == 0
