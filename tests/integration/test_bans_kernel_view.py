"""``bans list`` / ``bans show`` compare the state database with the real kernel (iptables in a
namespace): a ban the kernel lost and an address only the kernel holds are both marked."""

from __future__ import annotations

import json

import pytest

from tests.support.common import scratch_root
from tests.support.daemon import MAILOPSD, write_config
from tests.support.netns import Netns

pytestmark = pytest.mark.integration


def test_list_and_show_mark_where_the_kernel_and_the_state_disagree() -> None:
    with scratch_root() as root, Netns("mokv") as ns:
        cfg = write_config(root, blocker={"enabled": True, "firewall": {"ipv6": False}})

        def bans(*args: str) -> tuple[int, str, str]:
            r = ns.run([MAILOPSD, "--config", str(cfg), "bans", *args], check=False)
            return r.returncode, r.stdout, r.stderr

        try:
            assert bans("add", "192.0.2.81")[0] == 0
            assert bans("add", "192.0.2.82")[0] == 0
            # someone edits the set and the chain behind mailopsd's back
            ns.run(["ipset", "del", "mailopsd-v4", "192.0.2.82"])
            ns.run(["ipset", "add", "mailopsd-v4", "192.0.2.99"])
            ns.run(["iptables-legacy", "-A", "mailopsd", "-s", "192.0.2.98/32", "-p", "tcp",
                    "-j", "DROP"])
            rc, out, _ = bans("list")
            rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("192.")}
            assert rc == 0 and "!" not in rows["192.0.2.81"]
            assert " no !" in rows["192.0.2.82"] and "yes !" in rows["192.0.2.99"]
            assert "yes !" in rows["192.0.2.98"]  # an address rule in our chain counts too
            assert "disagree" in out
            shown = json.loads(bans("show", "192.0.2.82", "--json")[1])
            assert shown["banned"] is True and shown["in_kernel"] is False
            rc, out, _ = bans("show", "192.0.2.82")
            assert "kernel: does not hold it  (! disagrees" in out
            for stray in ("192.0.2.99", "192.0.2.98"):
                rc, out, _ = bans("remove", stray)
                assert rc == 0 and "only in the firewall" in out
            rows_json = json.loads(bans("list", "--json")[1])
            assert [r["ip"] for r in rows_json if not r["agrees"]] == ["192.0.2.82"]
        finally:
            bans("flush")
