"""The iptables backend's ipset side, without a kernel: names, member text, netlink entries,
error text, and that neither pyroute2 nor python-iptables is loaded before a set is used."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from mailopsd.core.config import parse_config
from mailopsd.core.errors import FirewallError
from mailopsd.firewall import ipset
from mailopsd.firewall import ipset_wire as wire
from mailopsd.firewall.iptables import IptablesBackend


def test_set_names_follow_the_chain_and_fit_ipsets_limit() -> None:
    assert ipset.set_names("mailopsd") == ("mailopsd-v4", "mailopsd-v6")
    longest = "c" * 28  # the longest chain name check-config accepts
    cfg = parse_config({"blocker": {"firewall": {"iptables_chain": longest}}})
    b = IptablesBackend(cfg.blocker.firewall)
    assert max(len(n) for n in (*b.sets, *b.temp_sets)) == 31  # IPSET_MAXNAMELEN - 1


@pytest.mark.parametrize(("target", "parts"), [
    ("192.0.2.7", ("192.0.2.7", 32)),
    ("203.0.113.0/24", ("203.0.113.0", 24)),
    ("2001:db8::2", ("2001:db8::2", 128)),
    ("2001:db8:5::/64", ("2001:db8:5::", 64)),
])
def test_a_ban_text_splits_into_address_and_prefix(
        target: str, parts: tuple[str, int]) -> None:
    assert ipset.split(target) == parts


def test_pyroute2_errors_are_said_as_text() -> None:
    assert ipset._describe(Exception(4103, "it's not added")) == "it's not added (code 4103)"
    assert ipset._describe(OSError("boom")) == "boom"
    assert ipset._describe(RuntimeError()) == "RuntimeError"


def test_a_missing_pyroute2_is_a_firewall_error_naming_the_way_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyroute2.ipset", None)  # import fails
    with pytest.raises(FirewallError, match=r"python3-pyroute2 is missing.*iptables_set = false"):
        ipset.Ipsets().members("mailopsd-v4")


def test_building_the_backend_loads_neither_pyroute2_nor_python_iptables() -> None:
    code = ("import sys\n"
            "from mailopsd.core.config import parse_config\n"
            "from mailopsd.firewall import make_backend\n"
            "make_backend(parse_config({}))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'iptc')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


TARGETS = ["192.0.2.7", "203.0.113.0/24", "2001:db8::2", "2001:db8:5::/64"]


@pytest.mark.parametrize("target", TARGETS)
def test_hand_made_bulk_add_is_byte_for_byte_what_pyroute2_sends(target: str) -> None:
    pytest.importorskip("pyroute2")
    from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_IPSET
    from pyroute2.netlink.nfnetlink.ipset import IPSET_CMD_ADD, ipset_msg

    addr, plen = ipset.split(target)
    fam = "IPSET_ATTR_IPADDR_IPV6" if ":" in addr else "IPSET_ATTR_IPADDR_IPV4"
    data = {"attrs": [("IPSET_ATTR_IP_FROM", {"attrs": [(fam, addr)]}),
                      ("IPSET_ATTR_CIDR", plen)]}
    msg = ipset_msg()
    msg["header"]["type"] = IPSET_CMD_ADD | (NFNL_SUBSYS_IPSET << 8)
    msg["header"]["flags"] = wire.NLM_F_REQUEST | wire.NLM_F_ACK
    msg["header"]["sequence_number"] = 5
    msg["nfgen_family"] = 2
    msg["attrs"] = [["IPSET_ATTR_PROTOCOL", 7], ["IPSET_ATTR_SETNAME", "mailopsd-v4"],
                    ["IPSET_ATTR_LINENO", bytes(4)],
                    ["IPSET_ATTR_ADT", {"attrs": [("IPSET_ATTR_DATA", data)]}]]
    msg.encode()
    assert wire.add_messages("mailopsd-v4", [target], 7, 5) == [bytes(msg.data)]


def test_bulk_adds_are_split_into_messages_the_kernel_takes() -> None:
    msgs = wire.add_messages("mailopsd-v6", [f"2001:db8::{i:x}" for i in range(2500)], 7, 10)
    assert len(msgs) == 3  # 1000 entries a message: each stays under a 64 KiB attribute
    assert max(len(m) for m in msgs) < 65_535
    assert [next(wire.replies(m))[1] for m in msgs] == [10, 11, 12]  # sequence numbers


def test_a_list_reply_gives_back_the_members_in_ban_text() -> None:
    payload = bytes(4) + wire.attr(wire.A_SETNAME, b"mailopsd-v4\0") + wire.attr(
        wire.A_ADT | wire.NLA_F_NESTED, b"".join(wire.entry(t) for t in TARGETS))
    assert wire.members_in(payload[4:]) == TARGETS  # after the nfgenmsg
    reply = wire.message(wire.CMD_LIST, 0, 3, payload[4:])
    assert [(k & 0xFF, seq) for k, seq, _ in wire.replies(reply + reply)] == [
        (wire.CMD_LIST, 3), (wire.CMD_LIST, 3)]


def test_kernel_refusals_are_firewall_errors_in_words() -> None:
    assert "No such file or directory (code 2)" in str(wire.WireError(2, "list x"))
    assert "ipset error 4097" in str(wire.WireError(4097, "add to x"))
    assert isinstance(wire.WireError(2, "x"), FirewallError)


def test_after_a_fork_both_sockets_are_opened_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pyroute2.ipset")
    fake.IPSet = lambda: types.SimpleNamespace(_proto_version=7)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyroute2.ipset", fake)
    sets = ipset.Ipsets()
    parent = sets._ipset()
    sets._bulk = object()  # type: ignore[assignment]  # the parent's bulk socket
    sets._pid = -1  # as seen from a forked child
    assert sets._ipset() is not parent
    assert sets._bulk is None  # a netlink socket shared with the parent would mix answers


def test_flush_reports_sets_it_could_not_look_at_instead_of_failing() -> None:
    class NoIpset:
        def destroy(self, name: str) -> int | None:
            raise FirewallError("ipset is unusable: python3-pyroute2 is missing")

    b = IptablesBackend(parse_config({}).blocker.firewall)
    b.ipsets = NoIpset()  # type: ignore[assignment]
    assert b._destroy_sets() == ["ipset: skipped (ipset is unusable: python3-pyroute2 is "
                                 "missing)"]
